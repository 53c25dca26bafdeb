"""Queries about issuers and service configurations used on the signing path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from . import Queryable


@dataclass(frozen=True)
class ServiceIssuerRow:
    """The CA configured for one service; ``issuer_id`` is ``None`` for the built-in CA."""

    reference: str
    issuer_id: str | None
    issuer_name: str | None
    issuer_type: str | None
    attributes: dict[str, Any]
    sealed_credentials: bytes | None
    etag: str | None


def credentials_context(issuer_id: str) -> str:
    """Authenticated-data label binding sealed credentials to their issuer row."""
    return f"certificate_issuers:{issuer_id}:credentials"


async def service_issuer(conn: Queryable, reference: str) -> ServiceIssuerRow | None:
    """The active issuer of service ``reference``, or ``None`` if no such service is configured."""
    row = await conn.fetchrow(
        """SELECT c.reference, i.id, i.name, i.issuer_type, i.issuer_attributes, i.credentials, i.etag
             FROM certificate_issuer_configurations c
             LEFT JOIN certificate_issuers i ON i.id = c.certificate_issuer_id
            WHERE c.reference = $1""",
        reference,
    )
    if row is None:
        return None
    attributes = row["issuer_attributes"]
    return ServiceIssuerRow(
        reference=row["reference"],
        issuer_id=row["id"],
        issuer_name=row["name"],
        issuer_type=row["issuer_type"],
        attributes=json.loads(attributes) if isinstance(attributes, str) else dict(attributes or {}),
        sealed_credentials=row["credentials"],
        etag=row["etag"],
    )


# --- management queries (issuer service layer) -------------------------------------------------

ISSUER_COLUMNS = (
    "id, name, description, issuer_type, issuer_attributes, credentials, created_at, updated_at, etag,"
    " verified_at, verify_successful, verify_message"
)
CONFIG_COLUMNS = "id, reference, certificate_issuer_id, created_at, updated_at, etag"


async def issuer_rows(conn: Queryable) -> list[asyncpg.Record]:
    """Every issuer, oldest first."""
    return await conn.fetch(f"SELECT {ISSUER_COLUMNS} FROM certificate_issuers ORDER BY created_at, id")


async def issuer_row(conn: Queryable, id_or_name: str) -> asyncpg.Record | None:
    """One issuer by id or name."""
    return await conn.fetchrow(
        f"SELECT {ISSUER_COLUMNS} FROM certificate_issuers WHERE id = $1 OR name = $1", id_or_name
    )


async def services_using(conn: Queryable, issuer_id: str) -> list[str]:
    """References of the services an issuer is active for."""
    rows = await conn.fetch(
        "SELECT reference FROM certificate_issuer_configurations WHERE certificate_issuer_id = $1"
        " ORDER BY reference",
        issuer_id,
    )
    return [r["reference"] for r in rows]


async def config_rows(conn: Queryable, *, reference: str | None = None) -> list[asyncpg.Record]:
    """Service configurations (optionally one reference), LWM2M first."""
    return await conn.fetch(
        f"""SELECT {CONFIG_COLUMNS} FROM certificate_issuer_configurations
             WHERE $1::text IS NULL OR reference = $1
             ORDER BY reference <> 'LWM2M', reference""",
        reference,
    )
