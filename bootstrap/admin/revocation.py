"""Revoking an issued certificate: at the CA when its backend can (:class:`ca_backends.Revoker`),
then in the audit.

The CA is asked first: if it refuses or cannot be reached, nothing is recorded and the operator gets
a 424 to retry (GlobalSign's revoke is idempotent). Certificates of the built-in CA, of backends
without revocation, or of issuers deleted since, are revoked in the audit only.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

import ca_backends
from ca_backends import IssuerConfig, Revoker

from ..errors import Conflict
from ..issuer_service import IssuerService
from ..secretbox import SecretBox
from ..store import issuers as issuer_store
from . import queries

log = structlog.get_logger(__name__)

#: RFC 5280 §5.3.1 CRLReason names that end a certificate's life (not ``certificateHold`` or
#: ``removeFromCRL``: the audit records a final revocation).
REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
)


@dataclass(frozen=True)
class Revocation:
    """What a revocation did."""

    record: asyncpg.Record
    """The audit row after the change (with the certificate)."""
    at_ca: bool
    """Whether the CA itself revoked the certificate."""


async def issuer_config(
    pool: asyncpg.Pool, box: SecretBox, issuer_id: str
) -> tuple[str, IssuerConfig] | None:
    """(issuer type, configuration with decrypted credentials) of a stored issuer, or ``None``."""
    record = await issuer_store.issuer_row(pool, issuer_id)
    if record is None:
        return None
    return record["issuer_type"], IssuerService(pool, box).backend_config(record)


async def _revoke_at_ca(pool: asyncpg.Pool, box: SecretBox, row: asyncpg.Record, reason: str) -> bool:
    if row["issuer_id"] is None:
        return False  # the built-in CA keeps no revocation state of its own
    found = await issuer_config(pool, box, row["issuer_id"])
    if found is None:
        log.warning(
            "issuer of the certificate no longer exists; revoking in the audit only",
            issuer=row["issuer_name"],
        )
        return False
    issuer_type, config = found
    backend = ca_backends.create(issuer_type, config)
    try:
        if not isinstance(backend, Revoker):
            return False
        await backend.revoke(int(row["serial_number"], 16), reason)
        return True
    finally:
        await backend.aclose()


async def revoke(pool: asyncpg.Pool, box: SecretBox, cert_id: int, reason: str) -> Revocation:
    """Revoke audit row ``cert_id`` for ``reason``; 404 if unknown, 409 if already revoked, 424 if
    the CA refuses."""
    row = await queries.issued_row(pool, cert_id)
    if row["revoked_at"] is not None:
        raise Conflict(f"issued certificate {cert_id} is already revoked")
    at_ca = await _revoke_at_ca(pool, box, row, reason)
    record = await queries.record_revocation(pool, cert_id, reason)
    log.info(
        "certificate revoked",
        certificate_id=cert_id,
        serial=row["serial_number"],
        endpoint=row["endpoint"],
        issuer=row["issuer_name"],
        reason=reason,
        at_ca=at_ca,
    )
    return Revocation(record, at_ca)
