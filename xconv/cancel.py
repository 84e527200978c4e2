"""Stopping long work that nobody waits for any more (a web request whose client left).

Whoever runs the work says how to tell that it is abandoned (``cancellable``); the work's loops call
:func:`stop_if_cancelled` between their compiled calls. Nothing is cancellable unless a caller says so:
the check is then one attribute read, so loops may call it freely.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable

_local = threading.local()


class Cancelled(Exception):
    """Raised by :func:`stop_if_cancelled` inside work its caller has abandoned."""


@contextmanager
def cancellable(abandoned: Callable[[], bool]):
    """While inside, :func:`stop_if_cancelled` on this thread raises :class:`Cancelled` once ``abandoned()``
    is true."""
    previous = getattr(_local, "abandoned", None)
    _local.abandoned = abandoned
    try:
        yield
    finally:
        _local.abandoned = previous


def stop_if_cancelled() -> None:
    """Call between the chunks of long work (a plugin's loop over compiled calls, say)."""
    abandoned = getattr(_local, "abandoned", None)
    if abandoned is not None and abandoned():
        raise Cancelled
