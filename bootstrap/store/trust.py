"""Trusted certificates: the factory CAs whose device certificates may bootstrap (service
``bootstrap``), and CAs trusted for LwM2M connections (service ``lwm2m``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import BadRequest, Conflict, NotFound
from . import Queryable

SERVICES = ("bootstrap", "lwm2m")
STATUSES = ("ACTIVE", "INACTIVE")


@dataclass(frozen=True)
class TrustedCertificate:
    """One trusted certificate (or chain) as stored."""

    id: str
    name: str
    description: str | None
    service: str
    status: str
    certificate_pem: str
    fingerprint_sha256: str
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: str

    @property
    def certificates(self) -> list[x509.Certificate]:
        """The certificates of the stored PEM."""
        return x509.load_pem_x509_certificates(self.certificate_pem.encode())


def parse_pem_chain(pem: str) -> list[x509.Certificate]:
    """Parse one or more PEM certificates, or raise 400 naming the ``certificate`` field."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise BadRequest("not a PEM certificate or chain", field="certificate") from None
    return certificates


def _row(record: asyncpg.Record) -> TrustedCertificate:
    return TrustedCertificate(**dict(record))


_COLUMNS = (
    "id, name, description, service, status, certificate_pem, fingerprint_sha256, subject, issuer,"
    " not_before, not_after, created_at, updated_at, etag"
)


async def add(
    conn: Queryable,
    *,
    name: str,
    service: str,
    certificate_pem: str,
    description: str | None = None,
    status: str = "ACTIVE",
) -> TrustedCertificate:
    """Store a trusted certificate; 400 for bad input, 409 for a duplicate name or certificate."""
    if service not in SERVICES:
        raise BadRequest(f"service must be one of {', '.join(SERVICES)}", field="service")
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    if not name or len(name) > 100:
        raise BadRequest("name must be 1-100 characters", field="name")
    certificates = parse_pem_chain(certificate_pem)
    first = certificates[0]
    if service == "bootstrap":
        try:
            is_ca = first.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise BadRequest(
                "a bootstrap trust anchor must be a CA certificate (basicConstraints CA:TRUE)",
                field="certificate",
            )
    fingerprint = hashlib.sha256(first.public_bytes(Encoding.DER)).hexdigest()
    try:
        record = await conn.fetchrow(
            f"""INSERT INTO trusted_certificates
                   (id, name, description, service, status, certificate_pem, fingerprint_sha256, subject,
                    issuer, not_before, not_after, etag)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                RETURNING {_COLUMNS}""",
            uuid.uuid4().hex,
            name,
            description,
            service,
            status,
            "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates),
            fingerprint,
            first.subject.rfc4514_string(),
            first.issuer.rfc4514_string(),
            first.not_valid_before_utc,
            first.not_valid_after_utc,
            uuid.uuid4().hex,
        )
    except asyncpg.UniqueViolationError as exc:
        what = "name" if "name" in (exc.constraint_name or "") else "certificate"
        raise Conflict(f"a trusted certificate with this {what} already exists", field=what) from None
    assert record is not None
    return _row(record)


async def list_all(conn: Queryable, *, service: str | None = None) -> list[TrustedCertificate]:
    """All trusted certificates (optionally of one service), oldest first."""
    records = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trusted_certificates WHERE $1::text IS NULL OR service = $1"
        " ORDER BY created_at, id",
        service,
    )
    return [_row(r) for r in records]


async def find(conn: Queryable, id_or_name: str) -> TrustedCertificate:
    """One trusted certificate by id or name; 404 if unknown."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trusted_certificates WHERE id = $1 OR name = $1", id_or_name
    )
    if record is None:
        raise NotFound(f"no trusted certificate {id_or_name!r}")
    return _row(record)


async def remove(conn: Queryable, id_or_name: str) -> None:
    """Delete a trusted certificate; 404 if unknown."""
    deleted = await conn.fetchval(
        "DELETE FROM trusted_certificates WHERE id = $1 OR name = $1 RETURNING id", id_or_name
    )
    if deleted is None:
        raise NotFound(f"no trusted certificate {id_or_name!r}")


async def set_status(conn: Queryable, id_or_name: str, status: str) -> TrustedCertificate:
    """Activate or deactivate a trusted certificate."""
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    record = await conn.fetchrow(
        f"""UPDATE trusted_certificates SET status = $2, updated_at = now(), etag = md5(random()::text)
             WHERE id = $1 OR name = $1 RETURNING {_COLUMNS}""",
        id_or_name,
        status,
    )
    if record is None:
        raise NotFound(f"no trusted certificate {id_or_name!r}")
    return _row(record)


async def active_certificates(conn: Queryable, service: str) -> list[x509.Certificate]:
    """Every certificate of every active trusted entry of ``service``."""
    records = await conn.fetch(
        "SELECT certificate_pem FROM trusted_certificates WHERE service = $1 AND status = 'ACTIVE'", service
    )
    found: list[x509.Certificate] = []
    for record in records:
        found.extend(x509.load_pem_x509_certificates(record["certificate_pem"].encode()))
    return found
