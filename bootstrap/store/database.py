"""Connecting to Postgres: an external server by URL, or the embedded one in the data directory.

One code path either way: asyncpg. The embedded server comes from the ``pgserver`` wheel (Postgres
binaries in a Python package), runs on a Unix socket inside the data directory, and is shared by
every process that opens the same directory (server workers, management commands): the last one
to close it stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from ..errors import ConfigError
from .migrations import migrate

log = structlog.get_logger(__name__)


def _start_embedded(pgdata: Path) -> Any:
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver copes.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return get_server(pgdata, cleanup_mode="stop")


async def _no_session_reset(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, a round trip of its own per query made through the pool. This application never
    leaves session state on a pooled connection: no SET, no cursors, LISTEN only on its dedicated
    connection, and the one session-level advisory lock (migrations) is released in a ``finally``.
    So releasing costs nothing; open transactions are still rolled back by asyncpg before this hook.
    """


@dataclass
class Database:
    """An open connection pool plus, when embedded, the handle that keeps the server alive."""

    pool: asyncpg.Pool
    dsn: str
    embedded: Any = None

    @classmethod
    async def open(
        cls,
        *,
        database_url: str | None,
        data_dir: Path,
        min_size: int = 2,
        max_size: int = 10,
        run_migrations: bool = True,
    ) -> Database:
        """Connect (starting the embedded server if no URL is given) and bring the schema up to date."""
        embedded = None
        if database_url:
            dsn = database_url
        else:
            try:
                embedded = await asyncio.to_thread(_start_embedded, data_dir / "postgres")
            except Exception as exc:
                raise ConfigError(
                    f"embedded Postgres in {data_dir / 'postgres'} failed to start: {exc}"
                ) from exc
            dsn = embedded.get_uri()
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, reset=_no_session_reset
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConfigError(f"cannot connect to Postgres: {exc}") from exc
        database = cls(pool=pool, dsn=dsn, embedded=embedded)
        if run_migrations:
            try:
                await migrate(pool)
            except BaseException:
                await database.close()
                raise
        log.info("database ready", embedded=embedded is not None)
        return database

    async def close(self) -> None:
        """Close the pool; stop the embedded server if this process held the last handle."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.close(), timeout=10)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.cleanup)
            self.embedded = None

    async def listen_connection(self) -> asyncpg.Connection:
        """A dedicated connection for LISTEN (not taken from the pool)."""
        return await asyncpg.connect(self.dsn)
