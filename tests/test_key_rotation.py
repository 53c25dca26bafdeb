"""Master key rotation against a real Postgres: every sealed secret moves to the new key, or nothing does.

Rotation rewrites every secret of a database, so each test works on a database of its own (made on the
session's Postgres server) rather than the shared session database the running test server uses.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from bootstrap.bootstrap_plan import OscoreContext
from bootstrap.issuer_service import IssuerService
from bootstrap.keys import (
    SEALED_COLUMNS,
    KeyRotationError,
    listening_servers,
    rotate_master_key,
    verify_master_key,
)
from bootstrap.keys_cli import keys
from bootstrap.secretbox import SecretBox, SecretError
from bootstrap.server_identity import ensure_issued
from bootstrap.store import bootstrap_configs, builtin_ca, devices
from bootstrap.store.issuers import credentials_context
from bootstrap.store.migrations import migrate

from .conftest import fresh_database

HMAC_KEY = "0123456789ABCDEF0123456789ABCDEF"
SERVER_NAMES = ("bootstrap.example", "localhost")
DEVICES = {f"rot-dev-{i}": os.urandom(16) for i in range(3)}
LWM2M_PSKS = {f"rot-lwm2m-{i}": os.urandom(32) for i in range(2)}
LWM2M_OSCORE = {
    f"rot-oscore-{i}": OscoreContext(
        master_secret=os.urandom(32), sender_id=bytes([i, 1]), recipient_id=b"\x00"
    )
    for i in range(2)
}
EXPECTED_COUNTS = {
    "certificate_issuers.credentials": 1,
    "builtin_ca.root_key": 1,
    "builtin_ca.issuing_key": 1,
    "device_credentials.psk_key": len(DEVICES),
    "server_certificates.private_key": 1,
    "lwm2m_psk_accounts.psk_key": len(LWM2M_PSKS),
    "lwm2m_oscore_accounts.master_secret": len(LWM2M_OSCORE),
}


@pytest.fixture
async def own_database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    async with fresh_database(postgres_admin_url, "lwm2m_keys") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            await migrate(pool)
        finally:
            await pool.close()
        yield url


@pytest.fixture
async def own_pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on :func:`own_database_url`."""
    pool = await asyncpg.create_pool(own_database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def populate(pool: asyncpg.Pool, box: SecretBox) -> None:
    """One secret of every kind, written by the code that writes it in production."""
    await IssuerService(pool, box).create_issuer(
        name="cfssl",
        issuer_type="CFSSL_AUTH",
        attributes={"host_url": "http://127.0.0.1:8888", "cfssl_profile": "device"},
        credentials={"hmac_hex_key": HMAC_KEY},
    )
    await builtin_ca.ensure(pool, box)
    await ensure_issued(pool, box, SERVER_NAMES)
    for endpoint, key in DEVICES.items():
        await devices.put(pool, box, devices.PskCredential(endpoint, f"id-{endpoint}", key))
    for endpoint, key in LWM2M_PSKS.items():
        await bootstrap_configs.put_lwm2m_psk(pool, box, endpoint, f"id-{endpoint}", key)
    for endpoint, context in LWM2M_OSCORE.items():
        await bootstrap_configs.put_lwm2m_oscore(pool, box, endpoint, context)


async def sealed_blobs(pool: asyncpg.Pool) -> dict[tuple[str, str], bytes]:
    """Every sealed blob in the database, by (``table.column``, row key)."""
    blobs: dict[tuple[str, str], bytes] = {}
    for column in SEALED_COLUMNS:
        rows = await pool.fetch(
            f"SELECT {', '.join(column.key)}, {column.column} AS blob FROM {column.table}"
            f" WHERE {column.column} IS NOT NULL"
        )
        for row in rows:
            blobs[(column.label, repr([row[k] for k in column.key]))] = bytes(row["blob"])
    return blobs


async def test_rotation_reseals_every_secret_under_the_new_key(
    own_pool: asyncpg.Pool, box: SecretBox
) -> None:
    """After rotation every secret opens with the new key (through the code that reads it) and none
    with the old one; plaintexts and contexts are unchanged."""
    pool, old, new = own_pool, box, SecretBox(os.urandom(32))
    await populate(pool, old)
    before_ca = await builtin_ca.load_active(pool, old)
    before_server = await ensure_issued(pool, old, SERVER_NAMES)
    before = await sealed_blobs(pool)
    assert len(before) == sum(EXPECTED_COUNTS.values())

    counts = await rotate_master_key(pool, old, new)

    assert counts == EXPECTED_COUNTS
    after = await sealed_blobs(pool)
    assert after.keys() == before.keys()
    for where, blob in after.items():
        assert blob != before[where], where
        assert blob[1:9] == new.key_id, where  # the blob names the key that sealed it
    check_new = await verify_master_key(pool, new)
    assert check_new.ok and check_new.counts == EXPECTED_COUNTS
    check_old = await verify_master_key(pool, old)
    assert check_old.failed == sum(EXPECTED_COUNTS.values()) and sum(check_old.counts.values()) == 0

    # The readers of each secret get the same plaintext with the new key...
    issuer = await pool.fetchrow("SELECT id, credentials FROM certificate_issuers WHERE name = 'cfssl'")
    assert new.open_json(issuer["credentials"], context=credentials_context(issuer["id"])) == {
        "hmac_hex_key": HMAC_KEY
    }
    after_ca = await builtin_ca.load_active(pool, new)
    assert after_ca is not None and before_ca is not None
    assert after_ca.generation == before_ca.generation
    assert after_ca.issuing_key.private_numbers() == before_ca.issuing_key.private_numbers()
    for endpoint, key in DEVICES.items():
        assert await devices.by_identity(pool, new, f"id-{endpoint}") == devices.PskCredential(
            endpoint, f"id-{endpoint}", key
        )
    for endpoint, key in LWM2M_PSKS.items():
        assert await bootstrap_configs.lwm2m_psk(pool, new, endpoint) == (f"id-{endpoint}", key)
    async with pool.acquire() as conn:
        exported = {a.endpoint: a.context async for a in bootstrap_configs.export_lwm2m_oscore(conn, new)}
    assert exported == LWM2M_OSCORE
    after_server = await ensure_issued(pool, new, SERVER_NAMES)  # reused, not issued anew
    assert after_server.chain[0] == before_server.chain[0]
    assert after_server.private_key.private_numbers() == before_server.private_key.private_numbers()

    # ...and none with the old one.
    with pytest.raises(SecretError):
        await builtin_ca.load_active(pool, old)
    with pytest.raises(SecretError):
        await devices.by_identity(pool, old, f"id-{next(iter(DEVICES))}")
    with pytest.raises(SecretError):
        await bootstrap_configs.lwm2m_psk(pool, old, next(iter(LWM2M_PSKS)))
    with pytest.raises(SecretError):
        old.open_json(issuer["credentials"], context=credentials_context(issuer["id"]))


async def test_a_blob_that_does_not_open_stops_rotation_and_nothing_changes(
    own_pool: asyncpg.Pool, box: SecretBox
) -> None:
    """One corrupted blob: rotation refuses, names the row, and leaves every blob as it was."""
    pool, old, new = own_pool, box, SecretBox(os.urandom(32))
    await populate(pool, old)
    victim = sorted(DEVICES)[1]
    await pool.execute(
        "UPDATE device_credentials SET psk_key = overlay(psk_key placing '\\x00'::bytea"
        " from octet_length(psk_key)) WHERE endpoint = $1",
        victim,
    )
    before = await sealed_blobs(pool)

    with pytest.raises(KeyRotationError) as info:
        await rotate_master_key(pool, old, new)

    assert "nothing changed" in info.value.message
    assert "device_credentials.psk_key" in info.value.message and victim in info.value.message
    assert await sealed_blobs(pool) == before
    check = await verify_master_key(pool, old)
    assert check.failed == 1 and sum(check.counts.values()) == sum(EXPECTED_COUNTS.values()) - 1
    assert sum((await verify_master_key(pool, new)).counts.values()) == 0


async def test_rotating_with_the_wrong_old_key_or_to_the_same_key_is_refused(
    own_pool: asyncpg.Pool, box: SecretBox
) -> None:
    """A wrong current key (every blob fails) and a new key equal to the old one change nothing."""
    pool = own_pool
    await populate(pool, box)
    before = await sealed_blobs(pool)
    with pytest.raises(KeyRotationError, match="sealed under another master key"):
        await rotate_master_key(pool, SecretBox(os.urandom(32)), SecretBox(os.urandom(32)))
    with pytest.raises(KeyRotationError, match="is the current one"):
        await rotate_master_key(pool, box, box)
    assert await sealed_blobs(pool) == before


async def test_listening_servers_are_seen(own_database_url: str, own_pool: asyncpg.Pool) -> None:
    """A session that LISTENs like a server's change listener counts as a running server."""
    assert await listening_servers(own_pool) == 0
    listener = await asyncpg.connect(own_database_url)
    try:
        await listener.add_listener("lwm2m_bootstrap_issuers", lambda *_: None)
        assert await listening_servers(own_pool) == 1
    finally:
        await listener.close()


def test_every_module_that_seals_is_covered_by_the_registry() -> None:
    """A new ``.seal(``/``seal_json(`` call site must come with its column in ``SEALED_COLUMNS``."""
    root = Path(__file__).resolve().parent.parent / "bootstrap"
    sealing = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"\.seal(_json)?\(", path.read_text()) and path.name not in ("secretbox.py", "keys.py")
    }
    # Each of these writes the columns listed beside it (and in bootstrap/keys.py).
    covered = {
        "issuer_service.py": "certificate_issuers.credentials",
        "store/builtin_ca.py": "builtin_ca.root_key, builtin_ca.issuing_key",
        "store/devices.py": "device_credentials.psk_key",
        "server_identity.py": "server_certificates.private_key",
        "store/bootstrap_configs.py": "lwm2m_psk_accounts.psk_key, lwm2m_oscore_accounts.master_secret",
    }
    assert sealing == set(covered), "add the new sealed column to bootstrap.keys.SEALED_COLUMNS"
    labels = {c.label for c in SEALED_COLUMNS}
    assert labels == {label for value in covered.values() for label in value.split(", ")}


def _write_key(path: Path, key: bytes) -> Path:
    path.write_text(base64.b64encode(key).decode() + "\n")
    path.chmod(0o600)
    return path


async def test_keys_commands(
    own_database_url: str, own_pool: asyncpg.Pool, box: SecretBox, master_key_b64: str, tmp_path: Path
) -> None:
    """``keys generate`` writes a private key file once; ``keys rotate`` reads the current key from
    the usual settings, prints counts per column, writes no key file; ``keys verify`` checks."""
    import asyncio

    await populate(own_pool, box)
    runner = CliRunner()
    new_file = tmp_path / "new.key"
    generated = await asyncio.to_thread(runner.invoke, keys, ["generate", "--output", str(new_file)])
    assert generated.exit_code == 0, generated.output
    assert new_file.stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode(new_file.read_text().strip())) == 32
    again = await asyncio.to_thread(runner.invoke, keys, ["generate", "--output", str(new_file)])
    assert again.exit_code == 1 and "not overwriting" in again.output
    printed = await asyncio.to_thread(runner.invoke, keys, ["generate"])
    assert len(base64.b64decode(printed.output.strip())) == 32

    old_file = _write_key(tmp_path / "old.key", base64.b64decode(master_key_b64))
    old_text = old_file.read_text()
    storage = ["--data-dir", str(tmp_path / "data"), "--database-url", own_database_url]
    env: dict[str, str | None] = {"LWM2M_BOOTSTRAP_MASTER_KEY": None}
    rotate = ["rotate", *storage, "--master-key-file", str(old_file), "--new-key-file", str(new_file)]
    rotated = await asyncio.to_thread(runner.invoke, keys, rotate, env=env)
    assert rotated.exit_code == 0, rotated.output
    for label, count in EXPECTED_COUNTS.items():
        assert f"{label}\t{count}" in rotated.output
    assert f"total\t{sum(EXPECTED_COUNTS.values())}" in rotated.output
    assert old_file.read_text() == old_text  # the old key file is left alone
    assert not (tmp_path / "data" / "master.key").exists()  # and no key is created

    verified = await asyncio.to_thread(
        runner.invoke, keys, ["verify", *storage, "--master-key-file", str(new_file)], env=env
    )
    assert verified.exit_code == 0, verified.output
    stale = await asyncio.to_thread(
        runner.invoke, keys, ["verify", *storage, "--master-key-file", str(old_file)], env=env
    )
    assert stale.exit_code == 1 and "did not open" in stale.output
    twice = await asyncio.to_thread(runner.invoke, keys, rotate, env=env)
    assert twice.exit_code == 1 and "nothing changed" in twice.output
