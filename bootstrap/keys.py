"""Master key rotation: re-seal every secret stored in Postgres under a new master key.

Every column that holds a :class:`~bootstrap.secretbox.SecretBox` blob is listed in
:data:`SEALED_COLUMNS`, with the ``context`` string its writer binds the blob to (the same function
or format the writer uses, so a blob re-sealed here opens where it is read). A new sealed column must
be added here too; ``tests/test_key_rotation.py`` fails when a module under ``bootstrap/`` seals
something this registry does not know.

:func:`rotate_master_key` works in one transaction: it locks the tables (readers go on, writers
wait), opens every blob with the old key, seals it with the new one under the same context, checks
that everything now opens with the new key, and commits. If any blob does not open with the old key
it refuses and changes nothing. Running servers keep the key they started with, so the operator
stops them first (or restarts them at once) and points them at the new key
(``docs/operations.md``, "Rotating the master key").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .errors import BootstrapError
from .secretbox import SecretBox, SecretError
from .store import Queryable
from .store.bootstrap_configs import lwm2m_oscore_context, lwm2m_psk_context
from .store.builtin_ca import _CONTEXT as BUILTIN_CA_CONTEXT
from .store.devices import _context as device_psk_context
from .store.issuers import credentials_context

#: Rows fetched per round trip while scanning a table.
BATCH = 500
#: Failures named in an error message (the total is always given).
MAX_FAILURES_LISTED = 10
#: How long rotation waits for the table locks before giving up (servers holding them: stop them).
LOCK_TIMEOUT = "10s"


@dataclass(frozen=True)
class SealedColumn:
    """A ``bytea`` column holding sealed blobs, and how to rebuild each row's ``context``."""

    table: str
    column: str
    key: tuple[str, ...]
    """Primary key columns (identify the row to update; feed the context)."""
    context: Callable[[asyncpg.Record], str]
    """The authenticated-data string the writer used for this row."""

    @property
    def label(self) -> str:
        """``table.column``, as printed to operators."""
        return f"{self.table}.{self.column}"

    def describe(self, row: asyncpg.Record) -> str:
        """The row's identity for an error message (key values only, never the secret)."""
        return f"{self.label} [{', '.join(f'{k}={row[k]!r}' for k in self.key)}]"


#: Every sealed column in the schema, with the context its writer uses:
#: ``store/issuers.py`` (via ``issuer_service.py``), ``store/builtin_ca.py``, ``store/devices.py``,
#: ``server_identity.py`` and ``store/bootstrap_configs.py`` (PSKs and OSCORE master secrets).
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn("certificate_issuers", "credentials", ("id",), lambda r: credentials_context(r["id"])),
    SealedColumn(
        "builtin_ca",
        "root_key",
        ("generation",),
        lambda r: BUILTIN_CA_CONTEXT.format(generation=r["generation"], column="root_key"),
    ),
    SealedColumn(
        "builtin_ca",
        "issuing_key",
        ("generation",),
        lambda r: BUILTIN_CA_CONTEXT.format(generation=r["generation"], column="issuing_key"),
    ),
    SealedColumn("device_credentials", "psk_key", ("endpoint",), lambda r: device_psk_context(r["endpoint"])),
    SealedColumn(
        # server_identity.ensure_issued: the row's hostname is the comma-joined server names.
        "server_certificates",
        "private_key",
        ("hostname",),
        lambda r: f"server_certificates:{r['hostname']}:private_key",
    ),
    SealedColumn(
        # store.bootstrap_configs.put_lwm2m_psk / lwm2m_psk.
        "lwm2m_psk_accounts",
        "psk_key",
        ("endpoint",),
        lambda r: lwm2m_psk_context(r["endpoint"]),
    ),
    SealedColumn(
        # store.bootstrap_configs.put_lwm2m_oscore / export_lwm2m_oscore.
        "lwm2m_oscore_accounts",
        "master_secret",
        ("endpoint",),
        lambda r: lwm2m_oscore_context(r["endpoint"]),
    ),
)

_TABLES = tuple(dict.fromkeys(c.table for c in SEALED_COLUMNS))

#: A single connection (cursors and transactions need one, not a pool).
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class KeyRotationError(BootstrapError):
    """Rotation refused; nothing was changed."""


@dataclass
class KeyCheck:
    """What opening every sealed secret with one key found."""

    counts: dict[str, int] = field(default_factory=dict)
    """Blobs that opened, by ``table.column`` (every column listed, zero included)."""
    failures: list[str] = field(default_factory=list)
    """The first :data:`MAX_FAILURES_LISTED` blobs that did not open (row and reason)."""
    failed: int = 0
    """How many blobs did not open, in all."""

    @property
    def ok(self) -> bool:
        """Every sealed secret opened."""
        return self.failed == 0

    def note_failure(self, message: str) -> None:
        """Count a blob that did not open, keeping the first few messages."""
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(message)

    def summary(self) -> str:
        """One line: how many failed, and the first ones."""
        more = f" (and {self.failed - len(self.failures)} more)" if self.failed > len(self.failures) else ""
        return f"{self.failed} sealed secret(s) did not open: " + "; ".join(self.failures) + more


def _select(column: SealedColumn, *, lock: bool) -> str:
    keys = ", ".join(column.key)
    return (
        f"SELECT {keys}, {column.column} FROM {column.table}"  # noqa: S608 (constant identifiers)
        f" WHERE {column.column} IS NOT NULL ORDER BY {keys}" + (" FOR UPDATE" if lock else "")
    )


def _update(column: SealedColumn) -> str:
    where = " AND ".join(f"{k} = ${i}" for i, k in enumerate(column.key, start=2))
    return f"UPDATE {column.table} SET {column.column} = $1 WHERE {where}"  # noqa: S608


async def _scan(
    conn: Connection,
    box: SecretBox,
    *,
    lock: bool,
    reseal: SecretBox | None = None,
) -> KeyCheck:
    """Open every sealed blob with ``box``; with ``reseal``, write each back sealed with it.

    Must run inside a transaction (server-side cursors need one).
    """
    check = KeyCheck()
    for column in SEALED_COLUMNS:
        check.counts[column.label] = 0
        pending: list[tuple[object, ...]] = []
        async for row in conn.cursor(_select(column, lock=lock), prefetch=BATCH):
            context = column.context(row)
            try:
                plaintext = box.open(row[column.column], context=context)
            except SecretError as exc:
                check.note_failure(f"{column.describe(row)}: {exc}")
                continue
            check.counts[column.label] += 1
            if reseal is not None and check.ok:
                pending.append((reseal.seal(plaintext, context=context), *(row[k] for k in column.key)))
                if len(pending) >= BATCH:
                    await conn.executemany(_update(column), pending)
                    pending.clear()
        if reseal is not None and check.ok and pending:
            await conn.executemany(_update(column), pending)
    return check


async def verify_master_key(pool: asyncpg.Pool, box: SecretBox) -> KeyCheck:
    """Try to open every sealed secret with ``box`` (read only); report counts and failures."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        return await _scan(conn, box, lock=False)


async def rotate_master_key(pool: asyncpg.Pool, old: SecretBox, new: SecretBox) -> dict[str, int]:
    """Re-seal every secret under ``new``, in one transaction; return re-sealed counts by ``table.column``.

    Each blob is opened with ``old`` and sealed with ``new`` under the same context. Raises
    :class:`KeyRotationError`, changing nothing, if the keys are the same, if any blob does not open
    with ``old`` (wrong old key, a corrupted blob, or one already sealed with another key), or if the
    tables stay locked by others for longer than :data:`LOCK_TIMEOUT`.
    """
    if old.key_id == new.key_id:
        raise KeyRotationError("the new master key is the current one; generate another")
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                # EXCLUSIVE: plain reads go on; inserts and updates (a secret sealed with the old key
                # by a running server while we rotate) wait until we commit.
                await conn.execute(f"LOCK TABLE {', '.join(_TABLES)} IN EXCLUSIVE MODE")
                check = await _scan(conn, old, lock=True, reseal=new)
                if not check.ok:
                    raise KeyRotationError(
                        f"rotation refused, nothing changed: {check.summary()}."
                        " Is the configured master key the one these secrets were sealed with?"
                    )
                after = await _scan(conn, new, lock=False)
                if not after.ok or after.counts != check.counts:  # cannot happen; never commit if it does
                    raise KeyRotationError(f"rotation refused, nothing changed: re-check: {after.summary()}")
        except asyncpg.LockNotAvailableError:
            raise KeyRotationError(
                f"rotation refused, nothing changed: the tables stayed locked for {LOCK_TIMEOUT}"
                " (stop the servers and try again)"
            ) from None
    return check.counts


async def listening_servers(conn: Queryable) -> int:
    """Other sessions on this database that LISTEN for the server's notifications (running servers).

    Each server process keeps one such connection. Seeing other sessions' queries needs the same
    role or ``pg_read_all_stats``; without it this undercounts (returns 0).
    """
    count = await conn.fetchval(
        """SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND query ILIKE 'LISTEN %lwm2m_bootstrap%'"""
    )
    return int(count or 0)
