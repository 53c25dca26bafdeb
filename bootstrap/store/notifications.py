"""One LISTEN connection per process, dispatching Postgres notifications to in-process caches.

Caches (issuers, trust anchors, PSK identities) subscribe to a channel with a callback. When the
connection is (re)established every callback runs with ``None`` — anything may have changed while
nobody was listening — and :attr:`ChangeListener.connected` tells caches whether they may trust
themselves: while it is false they must read Postgres instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)

#: A callback receives the notification payload, or ``None`` after a (re)connect.
Callback = Callable[[str | None], None]


class ChangeListener:
    """Keeps a LISTEN connection open, reconnecting with back-off."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subscribers: dict[str, list[Callback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback`` on every notification on ``channel``.

        Channels are LISTENed to when the connection is made, so a new one must be subscribed
        before :meth:`start`: a cache subscribed later would never hear of a change.
        """
        if self._task is not None and channel not in self._subscribers:
            raise RuntimeError(f"subscribe to {channel!r} before the change listener starts")
        self._subscribers.setdefault(channel, []).append(callback)

    async def start(self, *, wait: float = 5.0) -> None:
        """Connect in the background; wait up to ``wait`` seconds for the first LISTEN."""
        self._task = asyncio.create_task(self._run(), name="change-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait)

    async def aclose(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected = False

    def _dispatch(self, channel: str, payload: str | None) -> None:
        for callback in self._subscribers.get(channel, []):
            try:
                callback(payload)
            except Exception:
                log.exception("change callback failed", channel=channel)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()

                def on_termination(_connection: object, lost: asyncio.Event = lost) -> None:
                    lost.set()

                def on_notify(_c: object, _pid: int, channel: str, payload: object) -> None:
                    self._dispatch(channel, str(payload))

                conn.add_termination_listener(on_termination)
                for channel in self._subscribers:
                    await conn.add_listener(channel, on_notify)
                for channel in self._subscribers:
                    self._dispatch(channel, None)
                self.connected = True
                self._ready.set()
                delay = 0.5
                await lost.wait()
                log.warning("change listener lost its connection; caches read Postgres until it is back")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change listener cannot connect", error=str(exc), retry_in=delay)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
