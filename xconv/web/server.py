"""``xconv serve``: load the model once, decide on the access token, run uvicorn until Ctrl-C."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import secrets
import signal
import socket

try:
    from builtins import BaseExceptionGroup
except ImportError:  # Python 3.10: the backport anyio (under uvicorn and starlette) depends on
    from exceptiongroup import BaseExceptionGroup

from xconv.errors import XconvError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None, no_token: bool) -> str | None:
    """No token on loopback unless one is given; elsewhere a generated one unless explicitly disabled."""
    if no_token and token:  # which one was meant? Serving open to the network is not the safe guess
        raise XconvError("--token and --no-token contradict each other: give one of them")
    if no_token:
        return None
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def served_url(host: str, port: int, token: str | None) -> str:
    """The URL to open, the token quoted: ``--token 'a+b'`` printed raw reads back as "a b" (401)."""
    from urllib.parse import quote

    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(model, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, no_token: bool = False,
          max_batch: int = 16, echo=print) -> None:
    import uvicorn

    from xconv.web.app import create_app
    from xconv.web.service import ExplainService

    token = access_token(host, token, no_token)
    app = create_app(ExplainService(model), token=token, max_batch=max_batch,
                     local_only=token is None and is_loopback(host))
    listening = listening_sockets(host, port)  # before the URL is printed: a busy port fails here, in one line
    url = served_url(host, listening[0].getsockname()[1], token)
    echo(f"xconv serving {model.display_name} at {url}  (API docs: {url.split('?')[0]}docs; Ctrl-C stops)")
    if not token and not is_loopback(host):
        echo("warning: no access token and not on loopback: anyone who can reach this port can use it")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    logging.getLogger("uvicorn.error").addFilter(drop_cancelled_at_shutdown)  # after Config set logging up
    previous = signal.signal(signal.SIGTERM, stop_requested)
    try:
        uvicorn.Server(config).run(sockets=listening)
    except (KeyboardInterrupt, StopRequested):
        # uvicorn shuts down cleanly, then raises the signal it caught again: Ctrl-C arrives as
        # KeyboardInterrupt, SIGTERM (docker stop, systemd) here, instead of killing the process before
        # its exit handlers remove TensorFlow's temporary files.
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for bound in listening:
            bound.close()


class StopRequested(Exception):
    """SIGTERM: stop like Ctrl-C."""


def stop_requested(signum, frame):
    raise StopRequested


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for uvicorn, one per address ``host`` names ("localhost" is often both ::1 and
    127.0.0.1), all on one port, so the port actually used (``--port 0``: any free one) is known before the
    URL is printed, and a busy port or an unknown host name is one readable error instead of uvicorn's log."""

    def refused(error: OSError):
        return XconvError(f"cannot serve on {host}:{port}: {error.strerror or error}")

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:  # socket.gaierror: a name that does not resolve
        raise refused(error) from None
    addresses = list(dict.fromkeys((family, kind, protocol, address) for family, kind, protocol, _, address in found))
    sockets: list[socket.socket] = []
    failure = None
    for family, kind, protocol, address in addresses:
        listening = socket.socket(family, kind, protocol)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # its IPv4 twin binds apart
            if sockets:  # the others on the first one's port (--port 0 drew it)
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            listening.bind(address)
            sockets.append(listening)
        except OSError as error:
            listening.close()
            failure = error
            if error.errno == errno.EADDRINUSE:
                break
            # else an address this machine cannot bind (::1 without IPv6): served on the others
    if not sockets or (failure is not None and failure.errno == errno.EADDRINUSE):
        for bound in sockets:
            bound.close()
        raise refused(failure) from None
    return sockets


def drop_cancelled_at_shutdown(record: logging.LogRecord) -> bool:
    """uvicorn logs a traceback for each request it cancels when Ctrl-C's grace period (5 s) runs out;
    that is the stop the user asked for, not an error of the server."""
    error = record.exc_info[1] if record.exc_info else None
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return not isinstance(error, asyncio.CancelledError)
