"""Storage against a real Postgres: migrations, the built-in CA, the audit writer."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import os

import asyncpg
import pytest

from bootstrap.secretbox import SecretBox
from bootstrap.store import bootstrap_configs, builtin_ca
from bootstrap.store.audit import AuditWriter, IssuedCertificate
from bootstrap.store.group_commit import GroupCommitWriter
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


async def test_batched_rows_read_back_field_by_field(pool: asyncpg.Pool, unique: str) -> None:
    """Both group-commit tables get every value in its own column, NULLs included, whatever the
    batch size (the writers send rows by COPY, where a column list in the wrong order would put
    values in the wrong columns without an error when their types agree)."""
    endpoint = f"fields-{unique}"
    audit_rows = [_row(endpoint, n) for n in range(7)]
    audit_rows[3] = dataclasses.replace(audit_rows[3], issuer_id="issuer-3")
    writer = AuditWriter(pool)
    writer.start()
    await asyncio.gather(*(writer.record(row) for row in audit_rows))
    await writer.aclose()
    stored = await pool.fetch(
        """SELECT serial_number, endpoint, service_reference, issuer_id, issuer_name, issuer_type,
                  fingerprint_sha256, subject, not_before, not_after, certificate, request_id
             FROM issued_certificates WHERE endpoint = $1 ORDER BY request_id""",
        endpoint,
    )
    # The SELECT names the columns in the order of IssuedCertificate's fields.
    expected = sorted(audit_rows, key=lambda row: row.request_id)
    assert [tuple(record) for record in stored] == [dataclasses.astuple(row) for row in expected]

    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    records = [
        bootstrap_configs.BootstrapRecord(
            endpoint=endpoint,
            method="request" if n % 2 else "pack",
            transport="coaps",
            started_at=started + dt.timedelta(seconds=n),
            ended_at=started + dt.timedelta(seconds=n, milliseconds=250),
            outcome="failed" if n == 2 else "success",
            reason="device did not answer" if n == 2 else None,
            security_mode=None if n == 2 else "certificate",
        )
        for n in range(5)
    ]
    sessions = GroupCommitWriter(pool, bootstrap_configs.insert_records, name=f"records-{unique}")
    sessions.start()
    await asyncio.gather(*(sessions.record(record) for record in records))
    await sessions.aclose()
    assert await bootstrap_configs.recent(pool, endpoint=endpoint) == records[::-1]


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


async def test_lwm2m_psk_export_filters_and_orders(pool: asyncpg.Pool, box: SecretBox, unique: str) -> None:
    """The export streams the chosen accounts oldest first with their keys opened; --since keeps
    those provisioned at or after it (a re-bootstrap's new key counts as new)."""
    endpoints = [f"exp-{unique}-{i}" for i in range(3)]
    for endpoint in endpoints:
        await bootstrap_configs.put_lwm2m_psk(pool, box, endpoint, f"id-{endpoint}", endpoint.encode())
    await pool.execute(
        "UPDATE lwm2m_psk_accounts SET created_at = now() - interval '1 hour' WHERE endpoint = ANY($1)",
        endpoints[:2],
    )
    cutoff = await pool.fetchval("SELECT now() - interval '1 minute'")
    await bootstrap_configs.put_lwm2m_psk(
        pool, box, endpoints[0], f"id-{endpoints[0]}", b"new key"
    )  # re-bootstrap

    async def export(endpoints: list[str], since: dt.datetime | None = None) -> list[tuple[str, str, bytes]]:
        async with pool.acquire() as conn:
            exported = bootstrap_configs.export_lwm2m_psks(conn, box, endpoints=endpoints, since=since)
            return [(a.endpoint, a.identity, a.key) async for a in exported]

    assert await export(endpoints=endpoints) == [
        (endpoints[1], f"id-{endpoints[1]}", endpoints[1].encode()),
        (endpoints[2], f"id-{endpoints[2]}", endpoints[2].encode()),
        (endpoints[0], f"id-{endpoints[0]}", b"new key"),
    ]
    assert {e for e, _, _ in await export(endpoints=endpoints, since=cutoff)} == {endpoints[0], endpoints[2]}
    missing = await bootstrap_configs.endpoints_without_account(
        pool, [endpoints[1], f"none-{unique}"], table="lwm2m_psk_accounts"
    )
    assert missing == [f"none-{unique}"]
    listed = [row[0] for row in await bootstrap_configs.lwm2m_psk_identities(pool, limit=100_000)]
    assert endpoints[1] in listed
    async with pool.acquire() as conn:
        (account,) = [
            a async for a in bootstrap_configs.export_lwm2m_psks(conn, box, endpoints=endpoints[:1])
        ]
    assert account.key == b"new key" and "new key" not in repr(account)  # keys stay out of logs
