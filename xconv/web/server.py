"""``xconv serve``: load the model once, decide on the access token, run uvicorn until Ctrl-C."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets

try:
    from builtins import BaseExceptionGroup
except ImportError:  # Python 3.10: the backport anyio (under uvicorn and starlette) depends on
    from exceptiongroup import BaseExceptionGroup


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None, no_token: bool) -> str | None:
    """No token on loopback unless one is given; elsewhere a generated one unless explicitly disabled."""
    if no_token:
        return None
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def serve(model, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, no_token: bool = False,
          max_batch: int = 16, echo=print) -> None:
    import uvicorn

    from xconv.web.app import create_app
    from xconv.web.service import ExplainService

    token = access_token(host, token, no_token)
    app = create_app(ExplainService(model), token=token, max_batch=max_batch,
                     local_only=token is None and is_loopback(host))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    echo(f"xconv serving {model.display_name} at {url}  (API docs: {url.split('?')[0]}docs; Ctrl-C stops)")
    if not token and not is_loopback(host):
        echo("warning: no access token and not on loopback: anyone who can reach this port can use it")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    logging.getLogger("uvicorn.error").addFilter(drop_cancelled_at_shutdown)  # after Config set logging up
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C it caught again once it has shut down cleanly
        pass


def drop_cancelled_at_shutdown(record: logging.LogRecord) -> bool:
    """uvicorn logs a traceback for each request it cancels when Ctrl-C's grace period (5 s) runs out;
    that is the stop the user asked for, not an error of the server."""
    error = record.exc_info[1] if record.exc_info else None
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return not isinstance(error, asyncio.CancelledError)
