"""The event loop each process runs: uvloop when it is installed, asyncio's own otherwise.

uvloop (libuv underneath) spends less CPU per datagram and per callback than asyncio's selector
loop, which matters on the enrollment path where every certificate is a few datagrams and a
database round trip. ``LWM2M_BOOTSTRAP_EVENT_LOOP=asyncio`` forces the standard loop (to compare,
or to rule uvloop out when debugging); ``uvloop`` insists on it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["ENVIRONMENT_VARIABLE", "implementation", "loop_factory", "run"]

T = TypeVar("T")

ENVIRONMENT_VARIABLE = "LWM2M_BOOTSTRAP_EVENT_LOOP"
_CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or ``None`` for asyncio's default."""
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ConfigError(f"{ENVIRONMENT_VARIABLE} must be one of {', '.join(_CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(f"{ENVIRONMENT_VARIABLE}=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Like :func:`asyncio.run`, on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def implementation() -> str:
    """``uvloop`` or ``asyncio``: what the running loop is (for logs and reports)."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
