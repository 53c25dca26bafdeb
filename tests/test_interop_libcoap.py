"""Interop with Debian's libcoap client (package libcoap3-bin) over plain CoAP."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.serialization import pkcs7

from bootstrap.server import BootstrapServer
from device_sim.device import SimDevice

from .pki import p256

pytestmark = pytest.mark.interop


def libcoap_client(name: str) -> str:
    """Path of a libcoap client; CI installs libcoap3-bin, so a missing one is a failure."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's libcoap3-bin (apt-get install -y libcoap3-bin)")
    return path


async def run(*args: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, stdout, stderr


async def test_libcoap_posts_csr_block_wise_and_certificate_verifies(
    server: BootstrapServer, server_uri: str, pool: asyncpg.Pool, tmp_path: Path, unique: str
) -> None:
    """coap-client-notls sends a DER CSR in 64-byte Block1 blocks and fetches the answer in Block2 blocks;
    the certificate verifies against crts."""
    client = libcoap_client("coap-client-notls")
    crts_path = tmp_path / "crts.p7"
    _, _, stderr = await run(client, "-m", "get", "-A", "281", "-o", str(crts_path), server_uri + "/est/crts")
    assert crts_path.exists() and crts_path.stat().st_size > 0, stderr
    anchors = [c for c in pkcs7.load_der_pkcs7_certificates(crts_path.read_bytes()) if c.issuer == c.subject]

    device = SimDevice(f"libcoap-{unique}", p256())
    csr_path = tmp_path / "csr.der"
    csr_path.write_bytes(device.csr_der())
    out_path = tmp_path / "cert.p7"
    _, _, stderr = await run(
        client,
        "-m",
        "post",
        "-t",
        "286",
        "-A",
        "281",
        "-b",
        "64",
        "-f",
        str(csr_path),
        "-o",
        str(out_path),
        server_uri + "/est/sen",
    )
    assert out_path.exists() and out_path.stat().st_size > 0, stderr.decode()
    leaf = device.check_enrolled(out_path.read_bytes(), 281, anchors, now=dt.datetime.now(dt.UTC))
    assert leaf.subject.rfc4514_string() == f"CN={device.endpoint}"
    # libcoap fetches later Block2 blocks with bodiless requests: they must not enroll again.
    assert (
        await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", device.endpoint)
        == 1
    )


async def test_libcoap_sees_precise_error_for_wrong_content_format(server_uri: str, tmp_path: Path) -> None:
    """A CSR sent as text/plain is answered 4.15."""
    client = libcoap_client("coap-client-notls")
    payload = tmp_path / "x.txt"
    payload.write_text("not a csr")
    _, stdout, stderr = await run(
        client, "-m", "post", "-t", "0", "-f", str(payload), server_uri + "/est/sen"
    )
    assert b"4.15" in stderr + stdout
