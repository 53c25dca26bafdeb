"""Queries the admin API needs beyond the store modules: filtered keyset pages, and updates that
honour an entity tag.

Pages are ordered by id (``after`` = the last id seen), so deleting items between pages never
breaks a walk through a collection. Filters are parameters; the SQL text is built only from
constant fragments.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..errors import BadRequest, Conflict, NotFound, PreconditionFailed
from ..store import Queryable
from ..store.bootstrap_configs import CONFIG_COLUMNS, DEFAULT_SCOPE, StoredConfig, stored_from_record
from ..store.trust import STATUSES, TrustedCertificate


@dataclass(frozen=True)
class Page:
    """Keyset paging: rows after ``after`` in id order, at most ``limit``."""

    after: Any
    limit: int
    descending: bool = False


class _Where:
    """Accumulates ``AND``-ed conditions with numbered parameters."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, condition: str, *values: Any) -> None:
        """``condition`` uses ``{}`` placeholders, one per value, replaced with ``$n``."""
        numbers = []
        for value in values:
            self.args.append(value)
            numbers.append(f"${len(self.args)}")
        self.conditions.append(condition.format(*numbers))

    def sql(self) -> str:
        """``WHERE ...`` or nothing."""
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere (wildcards in ``text`` are literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _page(
    conn: Queryable, table: str, columns: str, key: str, where: _Where, page: Page
) -> list[asyncpg.Record]:
    paged = _Where()
    paged.conditions, paged.args = list(where.conditions), list(where.args)
    if page.after is not None:
        paged.add(f"{key} {'<' if page.descending else '>'} {{}}", page.after)
    paged.args.append(page.limit + 1)
    sql = (
        f"SELECT {columns} FROM {table}{paged.sql()}"  # noqa: S608 (constant fragments)
        f" ORDER BY {key} {'DESC' if page.descending else 'ASC'} LIMIT ${len(paged.args)}"
    )
    return await conn.fetch(sql, *paged.args)


async def _count(conn: Queryable, table: str, where: _Where) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}{where.sql()}", *where.args))  # noqa: S608


# --- trusted certificates -----------------------------------------------------------------------

TRUST_COLUMNS = (
    "id, name, description, service, status, certificate_pem, fingerprint_sha256, subject, issuer,"
    " not_before, not_after, created_at, updated_at, etag"
)


@dataclass(frozen=True, kw_only=True)
class TrustFilters:
    """List filters of ``/v3/trusted-certificates``."""

    name: str | None = None
    service: str | None = None
    status: str | None = None
    issuer_like: str | None = None
    subject_like: str | None = None
    valid: bool | None = None

    def where(self, now: dt.datetime) -> _Where:
        """The conditions."""
        where = _Where()
        if self.name is not None:
            where.add("name = {}", self.name)
        if self.service is not None:
            where.add("service = {}", self.service)
        if self.status is not None:
            where.add("status = {}", self.status)
        if self.issuer_like is not None:
            where.add("issuer ILIKE {}", like_pattern(self.issuer_like))
        if self.subject_like is not None:
            where.add("subject ILIKE {}", like_pattern(self.subject_like))
        if self.valid is not None:
            where.add("(not_before <= {} AND not_after > {}) = {}", now, now, self.valid)
        return where


def _trusted(record: asyncpg.Record) -> TrustedCertificate:
    return TrustedCertificate(**dict(record))


async def trusted_page(
    conn: Queryable, filters: TrustFilters, page: Page, *, now: dt.datetime
) -> list[TrustedCertificate]:
    """One page of trusted certificates (``limit + 1`` rows at most, to tell if there are more)."""
    rows = await _page(conn, "trusted_certificates", TRUST_COLUMNS, "id", filters.where(now), page)
    return [_trusted(r) for r in rows]


async def trusted_count(conn: Queryable, filters: TrustFilters, *, now: dt.datetime) -> int:
    """Number of trusted certificates matching ``filters``."""
    return await _count(conn, "trusted_certificates", filters.where(now))


async def update_trusted(
    pool: asyncpg.Pool, id_or_name: str, changes: dict[str, Any], *, if_match: str | None
) -> TrustedCertificate:
    """Change ``name``, ``description`` and/or ``status``; 404, 409 (name taken) or 412 (stale ETag)."""
    if "status" in changes and changes["status"] not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            f"SELECT {TRUST_COLUMNS} FROM trusted_certificates WHERE id = $1 OR name = $1 FOR UPDATE",  # noqa: S608
            id_or_name,
        )
        if current is None:
            raise NotFound(f"no trusted certificate {id_or_name!r}")
        if if_match is not None and if_match != current["etag"]:
            raise PreconditionFailed("the trusted certificate was changed by someone else (ETag mismatch)")
        merged = {k: changes.get(k, current[k]) for k in ("name", "description", "status")}
        try:
            record = await conn.fetchrow(
                f"""UPDATE trusted_certificates
                       SET name = $2, description = $3, status = $4, updated_at = now(), etag = $5
                     WHERE id = $1 RETURNING {TRUST_COLUMNS}""",  # noqa: S608
                current["id"],
                merged["name"],
                merged["description"],
                merged["status"],
                uuid.uuid4().hex,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("a trusted certificate with this name already exists", field="name") from None
    assert record is not None
    return _trusted(record)


async def delete_trusted(pool: asyncpg.Pool, id_or_name: str, *, if_match: str | None) -> str:
    """Delete a trusted certificate; returns its id. 404 if unknown, 412 on a stale ETag."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT id, etag FROM trusted_certificates WHERE id = $1 OR name = $1 FOR UPDATE", id_or_name
        )
        if current is None:
            raise NotFound(f"no trusted certificate {id_or_name!r}")
        if if_match is not None and if_match != current["etag"]:
            raise PreconditionFailed("the trusted certificate was changed by someone else (ETag mismatch)")
        await conn.execute("DELETE FROM trusted_certificates WHERE id = $1", current["id"])
    return str(current["id"])


# --- device credentials (never the key) --------------------------------------------------------

DEVICE_COLUMNS = "endpoint, psk_identity, created_at, updated_at"


async def device_page(conn: Queryable, identity: str | None, page: Page) -> list[asyncpg.Record]:
    """One page of (endpoint, psk_identity, created_at, updated_at), ordered by endpoint."""
    where = _Where()
    if identity is not None:
        where.add("psk_identity = {}", identity)
    return await _page(conn, "device_credentials", DEVICE_COLUMNS, "endpoint", where, page)


async def device_count(conn: Queryable, identity: str | None) -> int:
    """Number of endpoints with PSK credentials (optionally with this identity)."""
    where = _Where()
    if identity is not None:
        where.add("psk_identity = {}", identity)
    return await _count(conn, "device_credentials", where)


async def device_row(conn: Queryable, endpoint: str, *, for_update: bool = False) -> asyncpg.Record | None:
    """One endpoint's credential metadata."""
    return await conn.fetchrow(
        f"SELECT {DEVICE_COLUMNS} FROM device_credentials WHERE endpoint = $1"  # noqa: S608
        + (" FOR UPDATE" if for_update else ""),
        endpoint,
    )


# --- issued certificates (the audit) -------------------------------------------------------------

ISSUED_COLUMNS = (
    "id, serial_number, endpoint, service_reference, issuer_id, issuer_name, issuer_type, fingerprint_sha256,"
    " subject, not_before, not_after, request_id, issued_at, revoked_at, revocation_reason"
)


@dataclass(frozen=True, kw_only=True)
class IssuedFilters:
    """List filters of ``/v3/issued-certificates``."""

    endpoint: str | None = None
    service: str | None = None
    issuer_id: str | None = None
    valid: bool | None = None

    def where(self, now: dt.datetime) -> _Where:
        """The conditions; *valid* means within validity and not revoked."""
        where = _Where()
        if self.endpoint is not None:
            where.add("endpoint = {}", self.endpoint)
        if self.service is not None:
            where.add("service_reference = {}", self.service)
        if self.issuer_id is not None:
            where.add("issuer_id = {}", self.issuer_id)
        if self.valid is not None:
            where.add(
                "(revoked_at IS NULL AND not_before <= {} AND not_after > {}) = {}", now, now, self.valid
            )
        return where


async def issued_page(
    conn: Queryable, filters: IssuedFilters, page: Page, *, now: dt.datetime
) -> list[asyncpg.Record]:
    """One page of audit rows without the certificate itself."""
    return await _page(conn, "issued_certificates", ISSUED_COLUMNS, "id", filters.where(now), page)


async def issued_count(conn: Queryable, filters: IssuedFilters, *, now: dt.datetime) -> int:
    """Number of audit rows matching ``filters``."""
    return await _count(conn, "issued_certificates", filters.where(now))


async def issued_row(conn: Queryable, cert_id: int) -> asyncpg.Record:
    """One audit row with the DER certificate; 404 if unknown."""
    record = await conn.fetchrow(
        f"SELECT {ISSUED_COLUMNS}, certificate FROM issued_certificates WHERE id = $1",  # noqa: S608
        cert_id,
    )
    if record is None:
        raise NotFound(f"no issued certificate {cert_id}")
    found: asyncpg.Record = record
    return found


async def record_revocation(conn: Queryable, cert_id: int, reason: str) -> asyncpg.Record:
    """Set ``revoked_at``/``revocation_reason`` (the only change the audit table allows); 409 if the
    certificate is already revoked."""
    record = await conn.fetchrow(
        f"""UPDATE issued_certificates SET revoked_at = now(), revocation_reason = $2
             WHERE id = $1 AND revoked_at IS NULL
             RETURNING {ISSUED_COLUMNS}, certificate""",  # noqa: S608
        cert_id,
        reason,
    )
    if record is None:
        await issued_row(conn, cert_id)  # 404 if it does not exist at all
        raise Conflict(f"issued certificate {cert_id} is already revoked")
    updated: asyncpg.Record = record
    return updated


# --- bootstrap configurations ------------------------------------------------------------------

#: Paging key: the default (``*``) before every endpoint, endpoints in byte order (``C`` collation, so
#: the order does not depend on the database locale).
_SCOPE_KEY = f"(CASE WHEN scope = '{DEFAULT_SCOPE}' THEN '' ELSE scope END) COLLATE \"C\""


def scope_key(scope: str) -> str:
    """The paging key of a stored scope (see ``_SCOPE_KEY``)."""
    return "" if scope == DEFAULT_SCOPE else scope


@dataclass(frozen=True, kw_only=True)
class BootstrapConfigFilters:
    """List filters of ``/v3/bootstrap-configurations`` (``scope`` as stored: ``*`` is the default)."""

    scope: str | None = None
    security_mode: str | None = None

    def where(self) -> _Where:
        """The conditions."""
        where = _Where()
        if self.scope is not None:
            where.add("scope = {}", self.scope)
        if self.security_mode is not None:
            where.add("security_mode = {}", self.security_mode)
        return where


async def bootstrap_config_page(
    conn: Queryable, filters: BootstrapConfigFilters, page: Page
) -> list[StoredConfig]:
    """One page of configurations, the default first (``page.after`` is a :func:`scope_key`)."""
    rows = await _page(conn, "bootstrap_configs", CONFIG_COLUMNS, _SCOPE_KEY, filters.where(), page)
    return [stored_from_record(r) for r in rows]


async def bootstrap_config_count(conn: Queryable, filters: BootstrapConfigFilters) -> int:
    """Number of configurations matching ``filters``."""
    return await _count(conn, "bootstrap_configs", filters.where())


async def bootstrap_config_row(
    conn: Queryable, scope: str, *, for_update: bool = False
) -> StoredConfig | None:
    """The configuration of exactly ``scope`` (stored form), or ``None``."""
    record = await conn.fetchrow(
        f"SELECT {CONFIG_COLUMNS} FROM bootstrap_configs WHERE scope = $1"  # noqa: S608
        + (" FOR UPDATE" if for_update else ""),
        scope,
    )
    return stored_from_record(record) if record is not None else None


# --- bootstrap sessions (the record of every bootstrap) ----------------------------------------

BOOTSTRAP_SESSION_COLUMNS = (
    "id, endpoint, method, transport, security_mode, outcome, reason, started_at, ended_at"
)


@dataclass(frozen=True, kw_only=True)
class BootstrapSessionFilters:
    """List filters of ``/v3/bootstrap-sessions``."""

    endpoint: str | None = None
    outcome: str | None = None
    method: str | None = None

    def where(self) -> _Where:
        """The conditions."""
        where = _Where()
        if self.endpoint is not None:
            where.add("endpoint = {}", self.endpoint)
        if self.outcome is not None:
            where.add("outcome = {}", self.outcome)
        if self.method is not None:
            where.add("method = {}", self.method)
        return where


async def bootstrap_session_page(
    conn: Queryable, filters: BootstrapSessionFilters, page: Page
) -> list[asyncpg.Record]:
    """One page of recorded bootstraps by id (``limit + 1`` rows at most)."""
    return await _page(conn, "bootstrap_sessions", BOOTSTRAP_SESSION_COLUMNS, "id", filters.where(), page)


async def bootstrap_session_count(conn: Queryable, filters: BootstrapSessionFilters) -> int:
    """Number of recorded bootstraps matching ``filters``."""
    return await _count(conn, "bootstrap_sessions", filters.where())


async def bootstrap_session_row(conn: Queryable, session_id: int) -> asyncpg.Record:
    """One recorded bootstrap; 404 if unknown."""
    record = await conn.fetchrow(
        f"SELECT {BOOTSTRAP_SESSION_COLUMNS} FROM bootstrap_sessions WHERE id = $1",  # noqa: S608
        session_id,
    )
    if record is None:
        raise NotFound(f"no bootstrap session {session_id}")
    found: asyncpg.Record = record
    return found
