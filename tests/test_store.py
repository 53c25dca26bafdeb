"""Storage against a real Postgres: migrations, the built-in CA, the audit writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os

import asyncpg
import pytest

from bootstrap.secretbox import SecretBox
from bootstrap.store import builtin_ca
from bootstrap.store.audit import AuditWriter, IssuedCertificate
from bootstrap.store.migrations import available, migrate


async def test_migrations_are_idempotent_and_safe_concurrently(pool: asyncpg.Pool) -> None:
    """Concurrent starts apply nothing twice (advisory lock), and the LWM2M service exists once."""
    results = await asyncio.gather(migrate(pool), migrate(pool), migrate(pool))
    assert results == [[], [], []]
    versions = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [v for v, _, _ in available()]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM certificate_issuer_configurations WHERE reference = 'LWM2M'"
        )
        == 1
    )


async def test_builtin_ca_is_created_once_and_keys_are_sealed(pool: asyncpg.Pool, box: SecretBox) -> None:
    """Concurrent first starts create one CA; its keys are not stored in clear."""
    first, second = await asyncio.gather(builtin_ca.ensure(pool, box), builtin_ca.ensure(pool, box))
    assert first.generation == second.generation
    assert await pool.fetchval("SELECT count(*) FROM builtin_ca WHERE active") == 1
    row = await pool.fetchrow("SELECT issuing_key, root_key FROM builtin_ca WHERE active")
    assert b"PRIVATE KEY" not in row["issuing_key"] and b"PRIVATE KEY" not in row["root_key"]
    issuing, root = first.chain
    issuing.verify_directly_issued_by(root)
    assert issuing.public_key() == first.issuing_key.public_key()


async def test_builtin_ca_does_not_open_under_another_master_key(pool: asyncpg.Pool, box: SecretBox) -> None:
    """A wrong master key is detected instead of producing garbage keys."""
    from bootstrap.secretbox import SecretError

    await builtin_ca.ensure(pool, box)
    with pytest.raises(SecretError):
        await builtin_ca.load_active(pool, SecretBox(os.urandom(32)))


def _row(endpoint: str, n: int) -> IssuedCertificate:
    der = f"{endpoint}-{n}".encode()
    now = dt.datetime.now(dt.UTC)
    return IssuedCertificate(
        serial_number=f"{n:X}",
        endpoint=endpoint,
        service_reference="LWM2M",
        issuer_id=None,
        issuer_name="builtin",
        issuer_type="BUILTIN",
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        subject=f"CN={endpoint}",
        not_before=now,
        not_after=now + dt.timedelta(days=1),
        certificate_der=der,
        request_id=f"r{n}",
    )


async def test_audit_writer_group_commits(pool: asyncpg.Pool, unique: str) -> None:
    """Rows recorded together share batches, and every row is durable when record() returns."""
    writer = AuditWriter(pool)
    writer.start()
    endpoint = f"audit-{unique}"
    await asyncio.gather(*(writer.record(_row(endpoint, n)) for n in range(200)))
    assert (
        await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", endpoint) == 200
    )
    assert writer.rows == 200
    assert writer.batches < 200 / 4, f"expected group commits, got {writer.batches} batches"
    await writer.aclose()


async def test_audit_failure_reaches_every_waiter(pool: asyncpg.Pool, unique: str) -> None:
    """A failed batch (here a duplicate fingerprint) fails the callers instead of pretending success."""
    writer = AuditWriter(pool)
    writer.start()
    row = _row(f"dup-{unique}", 1)
    await writer.record(row)
    with pytest.raises(asyncpg.UniqueViolationError):
        await writer.record(row)
    await writer.aclose()


async def test_audit_rows_are_append_only(pool: asyncpg.Pool, unique: str) -> None:
    """Audit rows cannot be deleted or rewritten; only revocation may be recorded."""
    writer = AuditWriter(pool)
    writer.start()
    endpoint = f"ro-{unique}"
    await writer.record(_row(endpoint, 1))
    await writer.aclose()
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM issued_certificates WHERE endpoint = $1", endpoint)
    with pytest.raises(asyncpg.RaiseError, match="only revocation"):
        await pool.execute("UPDATE issued_certificates SET endpoint = 'x' WHERE endpoint = $1", endpoint)
    await pool.execute(
        "UPDATE issued_certificates SET revoked_at = now(), revocation_reason = 'keyCompromise'"
        " WHERE endpoint = $1",
        endpoint,
    )
