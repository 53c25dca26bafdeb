"""The issuance audit: every certificate handed out is committed here first, in group commits
(:class:`~bootstrap.store.group_commit.GroupCommitWriter`): a certificate is returned only after
:meth:`AuditWriter.record` has returned, that is, once its row is durable."""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
from dataclasses import dataclass

import asyncpg
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..policy import IssuedRecord
from . import Queryable
from .group_commit import GroupCommitWriter

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class IssuedCertificate:
    """One audit row."""

    serial_number: str
    endpoint: str
    service_reference: str
    issuer_id: str | None
    issuer_name: str
    issuer_type: str
    fingerprint_sha256: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    certificate_der: bytes
    request_id: str

    @classmethod
    def of(
        cls,
        certificate: x509.Certificate,
        *,
        endpoint: str,
        service_reference: str,
        issuer_id: str | None,
        issuer_name: str,
        issuer_type: str,
        request_id: str,
        der: bytes | None = None,
    ) -> IssuedCertificate:
        """The audit row describing ``certificate`` (serial, fingerprint and validity read from it;
        ``der``, when the caller has it already, is its encoding)."""
        if der is None:
            der = certificate.public_bytes(Encoding.DER)
        return cls(
            serial_number=format(certificate.serial_number, "X"),
            endpoint=endpoint,
            service_reference=service_reference,
            issuer_id=issuer_id,
            issuer_name=issuer_name,
            issuer_type=issuer_type,
            fingerprint_sha256=hashlib.sha256(der).hexdigest(),
            subject=certificate.subject.rfc4514_string(),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            certificate_der=der,
            request_id=request_id,
        )


#: Audit columns in the order :func:`insert_issued` sends them, and the attributes they come from.
_COLUMNS = (
    "serial_number", "endpoint", "service_reference", "issuer_id", "issuer_name", "issuer_type",
    "fingerprint_sha256", "subject", "not_before", "not_after", "certificate", "request_id",
)  # fmt: skip
_VALUES = operator.attrgetter(*(name if name != "certificate" else "certificate_der" for name in _COLUMNS))


async def insert_issued(conn: Queryable, rows: list[IssuedCertificate]) -> None:
    """Append ``rows`` in one binary ``COPY`` (one statement, so all or none of them).

    COPY costs the client a half to two thirds of the CPU per row of an INSERT of unnested arrays
    once a batch holds a few rows (``scripts/group_commit_cost.py``): asyncpg's array encoder asks
    of every element whether it is itself an array, two ``isinstance`` checks against
    ``collections.abc`` classes per text value, where COPY encodes each value with its column's
    codec and nothing else."""
    await conn.copy_records_to_table("issued_certificates", columns=_COLUMNS, records=map(_VALUES, rows))


async def record_one(conn: Queryable, row: IssuedCertificate) -> None:
    """Write a single audit row now (for one-off issuance such as an issuer's verify)."""
    await insert_issued(conn, [row])


class AuditWriter(GroupCommitWriter[IssuedCertificate]):
    """Issued certificates in group commits; one writer per process. A failed batch fails its
    callers: the devices get 5.03 and retry, and nothing was handed out."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500) -> None:
        super().__init__(pool, insert_issued, name="audit", max_batch=max_batch)


async def count_issued(conn: Queryable) -> int:
    """Number of audit rows."""
    return int(await conn.fetchval("SELECT count(*) FROM issued_certificates"))


async def recent(conn: Queryable, *, limit: int = 20, endpoint: str | None = None) -> list[asyncpg.Record]:
    """Most recent audit rows (newest first), optionally for one endpoint."""
    return await conn.fetch(
        """SELECT serial_number, endpoint, service_reference, issuer_name, issuer_type,
                  fingerprint_sha256, not_after, issued_at, revoked_at
             FROM issued_certificates
            WHERE $1::text IS NULL OR endpoint = $1
            ORDER BY issued_at DESC, id DESC LIMIT $2""",
        endpoint,
        limit,
    )


async def issued_record(conn: Queryable, fingerprint_sha256: str) -> IssuedRecord | None:
    """What the audit knows of the certificate with this SHA-256 fingerprint (for ``sren``)."""
    row = await conn.fetchrow(
        "SELECT endpoint, not_after, revoked_at FROM issued_certificates WHERE fingerprint_sha256 = $1",
        fingerprint_sha256,
    )
    if row is None:
        return None
    return IssuedRecord(
        endpoint=row["endpoint"], not_after=row["not_after"], revoked=row["revoked_at"] is not None
    )
