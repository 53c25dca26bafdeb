"""EST-coaps over real CoAP on loopback, against a running server and real Postgres."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest
from aiocoap import Code, Message
from aiocoap.optiontypes import BlockOption
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from device_sim.device import SimDevice

from .pki import csr_der, p256

BlockwiseTuple = BlockOption.BlockwiseTuple


async def request(client: Any, uri: str, code: Code = Code.GET, **kwargs: Any) -> Message:
    accept = kwargs.pop("accept", None)
    block2_szx = kwargs.pop("block2_szx", None)
    message = Message(code=code, uri=uri, **kwargs)
    if accept is not None:
        message.opt.accept = accept
    if block2_szx is not None:  # ask for small Block2 slices (RFC 7959 §2.4: early negotiation)
        message.opt.block2 = BlockwiseTuple(0, False, block2_szx)
    return await client.request(message).response


async def issued_count(pool: asyncpg.Pool, endpoint: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", endpoint))


async def test_well_known_core_lists_est_resources(coap_client: Any, server_uri: str) -> None:
    """Discovery lists crts and sen under both roots with rt and ct (RFC 9148 §4.1)."""
    response = await request(coap_client, server_uri + "/.well-known/core?rt=ace.est*")
    links = response.payload.decode()
    for root in ("/.well-known/est", "/est"):
        assert f'<{root}/crts>;rt="ace.est.crts";ct="281 287"' in links
        assert f'<{root}/sen>;rt="ace.est.sen";ct="281 287"' in links


async def test_crts_in_both_formats(coap_client: Any, server_uri: str) -> None:
    """crts answers PKCS#7 by default and the trust anchor for Accept 287."""
    response = await request(coap_client, server_uri + "/.well-known/est/crts")
    assert response.code == Code.CONTENT and response.opt.content_format == 281
    chain = pkcs7.load_der_pkcs7_certificates(response.payload)
    assert len(chain) == 2
    response = await request(coap_client, server_uri + "/est/crts", accept=287)
    assert response.opt.content_format == 287
    root = x509.load_der_x509_certificate(response.payload)
    assert root.issuer == root.subject and root in chain


@pytest.mark.parametrize("path", ["/est/sen", "/.well-known/est/sen", "/est/LWM2M/sen"])
async def test_enroll_verifies_and_is_audited(
    coap_client: Any, server_uri: str, pool: asyncpg.Pool, unique: str, path: str
) -> None:
    """A CSR becomes a chain the device verifies, with its audit row committed (answer fetched in
    64-byte Block2 slices)."""
    crts = await request(coap_client, server_uri + "/est/crts")
    anchors = [c for c in pkcs7.load_der_pkcs7_certificates(crts.payload) if c.issuer == c.subject]
    device = SimDevice(f"est-{unique}", p256())
    response = await request(
        coap_client, server_uri + path, Code.POST, payload=device.csr_der(), content_format=286, block2_szx=2
    )
    assert response.code == Code.CHANGED, response.payload
    assert response.opt.content_format == 281
    assert len(response.payload) > 64 * 8, "the answer came back in many 64-byte Block2 slices"
    leaf = device.check_enrolled(response.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
    row = await pool.fetchrow(
        "SELECT serial_number, service_reference, issuer_type FROM issued_certificates WHERE endpoint = $1",
        device.endpoint,
    )
    assert row["serial_number"] == format(leaf.serial_number, "X")
    assert (row["service_reference"], row["issuer_type"]) == ("LWM2M", "BUILTIN")
    assert await issued_count(pool, device.endpoint) == 1, "Block2 follow-ups must not re-enroll"


async def test_enroll_with_accept_287_returns_the_leaf(
    coap_client: Any, server_uri: str, unique: str
) -> None:
    """Accept: 287 gives the bare certificate."""
    key = p256()
    response = await request(
        coap_client,
        server_uri + "/est/sen",
        Code.POST,
        payload=csr_der(f"leaf-{unique}", key),
        content_format=286,
        accept=287,
    )
    assert response.code == Code.CHANGED and response.opt.content_format == 287
    assert x509.load_der_x509_certificate(response.payload).public_key() == key.public_key()


async def test_large_csr_goes_block_wise(coap_client: Any, server_uri: str, unique: str) -> None:
    """A CSR above one block (1024 bytes) is reassembled from Block1 transfers."""
    from cryptography.x509.oid import NameOID

    padding = [
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i:02d}-" + "x" * 40) for i in range(22)
    ]
    der = csr_der(f"big-{unique}", extra_names=padding)
    assert len(der) > 1100
    response = await request(coap_client, server_uri + "/est/sen", Code.POST, payload=der, content_format=286)
    assert response.code == Code.CHANGED, response.payload


@pytest.mark.parametrize(
    ("path", "method", "kwargs", "code", "message"),
    [
        ("/est/sen", Code.POST, {"content_format": 42}, Code.UNSUPPORTED_CONTENT_FORMAT, "286"),
        ("/est/sen", Code.POST, {}, Code.UNSUPPORTED_CONTENT_FORMAT, "286"),
        ("/est/sen", Code.POST, {"content_format": 286, "bad_csr": True}, Code.BAD_REQUEST, "PKCS#10"),
        ("/est/sen", Code.POST, {"content_format": 286, "accept": 50}, Code.NOT_ACCEPTABLE, "281"),
        ("/est/no-such-service/sen", Code.POST, {"content_format": 286}, Code.NOT_FOUND, "no-such-service"),
        ("/est/sen", Code.GET, {}, Code.METHOD_NOT_ALLOWED, "POST"),
        ("/est/att", Code.GET, {}, Code.NOT_FOUND, "att"),
        # Server-side key generation never runs without an authenticated client: the key would
        # travel in clear over plain CoAP, development flag or not.
        ("/est/skg", Code.POST, {"content_format": 286}, Code.UNAUTHORIZED, "authenticated"),
    ],
)
async def test_refusals_are_precise_and_store_nothing(
    coap_client: Any,
    server_uri: str,
    pool: asyncpg.Pool,
    unique: str,
    path: str,
    method: Code,
    kwargs: dict[str, Any],
    code: Code,
    message: str,
) -> None:
    """Each kind of bad request gets its own code and diagnostic, and no certificate is recorded."""
    endpoint = f"bad-{unique}"
    payload = b"\x30\x00" if kwargs.pop("bad_csr", False) else csr_der(endpoint)
    if method == Code.GET:
        payload = b""
    response = await request(coap_client, server_uri + path, method, payload=payload, **kwargs)
    assert response.code == code, (response.code, response.payload)
    assert message in response.payload.decode()
    assert await issued_count(pool, endpoint) == 0
