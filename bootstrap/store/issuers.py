"""Queries about issuers and service configurations used on the signing path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
