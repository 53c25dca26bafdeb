"""The admin HTTP API against real Postgres over loopback: every collection, authentication, paging,
entity tags, error objects, the audit, and that no credential ever comes back out.

Every answer is also checked against the served OpenAPI document (``tests/admin_helpers.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from bootstrap import log_context, metrics
from bootstrap.admin import bound_port, create_app, keys, start_admin
from bootstrap.admin.server import server_ssl_context
from bootstrap.issuer_service import IssuerService
from bootstrap.secretbox import SecretBox
from bootstrap.store import audit

from .admin_helpers import Api, admin_api
from .ca_helpers import TestCa, key_pem, name, pem
from .cfssl_server import AUTH_PROFILE, DEFAULT_HMAC_KEY, CfsslNotInstalled, CfsslServer, cfssl_serve
from .hvca_fake import HvcaFake

ISSUERS = "/v3/certificate-issuers"
CONFIGS = "/v3/certificate-issuer-configurations"
TRUST = "/v3/trusted-certificates"
DEVICES = "/v3/device-credentials"
ISSUED = "/v3/issued-certificates"
KEYS = "/v3/api-keys"
UNUSED_URL = "http://127.0.0.1:9"  # validation never connects; nothing listens there


@pytest_asyncio.fixture
async def api(pool: asyncpg.Pool, box: SecretBox, unique: str) -> AsyncIterator[Api]:
    """The admin API on loopback with a fresh key."""
    async with admin_api(pool, box, key_name=f"test-{unique}") as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def cfssl() -> AsyncIterator[CfsslServer]:
    """A real ``cfssl serve`` with an authenticated profile."""
    try:
        async with cfssl_serve() as server:
            yield server
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest_asyncio.fixture
async def hvca() -> AsyncIterator[HvcaFake]:
    """The GlobalSign HVCA fake over mutual TLS."""
    async with HvcaFake() as fake:
        yield fake


def cfssl_issuer(name_: str, host_url: str = UNUSED_URL, key: str = DEFAULT_HMAC_KEY) -> dict[str, Any]:
    """A CertificateIssuerRequest for a CFSSL issuer."""
    return {
        "name": name_,
        "issuer_type": "CFSSL_AUTH",
        "issuer_attributes": {"host_url": host_url, "cfssl_profile": AUTH_PROFILE},
        "issuer_credentials": {"hmac_hex_key": key},
    }


def error_field(answer: Any) -> str | None:
    """The first field named by an error object."""
    fields = answer.body["fields"]
    return fields[0]["field"] if fields else None


# --- operations and authentication ---------------------------------------------------------------


async def test_operational_endpoints_need_no_key(pool: asyncpg.Pool, box: SecretBox, unique: str) -> None:
    """/health, /ready, /metrics and the OpenAPI document answer without a key; /ready reflects the
    database and the host's check."""
    state = {"ready": True}

    async def ready_check() -> bool:
        return state["ready"]

    async with admin_api(pool, box, key_name=f"ops-{unique}", ready_check=ready_check) as client:
        assert (await client.get("/health", key=None)).body == {"status": "ok"}
        answer = await client.get("/ready", key=None)
        assert answer.body == {"status": "ready", "checks": {"database": True, "server": True}}
        state["ready"] = False
        answer = await client.get("/ready", key=None, expect=503)
        assert answer.body["checks"] == {"database": True, "server": False}
        await client.get(ISSUERS)
        metrics_text = (await client.get("/metrics", key=None)).text
        assert "lwm2m_admin_requests_total" in metrics_text and "process_cpu_seconds_total" in metrics_text
        document = (await client.get("/v3/openapi.json", key=None)).body
        assert document["openapi"].startswith("3.1")
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_authentication(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """/v3 needs a live key: none, another scheme, a wrong or malformed key and a revoked key are 401."""
    for headers in ({}, {"Authorization": f"Basic {api.key}"}, {"Authorization": "Bearer "}):
        answer = await api.get(ISSUERS, expect=401, key=None, headers=headers)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.body["type"] == "unauthorized"
    wrong = api.key[:-4] + ("AAAA" if not api.key.endswith("AAAA") else "BBBB")
    for bad in (wrong, "lwb_00000000_" + "A" * 43, "not-a-key", api.key + "x"):
        await api.get(ISSUERS, expect=401, key=bad)
    await api.get(ISSUERS)
    await api.get(KEYS + "/nope", expect=404)  # unknown routes below /v3 still need the key first
    await api.get(KEYS + "/nope", expect=401, key=None)

    other, other_key = await keys.create(pool, f"revoke-me-{unique}")
    await api.get(ISSUERS, key=other_key)
    await keys.revoke(pool, other.id)
    answer = await api.get(ISSUERS, expect=401, key=other_key)
    assert "revoked" in answer.body["message"]


async def test_last_used_is_recorded_at_most_once_a_minute(pool: asyncpg.Pool, unique: str) -> None:
    """authenticate() writes last_used_at on first use, not again within a minute, again after."""
    key, plaintext = await keys.create(pool, f"lu-{unique}")
    now = dt.datetime.now(dt.UTC)
    assert await keys.authenticate(pool, plaintext, now=now) is not None
    first = (await keys.get(pool, key.id)).last_used_at
    assert first == now
    await keys.authenticate(pool, plaintext, now=now + dt.timedelta(seconds=30))
    assert (await keys.get(pool, key.id)).last_used_at == first
    later = now + dt.timedelta(seconds=61)
    await keys.authenticate(pool, plaintext, now=later)
    assert (await keys.get(pool, key.id)).last_used_at == later


async def test_api_keys(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """Create shows the key once; list/get never; duplicate live names are 409; revoke is DELETE."""
    created = await api.post(KEYS, {"name": f"ci-{unique}"})
    plaintext = created.body["key"]
    assert plaintext.startswith(f"lwb_{created.body['prefix']}_") and created.body["status"] == "ACTIVE"
    key_id = created.body["id"]
    shown = await api.get(f"{KEYS}/{key_id}")
    assert "key" not in shown.body and plaintext not in shown.text
    listed = await api.get(f"{KEYS}?limit=1000")
    assert key_id in {k["id"] for k in listed.body["data"]} and plaintext not in listed.text
    stored = await pool.fetchval("SELECT key_sha256 FROM api_keys WHERE id = $1", key_id)
    assert plaintext.encode() not in bytes(stored)

    await api.post(KEYS, {"name": f"ci-{unique}"}, expect=409)
    assert error_field(await api.post(KEYS, {"name": "has space"}, expect=400)) == "name"
    await api.get(ISSUERS, key=plaintext)
    await api.delete(f"{KEYS}/{key_id}", expect=412, headers={"If-Match": '"stale"'})
    await api.delete(f"{KEYS}/{key_id}", headers={"If-Match": shown.headers["ETag"]})
    await api.get(ISSUERS, key=plaintext, expect=401)
    assert (await api.get(f"{KEYS}/{key_id}")).body["status"] == "REVOKED"
    await api.delete(f"{KEYS}/{key_id}", expect=404)
    await api.post(KEYS, {"name": f"ci-{unique}"})  # the name is free again once revoked
    await api.get(f"{KEYS}/{uuid.uuid4().hex}", expect=404)


# --- certificate issuers ---------------------------------------------------------------------------


async def test_issuer_crud_and_validation(api: Api, unique: str) -> None:
    """Create, read, update with If-Match, delete; invalid input is 400 naming the field; names are unique."""
    body = cfssl_issuer(f"cf-{unique}")
    created = await api.post(ISSUERS, body)
    issuer = created.body
    assert issuer["object"] == "certificate-issuer" and issuer["issuer_type"] == "CFSSL_AUTH"
    assert issuer["issuer_attributes"] == {"host_url": UNUSED_URL, "cfssl_profile": AUTH_PROFILE}
    assert "issuer_credentials" not in issuer and DEFAULT_HMAC_KEY not in created.text
    path = f"{ISSUERS}/{issuer['id']}"
    assert (await api.get(path)).body == issuer
    listed = await api.get(ISSUERS + "?include=total_count&limit=1000")
    assert issuer in listed.body["data"] and listed.body["total_count"] >= 1

    await api.post(ISSUERS, body, expect=409)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**body, "name": "x" * 51}, "name"),
        ({**body, "name": 5}, "name"),
        ({**body, "issuer_type": "NOPE"}, "issuer_type"),
        ({**body, "issuer_credentials": {"hmac_hex_key": "abc"}}, "issuer_credentials.hmac_hex_key"),
        ({**body, "issuer_credentials": {"hmac_hex_key": 7}}, "issuer_credentials.hmac_hex_key"),
        ({**body, "issuer_attributes": {"host_url": "ftp://x"}}, "issuer_attributes.host_url"),
        (
            {**body, "issuer_attributes": {**body["issuer_attributes"], "colour": "red"}},
            "issuer_attributes.colour",
        ),
        ({k: v for k, v in body.items() if k != "issuer_credentials"}, "issuer_credentials"),
        ({**body, "extra": 1}, "extra"),
        ({**body, "description": "d" * 101}, "description"),
    ]
    for bad, field in cases:
        answer = await api.post(ISSUERS, bad, expect=400)
        assert error_field(answer) == field, (bad, answer.body)

    await api.put(path, {"description": "x"}, expect=412, headers={"If-Match": '"stale"'})
    updated = await api.put(path, {"description": "edge CA"}, headers={"If-Match": created.headers["ETag"]})
    assert updated.body["description"] == "edge CA" and updated.body["etag"] != issuer["etag"]
    answer = await api.put(path, {"issuer_credentials": {"hmac_hex_key": "zz"}}, expect=400)
    assert error_field(answer) == "issuer_credentials.hmac_hex_key"
    await api.put(path, {"name": f"cf2-{unique}", "issuer_credentials": {"hmac_hex_key": "AB" * 16}})
    assert (await api.get(f"{ISSUERS}/cf2-{unique}")).body["id"] == issuer["id"]
    await api.call("PATCH", path, expect=405, json_body={})
    await api.delete(path, expect=412, headers={"If-Match": created.headers["ETag"]})
    await api.delete(path)
    await api.get(path, expect=404)
    await api.delete(path, expect=404)
    await api.put(path, {"description": "x"}, expect=404)
    await api.post(path + "/verify", None, expect=404)


@pytest.mark.interop
async def test_verify_and_activation_through_real_cfssl(api: Api, cfssl: CfsslServer, unique: str) -> None:
    """verify signs through the real CFSSL; an active issuer cannot be deleted (400 saying why)."""
    good = (await api.post(ISSUERS, cfssl_issuer(f"good-{unique}", cfssl.url))).body
    bad = (await api.post(ISSUERS, cfssl_issuer(f"bad-{unique}", cfssl.url, key="CD" * 16))).body
    verified = await api.post(f"{ISSUERS}/{good['id']}/verify", None, expect=200)
    assert verified.body["successful"] is True and "serial" in verified.body["message"]
    failed = await api.post(f"{ISSUERS}/{bad['id']}/verify", None, expect=200)
    assert failed.body["successful"] is False and failed.body["message"].startswith("misconfigured")

    config = await api.post(CONFIGS, {"reference": f"svc-{unique}", "certificate_issuer_id": good["id"]})
    answer = await api.delete(f"{ISSUERS}/{good['id']}", expect=400)
    assert "active for" in answer.body["message"] and f"svc-{unique}" in answer.body["message"]
    await api.put(f"{CONFIGS}/{config.body['id']}", {"certificate_issuer_id": None})
    await api.delete(f"{ISSUERS}/{good['id']}")
    await api.delete(f"{CONFIGS}/{config.body['id']}")


# --- certificate issuer configurations -----------------------------------------------------------


async def test_configurations(api: Api, unique: str) -> None:
    """Custom configurations: create (reserved and duplicate references refused), point at an issuer,
    filter, If-Match, delete; LWM2M has its own endpoint and cannot be deleted."""
    issuer = (await api.post(ISSUERS, cfssl_issuer(f"cfg-{unique}"))).body
    reference = f"renewal-{unique}"
    created = await api.post(CONFIGS, {"reference": reference, "certificate_issuer_id": None})
    config = created.body
    assert config["is_custom"] is True and config["certificate_issuer_id"] is None
    assert config["object"] == "certificate-issuer-configuration"
    for bad_reference in ("LWM2M", "LwM2M", "bootstrap", "BOOTSTRAP"):
        answer = await api.post(
            CONFIGS, {"reference": bad_reference, "certificate_issuer_id": None}, expect=400
        )
        assert error_field(answer) == "reference" and "reserved" in answer.body["message"]
    for bad_reference in ("has space", "x" * 101, ""):
        answer = await api.post(
            CONFIGS, {"reference": bad_reference, "certificate_issuer_id": None}, expect=400
        )
        assert error_field(answer) == "reference"
    await api.post(CONFIGS, {"reference": reference, "certificate_issuer_id": None}, expect=409)
    answer = await api.post(CONFIGS, {"reference": f"x-{unique}"}, expect=400)
    assert error_field(answer) == "certificate_issuer_id"
    answer = await api.post(
        CONFIGS, {"reference": f"x-{unique}", "certificate_issuer_id": "nope"}, expect=404
    )
    assert error_field(answer) == "certificate_issuer_id"

    path = f"{CONFIGS}/{config['id']}"
    await api.put(path, {"certificate_issuer_id": issuer["id"]}, expect=412, headers={"If-Match": '"old"'})
    moved = await api.put(
        path, {"certificate_issuer_id": issuer["id"]}, headers={"If-Match": created.headers["ETag"]}
    )
    assert moved.body["certificate_issuer_id"] == issuer["id"] and moved.body["etag"] != config["etag"]
    found = await api.get(f"{CONFIGS}?reference__eq={reference}&include=total_count")
    assert [c["id"] for c in found.body["data"]] == [config["id"]] and found.body["total_count"] == 1
    assert (await api.get(f"{CONFIGS}?reference__eq=none-{unique}")).body["data"] == []
    assert (await api.get(f"{CONFIGS}/{reference}")).body["id"] == config["id"]

    lwm2m = (await api.get(f"{CONFIGS}/lwm2m")).body
    assert lwm2m["reference"] == "LWM2M" and lwm2m["is_custom"] is False
    everything = await api.get(f"{CONFIGS}?limit=1000")
    assert lwm2m["id"] in {c["id"] for c in everything.body["data"]}
    await api.delete(f"{CONFIGS}/{lwm2m['id']}", expect=400)
    await api.delete(f"{CONFIGS}/lwm2m", expect=400)
    await api.put(f"{CONFIGS}/lwm2m", {"certificate_issuer_id": "nope"}, expect=404)
    await api.put(
        f"{CONFIGS}/lwm2m", {"certificate_issuer_id": None}, expect=412, headers={"If-Match": '"x"'}
    )
    await api.call("DELETE", path, expect=412, headers={"If-Match": created.headers["ETag"]})
    await api.delete(path)
    await api.get(path, expect=404)
    await api.put(path, {"certificate_issuer_id": None}, expect=404)
    await api.delete(f"{ISSUERS}/{issuer['id']}")


@pytest.mark.interop
async def test_lwm2m_configuration_points_at_an_issuer_and_back(
    api: Api, cfssl: CfsslServer, unique: str
) -> None:
    """PUT /lwm2m sets the LwM2M CA (an issuer id, then null = built-in); the issuer is then in use."""
    issuer = (await api.post(ISSUERS, cfssl_issuer(f"lw-{unique}", cfssl.url))).body
    try:
        current = await api.get(f"{CONFIGS}/lwm2m")
        set_ = await api.put(
            f"{CONFIGS}/lwm2m",
            {"certificate_issuer_id": issuer["id"]},
            headers={"If-Match": current.headers["ETag"]},
        )
        assert set_.body["certificate_issuer_id"] == issuer["id"]
        assert (await api.get(f"{CONFIGS}/lwm2m")).body["certificate_issuer_id"] == issuer["id"]
        await api.delete(f"{ISSUERS}/{issuer['id']}", expect=400)
    finally:
        await api.put(f"{CONFIGS}/lwm2m", {"certificate_issuer_id": None})
    await api.delete(f"{ISSUERS}/{issuer['id']}")


# --- trusted certificates ------------------------------------------------------------------------


async def test_trusted_certificates(api: Api, unique: str) -> None:
    """Create (bootstrap anchors must be CAs), duplicates 409, filters, update with If-Match, delete."""
    ca = TestCa.create(f"Factory CA {unique}")
    created = await api.post(
        TRUST, {"name": f"factory-{unique}", "service": "bootstrap", "certificate": pem(ca.certificate)}
    )
    item = created.body
    assert item["object"] == "trusted-cert" and item["status"] == "ACTIVE" and item["valid"] is True
    assert (
        item["subject"] == ca.certificate.subject.rfc4514_string()
        and len(item["certificate_fingerprint"]) == 64
    )
    assert item["certificate"] == pem(ca.certificate) and item["description"] is None

    await api.post(
        TRUST,
        {"name": f"factory-{unique}", "service": "lwm2m", "certificate": pem(ca.certificate)},
        expect=409,
    )
    answer = await api.post(
        TRUST,
        {"name": f"again-{unique}", "service": "bootstrap", "certificate": pem(ca.certificate)},
        expect=409,
    )
    assert error_field(answer) == "certificate"
    leaf = ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), name(f"leaf-{unique}"))
    answer = await api.post(
        TRUST, {"name": f"leaf-{unique}", "service": "bootstrap", "certificate": pem(leaf)}, expect=400
    )
    assert error_field(answer) == "certificate" and "CA" in answer.body["message"]
    await api.post(TRUST, {"name": f"leaf-{unique}", "service": "lwm2m", "certificate": pem(leaf)})
    for bad, field in (
        (
            {"name": f"x-{unique}", "service": "bootstrap", "certificate": "-----BEGIN nonsense"},
            "certificate",
        ),
        ({"name": f"x-{unique}", "service": "other", "certificate": pem(ca.certificate)}, "service"),
        ({"name": "", "service": "lwm2m", "certificate": pem(ca.certificate)}, "name"),
        (
            {"name": f"x-{unique}", "service": "lwm2m", "certificate": pem(ca.certificate), "status": "ON"},
            "status",
        ),
        (
            {"name": f"x-{unique}", "service": "lwm2m", "certificate": pem(leaf), "description": "d" * 501},
            "description",
        ),
        (
            {"name": f"x-{unique}", "service": "lwm2m", "certificate": pem(leaf), "enrollment_mode": True},
            "enrollment_mode",
        ),
    ):
        assert error_field(await api.post(TRUST, bad, expect=400)) == field

    async def names(query: str) -> set[str]:
        return {i["name"] for i in (await api.get(f"{TRUST}?limit=1000&{query}")).body["data"]}

    assert await names(f"subject__like={unique}") == {f"factory-{unique}", f"leaf-{unique}"}
    assert await names(f"subject__like=factory ca {unique}") == {f"factory-{unique}"}  # case-insensitive
    assert await names(f"issuer__like=Factory CA {unique}") == {f"factory-{unique}", f"leaf-{unique}"}
    assert await names(f"subject__like={unique}&service__eq=lwm2m") == {f"leaf-{unique}"}
    assert await names(f"name__eq=factory-{unique}") == {f"factory-{unique}"}
    assert await names(f"subject__like={unique}&valid__eq=false") == set()
    assert await names(f"subject__like=%25{unique}") == set()  # LIKE wildcards are literal

    path = f"{TRUST}/{item['id']}"
    await api.put(path, {"status": "INACTIVE"}, expect=412, headers={"If-Match": '"old"'})
    updated = await api.put(
        path, {"status": "INACTIVE", "description": "retired"}, headers={"If-Match": created.headers["ETag"]}
    )
    assert updated.body["status"] == "INACTIVE" and updated.body["description"] == "retired"
    assert await names(f"subject__like={unique}&status__eq=INACTIVE") == {f"factory-{unique}"}
    assert (await api.put(path, {"description": None})).body["description"] is None
    await api.put(path, {"name": f"leaf-{unique}"}, expect=409)
    await api.put(path, {"certificate": pem(leaf)}, expect=400)
    await api.delete(path, expect=412, headers={"If-Match": created.headers["ETag"]})
    await api.delete(path)
    await api.get(path, expect=404)
    await api.delete(f"{TRUST}/leaf-{unique}")


# --- device credentials ----------------------------------------------------------------------------


async def test_device_credentials(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """PUT creates then replaces (the key is write-only); conflicts, bad keys, If-Match, delete."""
    endpoint = f"urn:dev:{unique}"
    psk = "00112233445566778899aabbccddeeff"
    path = f"{DEVICES}/{endpoint}"
    created = await api.put(path, {"psk_identity": f"id-{unique}", "psk_key": psk}, expect=201)
    assert created.body == {
        **created.body,
        "endpoint": endpoint,
        "psk_identity": f"id-{unique}",
        "object": "device-credential",
    }
    assert "psk_key" not in created.body
    replaced = await api.put(path, {"psk_identity": f"id2-{unique}", "psk_key": psk.upper()}, expect=200)
    assert replaced.body["etag"] != created.body["etag"]
    await api.put(
        path,
        {"psk_identity": f"id3-{unique}", "psk_key": psk},
        expect=412,
        headers={"If-Match": created.headers["ETag"]},
    )
    await api.put(f"{DEVICES}/other-{unique}", {"psk_identity": f"id2-{unique}", "psk_key": psk}, expect=409)
    await api.put(
        f"{DEVICES}/other-{unique}",
        {"psk_identity": "x", "psk_key": psk},
        expect=412,
        headers={"If-Match": '"x"'},
    )
    for bad, field in (
        ({"psk_identity": "x", "psk_key": "zz" * 16}, "psk_key"),
        ({"psk_identity": "x", "psk_key": "00" * 8}, "psk_key"),
        ({"psk_identity": "x", "psk_key": "00" * 65}, "psk_key"),
        ({"psk_identity": "é" * 100, "psk_key": psk}, "psk_identity"),
        ({"psk_identity": "", "psk_key": psk}, "psk_identity"),
        ({"psk_key": psk}, "psk_identity"),
    ):
        assert error_field(await api.put(f"{DEVICES}/bad-{unique}", bad, expect=400)) == field
    assert (
        error_field(
            await api.put(f"{DEVICES}/{'e' * 129}", {"psk_identity": "y", "psk_key": psk}, expect=400)
        )
        == "endpoint"
    )

    got = await api.get(path)
    assert got.body == replaced.body
    listed = await api.get(f"{DEVICES}?psk_identity__eq=id2-{unique}&include=total_count")
    assert [d["endpoint"] for d in listed.body["data"]] == [endpoint] and listed.body["total_count"] == 1
    page = await api.get(f"{DEVICES}?limit=1000")
    assert endpoint in {d["endpoint"] for d in page.body["data"]}
    await api.delete(path, expect=412, headers={"If-Match": '"nope"'})
    await api.delete(path, headers={"If-Match": got.headers["ETag"]})
    await api.get(path, expect=404)
    await api.delete(path, expect=404)
    assert await pool.fetchval("SELECT count(*) FROM device_credentials WHERE endpoint = $1", endpoint) == 0


# --- issued certificates ---------------------------------------------------------------------------


async def _audit_row(
    pool: asyncpg.Pool,
    ca: TestCa,
    endpoint: str,
    service: str,
    *,
    expired: bool = False,
    issuer_id: str | None = None,
) -> None:
    now = dt.datetime.now(dt.UTC)
    window = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else (None, None)
    certificate = ca.issue(
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        name(endpoint),
        not_before=window[0],
        not_after=window[1],
    )
    await audit.record_one(
        pool,
        audit.IssuedCertificate.of(
            certificate,
            endpoint=endpoint,
            service_reference=service,
            issuer_id=issuer_id,
            issuer_name="builtin",
            issuer_type="BUILTIN",
            request_id=uuid.uuid4().hex[:16],
        ),
    )


async def test_issued_certificates_filters_detail_and_revocation(
    api: Api, pool: asyncpg.Pool, unique: str
) -> None:
    """Filters (endpoint, service, valid = unexpired and unrevoked), the PEM on detail, revocation
    recorded once with an RFC 5280 reason."""
    ca = TestCa.create(f"Audit CA {unique}")
    service = f"svc-{unique}"
    for i in range(3):
        await _audit_row(pool, ca, f"dev-{unique}-{i}", service)
    await _audit_row(pool, ca, f"dev-{unique}-old", service, expired=True)

    listed = await api.get(f"{ISSUED}?service__eq={service}&include=total_count")
    rows = listed.body["data"]
    assert listed.body["total_count"] == 4 and all("certificate" not in r for r in rows)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)
    valid = await api.get(f"{ISSUED}?service__eq={service}&valid__eq=true")
    assert {r["endpoint"] for r in valid.body["data"]} == {f"dev-{unique}-{i}" for i in range(3)}
    one = await api.get(f"{ISSUED}?endpoint__eq=dev-{unique}-1")
    assert len(one.body["data"]) == 1 and one.body["data"][0]["issuer_id"] is None
    assert (await api.get(f"{ISSUED}?issuer_id__eq=none-{unique}")).body["data"] == []

    target = one.body["data"][0]
    detail = await api.get(f"{ISSUED}/{target['id']}")
    assert detail.body["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    path = f"{ISSUED}/{target['id']}/revoke"
    assert error_field(await api.post(path, {"reason": "bored"}, expect=400)) == "reason"
    assert error_field(await api.post(path, {}, expect=400)) == "reason"
    revoked = await api.post(path, {"reason": "keyCompromise"}, expect=200)
    assert revoked.body["revocation_reason"] == "keyCompromise" and revoked.body["revoked_at"] is not None
    assert revoked.body["valid"] is False and revoked.headers["ETag"] != detail.headers["ETag"]
    await api.post(path, {"reason": "superseded"}, expect=409)
    valid = await api.get(f"{ISSUED}?service__eq={service}&valid__eq=false")
    assert {r["endpoint"] for r in valid.body["data"]} == {f"dev-{unique}-1", f"dev-{unique}-old"}
    for missing in ("999999999999", "abc", "-1"):
        await api.get(f"{ISSUED}/{missing}", expect=404)
        await api.post(f"{ISSUED}/{missing}/revoke", {"reason": "unspecified"}, expect=404)
    assert error_field(await api.get(f"{ISSUED}?after=abc", expect=400)) == "after"


async def test_revocation_is_passed_to_globalsign(api: Api, hvca: HvcaFake, unique: str) -> None:
    """A GlobalSign certificate is revoked at HVCA first (the fake sees the reason), then recorded;
    a reason HVCA does not know is a 424 and nothing is recorded."""
    passphrase = f"pass-{unique}"
    issuer = await api.post(
        ISSUERS,
        {
            "name": f"gs-{unique}",
            "issuer_type": "GLOBAL_SIGN",
            "issuer_attributes": {"base_url": hvca.base_url, "ca_bundle_pem": hvca.tls_root_pem},
            "issuer_credentials": hvca.account_credentials(passphrase=passphrase),
        },
    )
    issuer_id = issuer.body["id"]
    for _ in range(2):
        assert (await api.post(f"{ISSUERS}/{issuer_id}/verify", None, expect=200)).body["successful"]
    rows = (await api.get(f"{ISSUED}?issuer_id__eq={issuer_id}")).body["data"]
    assert len(rows) == 2 and {r["issuer_type"] for r in rows} == {"GLOBAL_SIGN"}

    first, second = rows
    revoked = await api.post(f"{ISSUED}/{first['id']}/revoke", {"reason": "cessationOfOperation"}, expect=200)
    assert revoked.body["revocation_reason"] == "cessationOfOperation"
    assert hvca.issued[first["serial_number"]].status == "REVOKED"
    assert hvca.issued[first["serial_number"]].revocation_reason == "cessationOfOperation"

    answer = await api.post(f"{ISSUED}/{second['id']}/revoke", {"reason": "aACompromise"}, expect=424)
    assert "unsupported revocation reason" in answer.body["message"]
    assert (await api.get(f"{ISSUED}/{second['id']}")).body["revoked_at"] is None
    assert hvca.issued[second["serial_number"]].status == "ISSUED"


# --- lists ------------------------------------------------------------------------------------------


async def test_pagination(api: Api, unique: str) -> None:
    """Keyset pages by id: limit clamps to 2-1000, after walks forward or backward, has_more and
    total_count are right; bad paging parameters are 400 naming the parameter."""
    for i in range(5):
        ca = TestCa.create(f"Page CA {unique} {i}")
        await api.post(
            TRUST, {"name": f"page-{unique}-{i}", "service": "lwm2m", "certificate": pem(ca.certificate)}
        )
    query = f"subject__like=Page CA {unique}"
    everything = (await api.get(f"{TRUST}?{query}&limit=1000")).body["data"]
    ids = [i["id"] for i in everything]
    assert len(ids) == 5 and ids == sorted(ids)

    for order, expected in (("ASC", ids), ("DESC", ids[::-1])):
        walked: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            suffix = f"&after={after}" if after else ""
            page = (await api.get(f"{TRUST}?{query}&limit=2&order={order}&include=total_count{suffix}")).body
            assert page["limit"] == 2 and page["order"] == order and page["total_count"] == 5
            assert page["after"] == after
            walked += [i["id"] for i in page["data"]]
            pages += 1
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert walked == expected and pages == 3

    assert (await api.get(f"{TRUST}?{query}&limit=1")).body["limit"] == 2
    assert (await api.get(f"{TRUST}?{query}&limit=-7")).body["limit"] == 2
    assert (await api.get(f"{TRUST}?{query}&limit=5000")).body["limit"] == 1000
    assert "total_count" not in (await api.get(f"{TRUST}?{query}")).body
    for bad, field in (
        ("limit=ten", "limit"),
        ("order=up", "order"),
        ("include=everything", "include"),
        ("valid__eq=yes", "valid__eq"),
        ("colour__eq=red", "colour__eq"),
        ("limit=2&limit=3", "limit"),
    ):
        assert error_field(await api.get(f"{TRUST}?{bad}", expect=400)) == field

    issuers = [(await api.post(ISSUERS, cfssl_issuer(f"pg-{unique}-{i}"))).body["id"] for i in range(3)]
    walked = []
    after = None
    while True:
        suffix = f"&after={after}" if after else ""
        page = (await api.get(f"{ISSUERS}?limit=2{suffix}")).body
        walked += [i["id"] for i in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert walked == sorted(walked) and set(issuers) <= set(walked)
    for issuer_id in issuers:
        await api.delete(f"{ISSUERS}/{issuer_id}")


# --- errors ------------------------------------------------------------------------------------------


async def test_error_objects(api: Api, unique: str) -> None:
    """Malformed JSON names the body; wrong shapes name the field; unknown routes 404, wrong methods 405."""
    answer = await api.call(
        "POST", KEYS, expect=400, data='{"name": ', headers={"Content-Type": "application/json"}
    )
    assert answer.body["type"] == "validation_error" and error_field(answer) == "body"
    assert "malformed JSON" in answer.body["message"]
    for raw in ("", "[1, 2]", '"name"', "null", "\xff\xfe"):
        answer = await api.call("POST", KEYS, expect=400, data=raw.encode("latin-1"))
        assert error_field(answer) == "body", raw
    assert error_field(await api.post(KEYS, {"name": ["a"]}, expect=400)) == "name"
    assert error_field(await api.post(KEYS, {"name": "a\u0000b"}, expect=400)) == "name"
    answer = await api.call("PATCH", KEYS, expect=405, json_body={})
    assert "GET" in answer.headers["Allow"] and answer.body["type"] == "method_not_allowed"
    await api.get("/v3/nothing-here", expect=404)
    await api.get(f"{TRUST}/%00", expect=404)
    answer = await api.call("POST", KEYS, expect=413, data=b"{" + b" " * (300 * 1024) + b"}")
    assert answer.body["type"] == "payload_too_large"


class _BrokenIssuers(IssuerService):
    async def list_issuers(self) -> Any:  # type: ignore[override]
        raise RuntimeError("connection to 10.0.0.7 failed: password=hunter2")


async def test_internal_errors_do_not_leak(pool: asyncpg.Pool, box: SecretBox, unique: str) -> None:
    """An unexpected exception is a 500 whose body says nothing about the cause; the log has it."""
    async with admin_api(pool, box, key_name=f"boom-{unique}", issuers=_BrokenIssuers(pool, box)) as client:
        with capture_logs() as logs:
            answer = await client.get(ISSUERS, expect=500)
        assert (
            "hunter2" not in answer.text
            and "10.0.0.7" not in answer.text
            and "RuntimeError" not in answer.text
        )
        assert answer.body["type"] == "internal_server_error"
        assert any(e["event"] == "admin request failed" and e.get("exc_info") for e in logs)


async def test_database_down_is_503_and_not_ready(box: SecretBox) -> None:
    """With Postgres unreachable, /ready says so and API calls are 503 with Retry-After, not 500."""
    from aiohttp.test_utils import TestClient, TestServer

    dead = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0, max_size=1)
    app = create_app(pool=dead, box=box, issuers=IssuerService(dead, box))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/ready")
        assert response.status == 503 and (await response.json())["checks"]["database"] is False
        response = await client.get(ISSUERS, headers={"Authorization": "Bearer lwb_00000000_" + "A" * 43})
        body = await response.json()
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        assert body["type"] == "service_unavailable" and "127.0.0.1" not in body["message"]
    await dead.close()


async def test_request_ids(api: Api) -> None:
    """Every response carries X-Request-Id (a sane incoming one is kept) and the log lines carry it."""
    with capture_logs(processors=[log_context.merge]) as logs:
        answer = await api.get(ISSUERS, headers={"X-Request-Id": "trace-123"})
    assert answer.headers["X-Request-Id"] == "trace-123"
    assert any(e.get("request_id") == "trace-123" and e["event"] == "admin request" for e in logs)
    answer = await api.get(ISSUERS, headers={"X-Request-Id": "bad id with spaces"})
    assert (
        answer.headers["X-Request-Id"] != "bad id with spaces" and len(answer.headers["X-Request-Id"]) == 32
    )
    error = await api.get(f"{ISSUERS}/nope", expect=404)
    assert error.body["request_id"] == error.headers["X-Request-Id"]


# --- audit and secrets -----------------------------------------------------------------------------


async def test_every_change_is_audited_naming_the_key(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """Changes (failed ones too) write an admin_audit row and a log line naming the key; reads don't."""
    key_name = f"test-{unique}"
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with capture_logs() as logs:
        created = await api.post(
            TRUST,
            {"name": f"aud-{unique}", "service": "lwm2m", "certificate": pem(TestCa.create("A").certificate)},
        )
        await api.post(TRUST, {"name": f"aud-{unique}", "service": "lwm2m", "certificate": "x"}, expect=400)
        await api.get(f"{TRUST}/{created.body['id']}")
        await api.delete(f"{TRUST}/{created.body['id']}")
    rows = await pool.fetch(
        "SELECT * FROM admin_audit WHERE api_key_name = $1 AND at >= $2 ORDER BY id", key_name, since
    )
    assert [(r["method"], r["status"], r["outcome"]) for r in rows] == [
        ("POST", 201, "success"),
        ("POST", 400, "failure"),
        ("DELETE", 204, "success"),
    ]
    assert rows[0]["target_id"] == created.body["id"] == rows[2]["target_id"]
    assert rows[0]["path"] == TRUST and rows[0]["request_id"]
    changes = [e for e in logs if e["event"] == "admin change"]
    assert [(e["method"], e["status"], e["api_key"]) for e in changes] == [
        ("POST", 201, key_name),
        ("POST", 400, key_name),
        ("DELETE", 204, key_name),
    ]
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE admin_audit SET outcome = 'success' WHERE id = $1", rows[1]["id"])


async def test_no_credential_is_ever_returned_or_logged(
    api: Api, pool: asyncpg.Pool, hvca: HvcaFake, unique: str
) -> None:
    """Written secrets (HMAC key, HVCA secret, private key, passphrase, PSK, API keys) appear in no
    response body and no log line; an API key appears only in its own create response."""
    hmac_key = "5EC2E7" + uuid.uuid4().hex[:26].upper()
    passphrase = f"pp-{uuid.uuid4().hex}"
    gs_credentials = hvca.account_credentials(passphrase=passphrase)
    psk = uuid.uuid4().hex
    secrets_written = [hmac_key, hmac_key.lower(), gs_credentials["api_secret"], passphrase, psk, psk.upper()]
    secrets_written.append(gs_credentials["private_key"].splitlines()[1])
    other_key_name = f"leak-{unique}"

    with capture_logs(processors=[log_context.merge]) as logs:
        cf = await api.post(ISSUERS, cfssl_issuer(f"leak-cf-{unique}", key=hmac_key))
        await api.put(f"{ISSUERS}/{cf.body['id']}", {"issuer_credentials": {"hmac_hex_key": hmac_key}})
        await api.post(ISSUERS, cfssl_issuer(f"leak-cf-{unique}", key=hmac_key), expect=409)
        await api.post(ISSUERS, {**cfssl_issuer(f"x-{unique}", key=hmac_key), "name": 1}, expect=400)
        gs = await api.post(
            ISSUERS,
            {
                "name": f"leak-gs-{unique}",
                "issuer_type": "GLOBAL_SIGN",
                "issuer_attributes": {"base_url": hvca.base_url, "ca_bundle_pem": hvca.tls_root_pem},
                "issuer_credentials": gs_credentials,
            },
        )
        bad_gs = {**gs_credentials, "passphrase": passphrase + "-wrong"}
        await api.put(f"{ISSUERS}/{gs.body['id']}", {"issuer_credentials": bad_gs}, expect=400)
        await api.post(f"{ISSUERS}/{gs.body['id']}/verify", None, expect=200)
        await api.put(
            f"{DEVICES}/leak-{unique}", {"psk_identity": f"leak-{unique}", "psk_key": psk}, expect=201
        )
        await api.put(
            f"{DEVICES}/leak2-{unique}", {"psk_identity": f"leak-{unique}", "psk_key": psk}, expect=409
        )
        new_key = await api.post(KEYS, {"name": other_key_name})
        for path in (
            ISSUERS,
            f"{ISSUERS}/{cf.body['id']}",
            f"{ISSUERS}/{gs.body['id']}",
            DEVICES,
            KEYS,
            ISSUED,
            CONFIGS,
        ):
            await api.get(f"{path}?limit=1000" if path.count("/") == 2 else path)
        await api.get(f"{DEVICES}/leak-{unique}")
        await api.get(KEYS, key=new_key.body["key"])
        await api.get(ISSUERS, key=new_key.body["key"] + "x", expect=401)

    api_keys = [api.key, new_key.body["key"], new_key.body["key"].split("_", 2)[2]]
    create_response = new_key.text
    for text in api.seen:
        for secret in secrets_written:
            assert secret not in text, f"a written secret came back: {secret[:8]}..."
        if text != create_response:
            for key in api_keys:
                assert key not in text, "an API key came back outside its create response"
    assert new_key.body["key"] in create_response
    log_text = "\n".join(repr(e) for e in logs)
    assert logs, "expected log lines"
    for secret in [*secrets_written, *api_keys]:
        assert secret not in log_text, f"a secret was logged: {secret[:8]}..."
    await api.delete(f"{ISSUERS}/{cf.body['id']}")
    await api.delete(f"{ISSUERS}/{gs.body['id']}")


# --- metrics, serving, CLI ---------------------------------------------------------------------------


def test_metric_helpers_update_the_registry() -> None:
    """The helpers the signing path calls update the process registry with the expected labels."""
    registry = metrics.REGISTRY
    label = f"svc-{uuid.uuid4().hex[:6]}"

    def value(sample: str, **labels: str) -> float:
        return registry.get_sample_value(sample, labels) or 0.0

    metrics.observe_enrollment(label, "builtin", "success", 0.02)
    metrics.observe_enrollment(label, "builtin", "unavailable", 3.0)
    assert value("lwm2m_enrollments_total", service=label, issuer="builtin", outcome="success") == 1
    assert value("lwm2m_enrollment_seconds_count", service=label, issuer="builtin") == 2
    assert value("lwm2m_enrollment_seconds_bucket", service=label, issuer="builtin", le="0.025") == 1
    metrics.observe_handshake("psk", label)
    assert value("lwm2m_handshakes_total", mode="psk", outcome=label) == 1
    metrics.observe_backend_error(label, "rejected")
    assert value("lwm2m_backend_errors_total", issuer=label, kind="rejected") == 1
    metrics.session_opened(label)
    metrics.session_opened(label)
    metrics.session_closed(label)
    assert value("lwm2m_live_sessions", transport=label) == 1
    metrics.set_live_sessions(label, 7)
    assert value("lwm2m_live_sessions", transport=label) == 7
    metrics.observe_bootstrap_session(label)
    assert value("lwm2m_bootstrap_sessions_total", outcome=label) == 1
    isolated = metrics.Metrics.create(metrics.new_registry(process_metrics=False))
    isolated.enrollments.labels(service="a", issuer="b", outcome="c").inc()
    assert (
        isolated.registry.get_sample_value(
            "lwm2m_enrollments_total", {"service": "a", "issuer": "b", "outcome": "c"}
        )
        == 1
    )


async def test_start_admin_over_https(pool: asyncpg.Pool, box: SecretBox, tmp_path: Path) -> None:
    """start_admin serves the app over TLS on a free loopback port; cleanup stops it."""
    ca = TestCa.create("Admin TLS CA")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca.issue(key.public_key(), name("localhost"), server_hosts=("127.0.0.1",), client=False)
    (tmp_path / "cert.pem").write_text(pem(certificate))
    (tmp_path / "key.pem").write_text(key_pem(key))
    app = create_app(pool=pool, box=box, issuers=IssuerService(pool, box))
    runner = await start_admin(
        app, "127.0.0.1", 0, server_ssl_context(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    )
    port = bound_port(runner)
    client_context = ssl.create_default_context(cadata=pem(ca.certificate))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/health", ssl=client_context) as response:
                assert response.status == 200 and (await response.json()) == {"status": "ok"}
            async with session.get(f"https://127.0.0.1:{port}/v3/api-keys", ssl=client_context) as response:
                assert response.status == 401
    finally:
        await runner.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"https://127.0.0.1:{port}/health", ssl=client_context)


async def test_apikey_cli_group(
    database_url: str, master_key_b64: str, pool: asyncpg.Pool, tmp_path: Path, unique: str
) -> None:
    """apikey create prints the key once (it then authenticates), list never shows it, revoke ends it;
    the CLI's changes are audited."""
    from click.testing import CliRunner

    from bootstrap.admin.cli_commands import apikey

    env = {
        "DATABASE_URL": database_url,
        "LWM2M_BOOTSTRAP_MASTER_KEY": master_key_b64,
        "LWM2M_BOOTSTRAP_LOG_LEVEL": "warning",
    }
    runner = CliRunner()
    common = ["--data-dir", str(tmp_path)]

    def invoke(*args: str) -> Any:
        return runner.invoke(apikey, [*args, *common], env=env, catch_exceptions=False)

    created = await asyncio.to_thread(invoke, "create", f"cli-{unique}")
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert plaintext.startswith("lwb_") and await keys.authenticate(pool, plaintext) is not None
    listed = await asyncio.to_thread(invoke, "list")
    assert f"cli-{unique}" in listed.stdout and plaintext not in listed.stdout
    duplicate = await asyncio.to_thread(invoke, "create", f"cli-{unique}")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    revoked = await asyncio.to_thread(invoke, "revoke", f"cli-{unique}")
    assert revoked.exit_code == 0 and await keys.authenticate(pool, plaintext) is None
    missing = await asyncio.to_thread(invoke, "revoke", f"cli-{unique}")
    assert missing.exit_code == 1
    rows = await pool.fetch(
        "SELECT path, api_key_name FROM admin_audit WHERE method = 'CLI'"
        " AND target_id IN (SELECT id FROM api_keys WHERE name = $1)",
        f"cli-{unique}",
    )
    assert sorted(r["path"] for r in rows) == ["apikey create", "apikey revoke"]
    assert all(r["api_key_name"].startswith("cli:") for r in rows)
