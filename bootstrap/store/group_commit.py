"""Group commits: rows that arrive together share one statement (one transaction, one WAL flush).

Callers await :meth:`GroupCommitWriter.record`, which returns only once their row is durable (or
raises if the batch failed). While a batch is being written, new rows queue up for the next one, so
under load batches grow by themselves and at low load a row is written at once.

The writer keeps one pooled connection while it runs: giving it back after every batch would cost
asyncpg's connection reset (a round trip of its own) per batch. A batch that fails hands the
connection back as broken, and the next batch takes a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
import structlog

from . import Queryable

log = structlog.get_logger(__name__)

Row = TypeVar("Row")


class GroupCommitWriter(Generic[Row]):
    """Batches rows into group commits through ``insert``; one background task per writer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        insert: Callable[[Queryable, list[Row]], Awaitable[None]],
        *,
        name: str,
        max_batch: int = 500,
    ) -> None:
        self._pool = pool
        self._insert = insert
        self._name = name
        self._max_batch = max_batch
        self._pending: list[tuple[Row, asyncio.Future[None]]] = []
        self._connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Batches written and rows written, for metrics and benchmarks.
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        """Start the writer task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-writer")

    async def record(self, row: Row) -> None:
        """Queue ``row`` and wait until it is committed; raises if the write failed."""
        if self._closing or self._task is None:
            raise RuntimeError(f"{self._name} writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._wakeup.set()
        await future

    async def aclose(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                await self._write(batch)
            if self._closing and not self._pending:
                await self._give_back()
                return

    async def _write(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        rows = [row for row, _ in batch]
        try:
            if self._connection is None:
                self._connection = await self._pool.acquire()
            await self._insert(self._connection, rows)
        except Exception as exc:
            log.error("group commit failed", writer=self._name, rows=len(rows), error=str(exc))
            await self._give_back(broken=True)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(rows)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _give_back(self, *, broken: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if broken:
            connection.terminate()  # the pool replaces it
        try:
            await self._pool.release(connection)
        except Exception as exc:  # a broken connection may fail to release; the pool copes
            log.warning("group commit connection release failed", writer=self._name, error=str(exc))
