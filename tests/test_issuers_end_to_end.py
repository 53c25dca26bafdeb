"""Third-party CAs end to end: the issuer service against real Postgres, the real ``cfssl serve`` and
the HVCA fake, and devices enrolling over CoAP through each of them."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiocoap import Code, Message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from bootstrap.errors import BadRequest, Conflict, FailedDependency, NotFound, PreconditionFailed
from bootstrap.issuer_service import VERIFY_SERVICE, IssuerService
from bootstrap.secretbox import SecretBox
from device_sim.device import SimDevice, verify_chain

from .cfssl_server import AUTH_PROFILE, DEFAULT_HMAC_KEY, CfsslNotInstalled, CfsslServer, cfssl_serve
from .hvca_fake import HvcaFake
from .pki import p256

pytestmark = pytest.mark.interop


@pytest_asyncio.fixture(scope="module")
async def cfssl() -> AsyncIterator[CfsslServer]:
    """A real ``cfssl serve`` with an authenticated ``device`` profile."""
    try:
        async with cfssl_serve() as server:
            yield server
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest_asyncio.fixture
async def hvca() -> AsyncIterator[HvcaFake]:
    """The HVCA fake, with mutual TLS."""
    async with HvcaFake() as fake:
        yield fake


@pytest.fixture
def issuers(pool: asyncpg.Pool, box: SecretBox) -> IssuerService:
    return IssuerService(pool, box)


async def create_cfssl(
    issuers: IssuerService, cfssl: CfsslServer, name: str, key: str = DEFAULT_HMAC_KEY
) -> str:
    created = await issuers.create_issuer(
        name=name,
        issuer_type="CFSSL_AUTH",
        attributes={"host_url": cfssl.url, "cfssl_profile": AUTH_PROFILE},
        credentials={"hmac_hex_key": key},
    )
    return created.id


async def test_create_validates_and_never_exposes_credentials(
    issuers: IssuerService, pool: asyncpg.Pool, cfssl: CfsslServer, unique: str
) -> None:
    """Bad configuration is a 400 naming the field with nothing stored; secrets are sealed and hidden."""
    name = f"cfssl-{unique}"
    for credentials, field in (({"hmac_hex_key": "abc"}, "issuer_credentials.hmac_hex_key"), ({}, None)):
        with pytest.raises(BadRequest) as info:
            await issuers.create_issuer(
                name=name,
                issuer_type="CFSSL_AUTH",
                attributes={"host_url": cfssl.url},
                credentials=credentials,
            )
        if field:
            assert info.value.field == field
    with pytest.raises(BadRequest) as info:
        await issuers.create_issuer(name=name, issuer_type="NOPE", attributes={}, credentials={})
    assert info.value.field == "issuer_type"
    with pytest.raises(BadRequest):
        await issuers.create_issuer(name=name, issuer_type="BUILTIN", attributes={}, credentials={})
    assert await pool.fetchval("SELECT count(*) FROM certificate_issuers WHERE name = $1", name) == 0

    issuer_id = await create_cfssl(issuers, cfssl, name)
    sealed = await pool.fetchval("SELECT credentials FROM certificate_issuers WHERE id = $1", issuer_id)
    assert DEFAULT_HMAC_KEY.encode() not in sealed and DEFAULT_HMAC_KEY.lower().encode() not in sealed
    shown = await issuers.get_issuer(name)
    assert DEFAULT_HMAC_KEY not in repr(shown) and "hmac" not in repr(shown)
    with pytest.raises(Conflict):
        await create_cfssl(issuers, cfssl, name)


async def test_verify_records_outcome_and_audits_the_test_certificate(
    issuers: IssuerService, pool: asyncpg.Pool, cfssl: CfsslServer, unique: str
) -> None:
    """verify signs through the real CFSSL; a wrong key is reported as misconfigured, not unavailable."""
    good = await create_cfssl(issuers, cfssl, f"good-{unique}")
    outcome = await issuers.verify_issuer(good)
    assert outcome.successful, outcome.message
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM issued_certificates WHERE issuer_id = $1 AND service_reference = $2",
            good,
            VERIFY_SERVICE,
        )
        == 1
    )
    bad = await create_cfssl(issuers, cfssl, f"bad-{unique}", key="AB" * 16)
    outcome = await issuers.verify_issuer(bad)
    assert not outcome.successful
    assert outcome.message.startswith("misconfigured")
    assert (await issuers.get_issuer(bad)).verify_successful is False

    down = await issuers.create_issuer(
        name=f"down-{unique}",
        issuer_type="CFSSL_AUTH",
        attributes={"host_url": "http://127.0.0.1:9"},
        credentials={"hmac_hex_key": DEFAULT_HMAC_KEY},
    )
    outcome = await issuers.verify_issuer(down.id)
    assert not outcome.successful and outcome.message.startswith("unavailable")


async def test_activation_rules(issuers: IssuerService, cfssl: CfsslServer, unique: str) -> None:
    """One CA per service; --verify refuses a failing CA; an active issuer cannot be deleted."""
    service = f"renewal-{unique}"
    bad = await create_cfssl(issuers, cfssl, f"bad-{unique}", key="CD" * 16)
    with pytest.raises(FailedDependency):
        await issuers.set_service_issuer(service, bad, require_verified=True, create=True)
    with pytest.raises(NotFound):
        await issuers.get_service(service)  # refused activation created nothing

    good = await create_cfssl(issuers, cfssl, f"good-{unique}")
    config = await issuers.set_service_issuer(service, good, require_verified=True, create=True)
    assert config.certificate_issuer_id == good and config.is_custom
    with pytest.raises(BadRequest, match="active for"):
        await issuers.delete_issuer(good)
    moved = await issuers.set_service_issuer(service, bad)  # pointing the service elsewhere moves it
    assert moved.certificate_issuer_id == bad
    assert (await issuers.get_issuer(good)).services == ()
    await issuers.delete_issuer(good)

    with pytest.raises(PreconditionFailed):
        await issuers.set_service_issuer(service, None, if_match="stale")
    with pytest.raises(BadRequest):
        await issuers.create_service("bootstrap", None)
    with pytest.raises(BadRequest):
        await issuers.delete_service("LWM2M")
    await issuers.delete_service(service)


async def test_update_replaces_credentials_and_honours_if_match(
    issuers: IssuerService, cfssl: CfsslServer, unique: str
) -> None:
    """An update with a stale ETag is refused; a good one re-validates and resets the verify state."""
    issuer_id = await create_cfssl(issuers, cfssl, f"upd-{unique}", key="EF" * 16)
    await issuers.verify_issuer(issuer_id)
    current = await issuers.get_issuer(issuer_id)
    with pytest.raises(PreconditionFailed):
        await issuers.update_issuer(issuer_id, description="x", if_match="nope")
    with pytest.raises(BadRequest) as info:
        await issuers.update_issuer(issuer_id, credentials={"hmac_hex_key": "zz"})
    assert info.value.field == "issuer_credentials.hmac_hex_key"
    updated = await issuers.update_issuer(
        issuer_id, credentials={"hmac_hex_key": DEFAULT_HMAC_KEY}, if_match=current.etag
    )
    assert updated.etag != current.etag and updated.verify_successful is None
    assert (await issuers.verify_issuer(issuer_id)).successful


async def _enroll(client: Any, uri: str, device: SimDevice) -> Message:
    request = Message(code=Code.POST, uri=uri, payload=device.csr_der(), content_format=286)
    return await client.request(request).response


async def _wait_for_service(client: Any, server_uri: str, service: str) -> None:
    """Running servers learn of new services through NOTIFY; wait until this one answers crts."""
    for _ in range(100):
        response = await client.request(
            Message(code=Code.GET, uri=f"{server_uri}/est/{service}/crts")
        ).response
        if response.code == Code.CONTENT:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"service {service} never became available")


async def test_devices_enroll_through_cfssl(
    issuers: IssuerService,
    pool: asyncpg.Pool,
    cfssl: CfsslServer,
    coap_client: Any,
    server_uri: str,
    unique: str,
) -> None:
    """With CFSSL active for a service, devices get CFSSL-signed chains; each issuance is audited."""
    service = f"cfssl-svc-{unique}"
    issuer_id = await create_cfssl(issuers, cfssl, f"e2e-{unique}")
    await issuers.set_service_issuer(service, issuer_id, create=True)
    await _wait_for_service(coap_client, server_uri, service)
    crts = await coap_client.request(Message(code=Code.GET, uri=f"{server_uri}/est/{service}/crts")).response
    assert pkcs7.load_der_pkcs7_certificates(crts.payload) == [cfssl.ca_certificate]
    devices = [SimDevice(f"cf-{unique}-{i}", p256()) for i in range(12)]
    responses = await asyncio.gather(
        *(_enroll(coap_client, f"{server_uri}/est/{service}/sen", d) for d in devices)
    )
    now = dt.datetime.now(dt.UTC)
    for device, response in zip(devices, responses, strict=True):
        assert response.code == Code.CHANGED, response.payload
        device.check_enrolled(response.payload, 281, [cfssl.ca_certificate], now=now)
    rows = await pool.fetch(
        "SELECT issuer_type, issuer_id FROM issued_certificates WHERE service_reference = $1", service
    )
    assert len(rows) == 12 and {(r["issuer_type"], r["issuer_id"]) for r in rows} == {
        ("CFSSL_AUTH", issuer_id)
    }


async def test_devices_enroll_through_globalsign(
    issuers: IssuerService, pool: asyncpg.Pool, hvca: HvcaFake, coap_client: Any, server_uri: str, unique: str
) -> None:
    """With GlobalSign active, devices get certificates from HVCA over mutual TLS, chain included."""
    service = f"gs-svc-{unique}"
    created = await issuers.create_issuer(
        name=f"gs-{unique}",
        issuer_type="GLOBAL_SIGN",
        attributes={"base_url": hvca.base_url, "ca_bundle_pem": hvca.tls_root_pem},
        credentials=hvca.account_credentials(),
    )
    assert (await issuers.verify_issuer(created.id)).successful
    await issuers.set_service_issuer(service, created.id, create=True)
    await _wait_for_service(coap_client, server_uri, service)
    crts = await coap_client.request(Message(code=Code.GET, uri=f"{server_uri}/est/{service}/crts")).response
    chain = pkcs7.load_der_pkcs7_certificates(crts.payload)
    anchors = [c for c in chain if c.issuer == c.subject]
    devices = [SimDevice(f"gs-{unique}-{i}", p256()) for i in range(5)]
    responses = await asyncio.gather(
        *(_enroll(coap_client, f"{server_uri}/est/{service}/sen", d) for d in devices)
    )
    for device, response in zip(devices, responses, strict=True):
        assert response.code == Code.CHANGED, response.payload
        device.check_enrolled(response.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM issued_certificates"
            " WHERE service_reference = $1 AND issuer_type = 'GLOBAL_SIGN'",
            service,
        )
        == 5
    )


async def test_switching_the_active_issuer_while_devices_enroll(
    issuers: IssuerService,
    pool: asyncpg.Pool,
    cfssl: CfsslServer,
    coap_client: Any,
    server_uri: str,
    unique: str,
) -> None:
    """Flipping a service between CFSSL and the built-in CA under load: no enrollment fails, and each
    certificate was signed by the issuer its audit row names."""
    service = f"switch-{unique}"
    cfssl_id = await create_cfssl(issuers, cfssl, f"sw-{unique}")
    await issuers.set_service_issuer(service, cfssl_id, create=True)
    await _wait_for_service(coap_client, server_uri, service)
    builtin_chain = pkcs7.load_der_pkcs7_certificates(
        (await coap_client.request(Message(code=Code.GET, uri=f"{server_uri}/est/crts")).response).payload
    )
    builtin_root = next(c for c in builtin_chain if c.issuer == c.subject)
    builtin_issuing = next(c for c in builtin_chain if c.issuer != c.subject)

    stop = asyncio.Event()

    async def flip() -> int:
        flips = 0
        while not stop.is_set():
            await issuers.set_service_issuer(service, None if flips % 2 == 0 else cfssl_id)
            flips += 1
            await asyncio.sleep(0.03)
        return flips

    devices = [SimDevice(f"sw-{unique}-{i:03d}", p256()) for i in range(80)]
    semaphore = asyncio.Semaphore(8)

    async def enroll(device: SimDevice) -> Message:
        async with semaphore:
            return await _enroll(coap_client, f"{server_uri}/est/{service}/sen", device)

    flipper = asyncio.create_task(flip())
    responses = await asyncio.gather(*(enroll(d) for d in devices))
    stop.set()
    assert await flipper > 2
    anchors = [cfssl.ca_certificate, builtin_root]
    rows = {
        r["endpoint"]: r
        for r in await pool.fetch(
            "SELECT endpoint, issuer_type, certificate FROM issued_certificates WHERE service_reference = $1",
            service,
        )
    }
    seen = set()
    for device, response in zip(devices, responses, strict=True):
        assert response.code == Code.CHANGED, (response.code, response.payload)
        leaf = device.check_enrolled(response.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
        row = rows[device.endpoint]
        assert x509.load_der_x509_certificate(row["certificate"]) == leaf
        signer = cfssl.ca_certificate if row["issuer_type"] == "CFSSL_AUTH" else builtin_issuing
        verify_chain(leaf, [signer], [signer], now=dt.datetime.now(dt.UTC))
        seen.add(row["issuer_type"])
    assert seen == {"CFSSL_AUTH", "BUILTIN"}, "the flips should have been seen by the signing path"


async def test_issuer_and_service_commands(
    cfssl: CfsslServer, database_url: str, master_key_b64: str, tmp_path: Any, unique: str
) -> None:
    """The CLI as an operator uses it: create, verify, activate with --verify, refuse delete, list."""
    import os
    import sys

    env = {
        **os.environ,
        "LWM2M_BOOTSTRAP_MASTER_KEY": master_key_b64,
        "DATABASE_URL": database_url,
        "LWM2M_BOOTSTRAP_CFSSL_HMAC_KEY": DEFAULT_HMAC_KEY,
        "LWM2M_BOOTSTRAP_LOG_LEVEL": "warning",
    }

    async def cli(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bootstrap",
            *args,
            "--data-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, output.decode()

    name, service = f"cli-{unique}", f"cli-svc-{unique}"
    code, out = await cli(
        "issuer",
        "create",
        "--type",
        "CFSSL_AUTH",
        "--name",
        name,
        "--host-url",
        cfssl.url,
        "--profile",
        AUTH_PROFILE,
    )
    assert code == 0 and "not active yet" in out, out
    code, out = await cli(
        "issuer", "create", "--type", "CFSSL_AUTH", "--name", f"x{name}", "--host-url", "ftp://x"
    )
    assert code == 1 and "error: " in out and "Traceback" not in out, out
    code, out = await cli("issuer", "verify", name)
    assert code == 0 and out.startswith("verified"), out
    code, out = await cli("service", "set", service, "--issuer", name, "--verify")
    assert code == 0, out
    code, out = await cli("issuer", "delete", name)
    assert code == 1 and "active for" in out, out
    code, out = await cli("service", "list")
    assert f"{service}\t{name}\tcustom" in out, out
    code, out = await cli("issuer", "show", name)
    assert DEFAULT_HMAC_KEY not in out and f"active for:  {service}" in out, out
    assert (await cli("service", "delete", service))[0] == 0
    assert (await cli("issuer", "delete", name))[0] == 0
