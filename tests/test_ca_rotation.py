"""Rolling the built-in CA over to a new intermediate while the server runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aiocoap import Code, Message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from bootstrap.coap.wire import WireMessage
from bootstrap.secretbox import SecretBox
from bootstrap.server import BootstrapServer
from bootstrap.store import builtin_ca
from device_sim.connection import DeviceConnection
from device_sim.device import SimDevice
from device_sim.dtls_client import CertificateCredentials
from device_sim.fleet import EstClient, FleetOptions

from .pki import p256


def coaps_uri(server: BootstrapServer) -> str:
    assert server.dtls is not None
    host, port = server.dtls.address
    return f"coaps://{host}:{port}"


async def _enroll(
    server: BootstrapServer, chain: tuple[x509.Certificate, ...], device: SimDevice, op: str
) -> WireMessage:
    connection = await DeviceConnection.open(
        coaps_uri(server), CertificateCredentials(certificate_chain=chain, private_key=device.key)
    )
    try:
        return await EstClient(connection, FleetOptions(server=coaps_uri(server))).enroll(
            device.csr_der(), operation=op
        )
    finally:
        connection.close()


async def _issuing(server_uri: str, client: Any) -> x509.Certificate:
    response = await client.request(Message(code=Code.GET, uri=server_uri + "/est/crts")).response
    return next(c for c in pkcs7.load_der_pkcs7_certificates(response.payload) if c.issuer != c.subject)


async def test_rotation_keeps_old_certificates_working(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    box: SecretBox,
    database_url: str,
    master_key_b64: str,
    tmp_path: Path,
    unique: str,
) -> None:
    """After a rollover new certificates come from the new intermediate under the same root, and a
    device holding a certificate of the old one (sending only its leaf) can still re-enroll."""
    old_issuing = await _issuing(server_uri, coap_client)
    device = SimDevice(f"rollover-{unique}", p256())
    factory_cert = trusted_factory.device_certificate(device.endpoint, device.key.public_key())
    first = await _enroll(server, (factory_cert,), device, "sen")
    assert first.code == Code.CHANGED
    old_leaf = next(
        c
        for c in pkcs7.load_der_pkcs7_certificates(first.payload)
        if c.public_key() == device.key.public_key()
    )
    assert old_leaf.issuer == old_issuing.subject

    active, previous = await builtin_ca.rotate_issuing(pool, box)
    assert previous == old_issuing
    new_issuing, root = active.chain
    assert root.subject == old_issuing.issuer and new_issuing.subject != old_issuing.subject
    new_issuing.verify_directly_issued_by(root)
    for _ in range(100):  # running servers follow the NOTIFY
        if (
            await _issuing(server_uri, coap_client) == new_issuing
            and old_issuing in server.trust.trusted_cas()
        ):  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the server did not switch to the new intermediate")

    other = SimDevice(f"after-{unique}", p256())
    response = await _enroll(
        server, (trusted_factory.device_certificate(other.endpoint, other.key.public_key()),), other, "sen"
    )
    assert response.code == Code.CHANGED
    anchors = [root]
    leaf = other.check_enrolled(response.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
    assert leaf.issuer == new_issuing.subject

    renewed = await _enroll(server, (old_leaf,), device, "sren")  # leaf only, like libcoap's client
    assert renewed.code == Code.CHANGED, renewed.payload
    assert (
        device.check_enrolled(renewed.payload, 281, anchors, now=dt.datetime.now(dt.UTC)).issuer
        == new_issuing.subject
    )

    env = {**os.environ, "LWM2M_BOOTSTRAP_MASTER_KEY": master_key_b64, "DATABASE_URL": database_url,
           "LWM2M_BOOTSTRAP_LOG_LEVEL": "warning"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bootstrap", "ca", "rotate", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    assert f"retired: {new_issuing.subject.rfc4514_string()}" in output.decode()
    assert len(await builtin_ca.retired_issuing(pool)) >= 2
