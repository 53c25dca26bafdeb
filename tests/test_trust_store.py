"""Trusted certificates and PSK credentials in Postgres, and the in-memory handshake cache."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.device_trust import DeviceTrust
from bootstrap.errors import BadRequest, Conflict, NotFound
from bootstrap.secretbox import SecretBox
from bootstrap.store import devices, trust
from bootstrap.store.notifications import ChangeListener

from .pki import ca_material, leaf_certificate


async def _eventually(predicate: object, limit_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_trust_add_list_deactivate_remove(pool: asyncpg.Pool, unique: str) -> None:
    """A factory CA is stored with its details; duplicates conflict; inactive ones are not active."""
    ca = ca_material()
    pem = ca.root_certificate.public_bytes(Encoding.PEM).decode()
    added = await trust.add(pool, name=f"factory-{unique}", service="bootstrap", certificate_pem=pem)
    assert added.subject == ca.root_certificate.subject.rfc4514_string()
    assert len(added.fingerprint_sha256) == 64
    with pytest.raises(Conflict) as info:
        await trust.add(pool, name=f"factory-{unique}", service="bootstrap", certificate_pem=pem)
    assert info.value.field == "name"
    with pytest.raises(Conflict) as info:
        await trust.add(pool, name=f"again-{unique}", service="bootstrap", certificate_pem=pem)
    assert info.value.field == "certificate"
    assert ca.root_certificate in await trust.active_certificates(pool, "bootstrap")
    await trust.set_status(pool, added.id, "INACTIVE")
    assert ca.root_certificate not in await trust.active_certificates(pool, "bootstrap")
    await trust.remove(pool, f"factory-{unique}")
    with pytest.raises(NotFound):
        await trust.find(pool, added.id)


@pytest.mark.parametrize(
    ("service", "pem", "field"),
    [
        ("bootstrap", "not a pem", "certificate"),
        ("elsewhere", None, "service"),
        ("bootstrap", "leaf", "certificate"),
    ],
)
async def test_trust_add_refusals(
    pool: asyncpg.Pool, unique: str, service: str, pem: str | None, field: str
) -> None:
    """Garbage, unknown services and non-CA bootstrap anchors are 400s naming the field."""
    ca = ca_material()
    if pem is None:
        pem = ca.root_certificate.public_bytes(Encoding.PEM).decode()
    elif pem == "leaf":
        pem = leaf_certificate(ca).public_bytes(Encoding.PEM).decode()
    with pytest.raises(BadRequest) as info:
        await trust.add(pool, name=f"bad-{unique}", service=service, certificate_pem=pem)
    assert info.value.field == field
    assert (
        await pool.fetchval("SELECT count(*) FROM trusted_certificates WHERE name = $1", f"bad-{unique}") == 0
    )


async def test_psk_credentials_are_sealed_and_unique(pool: asyncpg.Pool, box: SecretBox, unique: str) -> None:
    """Keys are stored sealed; an identity belongs to one endpoint; sizes are checked."""
    key = os.urandom(16)
    await devices.put(pool, box, devices.PskCredential(f"ep-{unique}", f"id-{unique}", key))
    stored = await pool.fetchval("SELECT psk_key FROM device_credentials WHERE endpoint = $1", f"ep-{unique}")
    assert key not in stored
    found = await devices.by_identity(pool, box, f"id-{unique}")
    assert found == devices.PskCredential(f"ep-{unique}", f"id-{unique}", key)
    with pytest.raises(Conflict):
        await devices.put(pool, box, devices.PskCredential(f"other-{unique}", f"id-{unique}", key))
    with pytest.raises(BadRequest) as info:
        await devices.put(pool, box, devices.PskCredential(f"ep-{unique}", "x", b"short"))
    assert info.value.field == "psk_key"
    await devices.remove(pool, f"ep-{unique}")
    with pytest.raises(NotFound):
        await devices.remove(pool, f"ep-{unique}")


async def test_device_trust_follows_changes_without_restart(
    database_url: str, pool: asyncpg.Pool, box: SecretBox, unique: str
) -> None:
    """The handshake cache sees new anchors and PSKs through NOTIFY, and forgets removed ones."""
    listener = ChangeListener(database_url)
    cache = DeviceTrust(pool, box, listener=listener)
    await cache.start()
    await listener.start()
    try:
        ca = ca_material()
        identity = f"psk-{unique}"
        await cache.prefetch_psk(identity.encode())
        assert cache.psk_for_identity(identity.encode()) is None  # known to have none...
        await trust.add(
            pool,
            name=f"live-{unique}",
            service="bootstrap",
            certificate_pem=ca.root_certificate.public_bytes(Encoding.PEM).decode(),
        )
        await devices.put(pool, box, devices.PskCredential(f"ep-{unique}", identity, b"k" * 16))
        await _eventually(lambda: ca.root_certificate in cache.trusted_cas())
        await cache.prefetch_psk(identity.encode())  # what the DTLS transport does on a handshake
        assert cache.psk_for_identity(identity.encode()) == b"k" * 16
        assert cache.endpoint_for_psk_identity(identity) == f"ep-{unique}"
        await devices.remove(pool, f"ep-{unique}")
        await trust.remove(pool, f"live-{unique}")
        await _eventually(lambda: not cache.psk_known(identity.encode()))  # NOTIFY dropped it
        await cache.prefetch_psk(identity.encode())
        assert cache.psk_for_identity(identity.encode()) is None
        await _eventually(lambda: ca.root_certificate not in cache.trusted_cas())
    finally:
        await listener.aclose()
        await cache.aclose()


def test_psk_identity_is_read_from_a_plaintext_client_key_exchange() -> None:
    """The transport finds the identity in a ClientKeyExchange record (RFC 4279 §2), and nothing in
    other handshake messages, encrypted records or truncated ones."""
    from bootstrap.coap.dtls import psk_identity_in

    identity = b"psk-device-42"
    body = len(identity).to_bytes(2, "big") + identity
    handshake = (
        b"\x10" + len(body).to_bytes(3, "big") + b"\x00\x02" + b"\x00\x00\x00" + len(body).to_bytes(3, "big")
    )
    record = (
        b"\x16\xfe\xfd"
        + b"\x00\x00"
        + b"\x00" * 6
        + len(handshake + body).to_bytes(2, "big")
        + handshake
        + body
    )
    change_cipher_spec = b"\x14\xfe\xfd\x00\x00" + b"\x00" * 5 + b"\x01" + b"\x00\x01\x01"
    assert psk_identity_in(record + change_cipher_spec) == identity
    assert psk_identity_in(change_cipher_spec) is None
    encrypted = record[:3] + b"\x00\x01" + record[5:]  # epoch 1
    assert psk_identity_in(encrypted) is None
    assert psk_identity_in(record[:20]) is None
    client_hello = record[:13] + b"\x01" + record[14:]
    assert psk_identity_in(client_hello) is None
    # A certificate flight (Certificate, then an ECDHE ClientKeyExchange) names no PSK identity,
    # even when a later record would parse as one: PSK clients send no Certificate.
    certificate = record[:13] + b"\x0b" + record[14:]
    assert psk_identity_in(certificate + record) is None
    later_fragment = record[:19] + b"\x00\x00\x01" + record[22:]  # fragment_offset 1
    assert psk_identity_in(later_fragment) is None
