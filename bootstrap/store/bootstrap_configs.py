"""Bootstrap configurations (a default and per-endpoint overrides), the PSK accounts and OSCORE
contexts provisioned for the LwM2M server, and the record of every bootstrap."""

from __future__ import annotations

import datetime as dt
import operator
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from ..bootstrap_plan import BootstrapConfig, OscoreContext
from ..errors import NotFound
from ..secretbox import SecretBox
from . import Queryable

#: Scope of the configuration used by endpoints without their own.
DEFAULT_SCOPE = "*"

#: The columns :func:`stored_from_record` reads (the admin API's queries select them too).
CONFIG_COLUMNS = (
    "scope, server_uri, security_mode, short_server_id, lifetime, binding, server_certificate,"
    " certificate_usage, oscore, created_at, updated_at, etag"
)


@dataclass(frozen=True)
class StoredConfig:
    """A configuration row: its scope (``*`` or an endpoint) and the configuration."""

    scope: str
    config: BootstrapConfig
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: str


def stored_from_record(record: asyncpg.Record) -> StoredConfig:
    """A :class:`StoredConfig` from a row with the columns of this table."""
    return StoredConfig(
        scope=record["scope"],
        config=BootstrapConfig(
            server_uri=record["server_uri"],
            security_mode=record["security_mode"],
            short_server_id=record["short_server_id"],
            lifetime=record["lifetime"],
            binding=record["binding"],
            server_certificate_der=record["server_certificate"],
            certificate_usage=record["certificate_usage"],
            oscore=record["oscore"],
        ),
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        etag=record["etag"],
    )


async def put(conn: Queryable, scope: str, config: BootstrapConfig) -> StoredConfig:
    """Create or replace the configuration of ``scope`` (validated first: 400 naming the field)."""
    config.validate()
    record = await conn.fetchrow(
        f"""INSERT INTO bootstrap_configs
               (scope, server_uri, security_mode, short_server_id, lifetime, binding, server_certificate,
                certificate_usage, oscore, etag)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (scope) DO UPDATE SET
                server_uri = excluded.server_uri, security_mode = excluded.security_mode,
                short_server_id = excluded.short_server_id, lifetime = excluded.lifetime,
                binding = excluded.binding, server_certificate = excluded.server_certificate,
                certificate_usage = excluded.certificate_usage, oscore = excluded.oscore,
                updated_at = now(), etag = excluded.etag
            RETURNING {CONFIG_COLUMNS}""",
        scope,
        config.server_uri,
        config.security_mode,
        config.short_server_id,
        config.lifetime,
        config.binding,
        config.server_certificate_der,
        config.certificate_usage,
        config.oscore,
        uuid.uuid4().hex,
    )
    assert record is not None
    return stored_from_record(record)


async def get(conn: Queryable, scope: str) -> StoredConfig:
    """The configuration of exactly ``scope``; 404 if there is none."""
    record = await conn.fetchrow(f"SELECT {CONFIG_COLUMNS} FROM bootstrap_configs WHERE scope = $1", scope)
    if record is None:
        raise NotFound(
            f"no bootstrap configuration for {'the default' if scope == DEFAULT_SCOPE else scope!r}"
        )
    return stored_from_record(record)


async def effective(conn: Queryable, endpoint: str) -> StoredConfig | None:
    """The endpoint's own configuration, else the default, else ``None`` (one indexed lookup)."""
    record = await conn.fetchrow(
        f"SELECT {CONFIG_COLUMNS} FROM bootstrap_configs WHERE scope = $1 OR scope = $2"
        " ORDER BY scope = $2 LIMIT 1",
        endpoint,
        DEFAULT_SCOPE,
    )
    return stored_from_record(record) if record is not None else None


async def delete(conn: Queryable, scope: str) -> None:
    """Delete the configuration of ``scope``; 404 if there is none."""
    if await conn.fetchval("DELETE FROM bootstrap_configs WHERE scope = $1 RETURNING scope", scope) is None:
        raise NotFound(
            f"no bootstrap configuration for {'the default' if scope == DEFAULT_SCOPE else scope!r}"
        )


async def list_all(conn: Queryable, *, limit: int = 100) -> list[StoredConfig]:
    """Configurations, the default first."""
    records = await conn.fetch(
        f"SELECT {CONFIG_COLUMNS} FROM bootstrap_configs ORDER BY scope <> $1, scope LIMIT $2",
        DEFAULT_SCOPE,
        limit,
    )
    return [stored_from_record(r) for r in records]


def lwm2m_psk_context(endpoint: str) -> str:
    """The sealing context of ``endpoint``'s LwM2M PSK (binds the sealed key to its row)."""
    return f"lwm2m_psk_accounts:{endpoint}:psk_key"


def lwm2m_oscore_context(endpoint: str) -> str:
    """The sealing context of ``endpoint``'s OSCORE master secret."""
    return f"lwm2m_oscore_accounts:{endpoint}:master_secret"


async def put_lwm2m_psk(conn: Queryable, box: SecretBox, endpoint: str, identity: str, key: bytes) -> None:
    """Store the PSK account given to ``endpoint`` for its LwM2M server (replacing an older one)."""
    await conn.execute(
        """INSERT INTO lwm2m_psk_accounts (endpoint, psk_identity, psk_key) VALUES ($1, $2, $3)
           ON CONFLICT (endpoint) DO UPDATE
               SET psk_identity = excluded.psk_identity, psk_key = excluded.psk_key, created_at = now()""",
        endpoint,
        identity,
        box.seal(key, context=lwm2m_psk_context(endpoint)),
    )


async def lwm2m_psk(conn: Queryable, box: SecretBox, endpoint: str) -> tuple[str, bytes] | None:
    """The PSK account provisioned for ``endpoint`` (identity, key), for the LwM2M server's use."""
    record = await conn.fetchrow(
        "SELECT psk_identity, psk_key FROM lwm2m_psk_accounts WHERE endpoint = $1", endpoint
    )
    if record is None:
        return None
    return record["psk_identity"], box.open(record["psk_key"], context=lwm2m_psk_context(endpoint))


@dataclass(frozen=True, kw_only=True)
class LwM2MPskAccount:
    """A PSK account written to a device in mode ``psk``, as its LwM2M server needs it."""

    endpoint: str
    identity: str
    key: bytes = field(repr=False)
    provisioned_at: dt.datetime
    """When the bootstrap server last wrote it (a new bootstrap replaces the key)."""


async def lwm2m_psk_identities(conn: Queryable, *, limit: int) -> list[tuple[str, str, dt.datetime]]:
    """Endpoints with a provisioned PSK account, newest first: (endpoint, identity, provisioned at)."""
    records = await conn.fetch(
        """SELECT endpoint, psk_identity, created_at FROM lwm2m_psk_accounts
            ORDER BY created_at DESC, endpoint LIMIT $1""",
        limit,
    )
    return [(r["endpoint"], r["psk_identity"], r["created_at"]) for r in records]


AccountTable = Literal["lwm2m_psk_accounts", "lwm2m_oscore_accounts"]
"""The tables of secrets provisioned to devices for their LwM2M server."""


async def endpoints_without_account(
    conn: Queryable, endpoints: Sequence[str], *, table: AccountTable
) -> list[str]:
    """Those of ``endpoints`` that have no row in ``table`` (PSK accounts or OSCORE contexts), in
    the order given."""
    have = {
        r["endpoint"]
        for r in await conn.fetch(
            f"SELECT endpoint FROM {table} WHERE endpoint = ANY($1::text[])",  # table: one of two names
            list(endpoints),
        )
    }
    return [endpoint for endpoint in endpoints if endpoint not in have]


async def export_lwm2m_psks(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    box: SecretBox,
    *,
    endpoints: Sequence[str] | None = None,
    since: dt.datetime | None = None,
) -> AsyncIterator[LwM2MPskAccount]:
    """The PSK accounts (keys opened) of ``endpoints``, or of all, provisioned at or after ``since``,
    oldest first. Streams through a cursor, so a million accounts do not sit in memory.

    Raises:
        SecretError: A key does not open under ``box`` (another master key, or tampering).
    """
    async for record in _provisioned(
        conn, "lwm2m_psk_accounts", "psk_identity, psk_key", endpoints=endpoints, since=since
    ):
        endpoint = record["endpoint"]
        yield LwM2MPskAccount(
            endpoint=endpoint,
            identity=record["psk_identity"],
            key=box.open(record["psk_key"], context=lwm2m_psk_context(endpoint)),
            provisioned_at=record["created_at"],
        )


async def _provisioned(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    table: AccountTable,
    columns: str,
    *,
    endpoints: Sequence[str] | None,
    since: dt.datetime | None,
) -> AsyncIterator[asyncpg.Record]:
    """Rows of ``table`` (endpoint, ``columns``, created_at) for ``endpoints`` or all, provisioned at
    or after ``since``, oldest first, through a cursor in a read-only transaction."""
    async with conn.transaction(readonly=True):
        cursor = conn.cursor(
            f"""SELECT endpoint, {columns}, created_at FROM {table}
                 WHERE ($1::text[] IS NULL OR endpoint = ANY($1::text[]))
                   AND ($2::timestamptz IS NULL OR created_at >= $2)
                 ORDER BY created_at, endpoint""",  # table and columns: constants of this module
            None if endpoints is None else list(endpoints),
            since,
        )
        async for record in cursor:
            yield record


class SenderIdTaken(Exception):
    """Another endpoint's OSCORE context already has this Sender ID (draw another)."""


async def put_lwm2m_oscore(conn: Queryable, box: SecretBox, endpoint: str, context: OscoreContext) -> None:
    """Store the OSCORE context given to ``endpoint`` for its LwM2M server (replacing an older one).

    Raises:
        SenderIdTaken: The Sender ID belongs to another endpoint's context; nothing was written.
    """
    try:
        await conn.execute(
            """INSERT INTO lwm2m_oscore_accounts
                   (endpoint, sender_id, recipient_id, master_secret, master_salt, aead_algorithm,
                    hmac_algorithm)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (endpoint) DO UPDATE SET
                   sender_id = excluded.sender_id, recipient_id = excluded.recipient_id,
                   master_secret = excluded.master_secret, master_salt = excluded.master_salt,
                   aead_algorithm = excluded.aead_algorithm, hmac_algorithm = excluded.hmac_algorithm,
                   created_at = now()""",
            endpoint,
            context.sender_id,
            context.recipient_id,
            box.seal(context.master_secret, context=lwm2m_oscore_context(endpoint)),
            context.master_salt,
            context.aead_algorithm,
            context.hmac_algorithm,
        )
    except asyncpg.UniqueViolationError:
        raise SenderIdTaken(context.sender_id.hex()) from None


@dataclass(frozen=True, kw_only=True)
class LwM2MOscoreAccount:
    """An OSCORE context written to a device, as its LwM2M server needs it."""

    endpoint: str
    context: OscoreContext
    provisioned_at: dt.datetime


async def lwm2m_oscore_ids(conn: Queryable, *, limit: int) -> list[tuple[str, bytes, dt.datetime]]:
    """Endpoints with an OSCORE context, newest first: (endpoint, device's Sender ID, provisioned at)."""
    records = await conn.fetch(
        """SELECT endpoint, sender_id, created_at FROM lwm2m_oscore_accounts
            ORDER BY created_at DESC, endpoint LIMIT $1""",
        limit,
    )
    return [(r["endpoint"], r["sender_id"], r["created_at"]) for r in records]


async def export_lwm2m_oscore(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    box: SecretBox,
    *,
    endpoints: Sequence[str] | None = None,
    since: dt.datetime | None = None,
) -> AsyncIterator[LwM2MOscoreAccount]:
    """Like :func:`export_lwm2m_psks`, for the OSCORE contexts (master secrets opened).

    Raises:
        SecretError: A master secret does not open under ``box``.
    """
    columns = "sender_id, recipient_id, master_secret, master_salt, aead_algorithm, hmac_algorithm"
    async for record in _provisioned(
        conn, "lwm2m_oscore_accounts", columns, endpoints=endpoints, since=since
    ):
        endpoint = record["endpoint"]
        context = OscoreContext(
            master_secret=box.open(record["master_secret"], context=lwm2m_oscore_context(endpoint)),
            sender_id=record["sender_id"],
            recipient_id=record["recipient_id"],
            master_salt=record["master_salt"],
            aead_algorithm=record["aead_algorithm"],
            hmac_algorithm=record["hmac_algorithm"],
        )
        yield LwM2MOscoreAccount(endpoint=endpoint, context=context, provisioned_at=record["created_at"])


@dataclass(frozen=True, kw_only=True)
class BootstrapRecord:
    """One bootstrap, as recorded."""

    endpoint: str
    method: str
    """``request`` (POST /bs, server-driven) or ``pack`` (GET /bspack)."""
    transport: str
    started_at: dt.datetime
    ended_at: dt.datetime
    outcome: str
    reason: str | None
    security_mode: str | None


#: ``bootstrap_sessions`` columns, named as :class:`BootstrapRecord`'s fields, in COPY order.
_RECORD_COLUMNS = (
    "endpoint", "method", "transport", "started_at", "ended_at", "outcome", "reason", "security_mode",
)  # fmt: skip
_RECORD_VALUES = operator.attrgetter(*_RECORD_COLUMNS)


async def insert_records(conn: Queryable, entries: list[BootstrapRecord]) -> None:
    """Append bootstrap outcomes in one binary ``COPY`` (used through a group-commit writer; see
    :func:`bootstrap.store.audit.insert_issued` for why COPY rather than an INSERT)."""
    await conn.copy_records_to_table(
        "bootstrap_sessions", columns=_RECORD_COLUMNS, records=map(_RECORD_VALUES, entries)
    )


async def record(conn: Queryable, entry: BootstrapRecord) -> None:
    """Append one bootstrap outcome."""
    await insert_records(conn, [entry])


async def recent(conn: Queryable, *, endpoint: str | None = None, limit: int = 20) -> list[BootstrapRecord]:
    """Most recent bootstraps, newest first."""
    records = await conn.fetch(
        """SELECT endpoint, method, transport, started_at, ended_at, outcome, reason, security_mode
             FROM bootstrap_sessions WHERE $1::text IS NULL OR endpoint = $1
            ORDER BY started_at DESC, id DESC LIMIT $2""",
        endpoint,
        limit,
    )
    return [BootstrapRecord(**dict(r)) for r in records]
