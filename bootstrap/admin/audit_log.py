"""The admin audit: one row and one log line per change, naming the API key (never the key itself)."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from ..store import Queryable

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class AdminChange:
    """One change attempted through the admin API (or the CLI for API keys)."""

    api_key_id: str | None
    """``None`` when made with the CLI."""
    api_key_name: str
    method: str
    path: str
    target_id: str | None
    status: int
    request_id: str

    @property
    def outcome(self) -> str:
        """``success`` for 2xx/3xx answers, else ``failure``."""
        return "success" if self.status < 400 else "failure"


async def record(conn: Queryable, change: AdminChange) -> None:
    """Log the change and write its audit row; a failing write is logged, never raised."""
    log.info(
        "admin change",
        api_key=change.api_key_name,
        api_key_id=change.api_key_id,
        method=change.method,
        path=change.path,
        target_id=change.target_id,
        status=change.status,
        outcome=change.outcome,
    )
    try:
        await conn.execute(
            """INSERT INTO admin_audit
                   (api_key_id, api_key_name, method, path, target_id, status, outcome, request_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            change.api_key_id,
            change.api_key_name,
            change.method,
            change.path,
            change.target_id,
            change.status,
            change.outcome,
            change.request_id,
        )
    except (OSError, asyncpg.PostgresError) as exc:  # the change itself is already committed
        log.error("admin audit write failed", error=str(exc), path=change.path, api_key=change.api_key_name)


async def record_cli(conn: Queryable, *, path: str, target_id: str | None, status: int = 200) -> None:
    """Record a change made with the command line, as ``cli:<user>`` (the local account)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    await record(
        conn,
        AdminChange(
            api_key_id=None,
            api_key_name=f"cli:{user}",
            method="CLI",
            path=path,
            target_id=target_id,
            status=status,
            request_id=uuid.uuid4().hex,
        ),
    )


async def recent(conn: Queryable, *, limit: int = 100) -> list[asyncpg.Record]:
    """The newest audit rows first."""
    return await conn.fetch(
        """SELECT id, at, api_key_id, api_key_name, method, path, target_id, status, outcome, request_id
             FROM admin_audit ORDER BY at DESC, id DESC LIMIT $1""",
        limit,
    )
