"""Persistence of the built-in CA: created once (under an advisory lock), keys sealed at rest."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import builtin_ca
from ..secretbox import SecretBox
from . import Queryable

_LOCK_ID = 0x4C574D32_43414B45 & 0x7FFFFFFFFFFFFFFF
_CONTEXT = "builtin_ca:{generation}:{column}"


@dataclass(frozen=True)
class ActiveBuiltinCa:
    """The active generation of the built-in CA, keys decrypted."""

    generation: int
    chain: tuple[x509.Certificate, ...]
    """Issuing CA, then root."""
    issuing_key: ec.EllipticCurvePrivateKey


def _random_serial() -> int:
    return int.from_bytes(os.urandom(16), "big") >> 1 | 1


async def load_active(conn: Queryable, box: SecretBox) -> ActiveBuiltinCa | None:
    """The active built-in CA, or ``None`` if none was created yet."""
    row = await conn.fetchrow(
        "SELECT generation, root_certificate, issuing_certificate, issuing_key FROM builtin_ca WHERE active"
    )
    if row is None:
        return None
    generation = row["generation"]
    pem = box.open(row["issuing_key"], context=_CONTEXT.format(generation=generation, column="issuing_key"))
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = (
        x509.load_der_x509_certificate(row["issuing_certificate"]),
        x509.load_der_x509_certificate(row["root_certificate"]),
    )
    return ActiveBuiltinCa(generation=generation, chain=chain, issuing_key=key)


async def active_chain(conn: Queryable) -> list[x509.Certificate]:
    """The active built-in chain (issuing CA, root) without keys; empty before first start."""
    row = await conn.fetchrow("SELECT root_certificate, issuing_certificate FROM builtin_ca WHERE active")
    if row is None:
        return []
    return [
        x509.load_der_x509_certificate(row["issuing_certificate"]),
        x509.load_der_x509_certificate(row["root_certificate"]),
    ]


async def ensure(
    pool: asyncpg.Pool, box: SecretBox, *, organization: str = "LwM2M Bootstrap"
) -> ActiveBuiltinCa:
    """Return the active built-in CA, creating it on first start.

    Concurrent first starts (several workers) serialise on an advisory lock, so exactly one CA is made.
    """
    existing = await load_active(pool, box)
    if existing is not None:
        return existing
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        existing = await load_active(conn, box)
        if existing is not None:
            return existing
        generation = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('builtin_ca', 'generation'))")
        material = builtin_ca.generate(
            now=dt.datetime.now(dt.UTC),
            organization=organization,
            label=os.urandom(3).hex().upper(),
            serials=(_random_serial(), _random_serial()),
        )
        der = serialization.Encoding.DER
        await conn.execute(
            """INSERT INTO builtin_ca
                   (generation, root_certificate, root_key, issuing_certificate, issuing_key, active)
               VALUES ($1, $2, $3, $4, $5, true)""",
            generation,
            material.root_certificate.public_bytes(der),
            box.seal(
                builtin_ca.key_pem(material.root_key),
                context=_CONTEXT.format(generation=generation, column="root_key"),
            ),
            material.issuing_certificate.public_bytes(der),
            box.seal(
                builtin_ca.key_pem(material.issuing_key),
                context=_CONTEXT.format(generation=generation, column="issuing_key"),
            ),
        )
        return ActiveBuiltinCa(generation=generation, chain=material.chain, issuing_key=material.issuing_key)


async def retired_issuing(conn: Queryable, *, now: dt.datetime | None = None) -> list[x509.Certificate]:
    """Issuing CAs of earlier generations that have not expired: certificates they signed are still
    valid, so they stay trust anchors (and chain links) until then."""
    moment = now or dt.datetime.now(dt.UTC)
    rows = await conn.fetch("SELECT issuing_certificate FROM builtin_ca WHERE NOT active ORDER BY generation")
    found = [x509.load_der_x509_certificate(r["issuing_certificate"]) for r in rows]
    return [c for c in found if c.not_valid_after_utc > moment]


async def rotate_issuing(
    pool: asyncpg.Pool, box: SecretBox, *, organization: str = "LwM2M Bootstrap"
) -> tuple[ActiveBuiltinCa, x509.Certificate]:
    """Make a new issuing intermediate under the same root the active one; return it and the one it
    replaced. The root (which devices trust) does not change; certificates signed by the old
    intermediate stay valid and verifiable (see :func:`retired_issuing`). Running servers switch on
    the NOTIFY the change fires."""
    await ensure(pool, box, organization=organization)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        row = await conn.fetchrow(
            "SELECT generation, root_certificate, root_key, issuing_certificate FROM builtin_ca"
            " WHERE active FOR UPDATE"
        )
        assert row is not None
        old_generation = row["generation"]
        root = x509.load_der_x509_certificate(row["root_certificate"])
        root_pem = box.open(
            row["root_key"], context=_CONTEXT.format(generation=old_generation, column="root_key")
        )
        root_key = serialization.load_pem_private_key(root_pem, password=None)
        assert isinstance(root_key, ec.EllipticCurvePrivateKey)
        generation = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('builtin_ca', 'generation'))")
        issuing, issuing_key = builtin_ca.new_issuing_ca(
            root,
            root_key,
            now=dt.datetime.now(dt.UTC),
            organization=organization,
            label=f"{os.urandom(3).hex().upper()}-{generation}",
            serial=_random_serial(),
        )
        await conn.execute("UPDATE builtin_ca SET active = false WHERE generation = $1", old_generation)
        der = serialization.Encoding.DER
        await conn.execute(
            """INSERT INTO builtin_ca
                   (generation, root_certificate, root_key, issuing_certificate, issuing_key, active)
               VALUES ($1, $2, $3, $4, $5, true)""",
            generation,
            row["root_certificate"],
            box.seal(root_pem, context=_CONTEXT.format(generation=generation, column="root_key")),
            issuing.public_bytes(der),
            box.seal(
                builtin_ca.key_pem(issuing_key),
                context=_CONTEXT.format(generation=generation, column="issuing_key"),
            ),
        )
    previous = x509.load_der_x509_certificate(row["issuing_certificate"])
    return ActiveBuiltinCa(generation=generation, chain=(issuing, root), issuing_key=issuing_key), previous
