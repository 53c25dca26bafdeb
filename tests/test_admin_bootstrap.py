"""The admin API's bootstrap collections against real Postgres over loopback: bootstrap configurations
(the ``default`` scope and per-endpoint ones: validation, entity tags, paging, filters, the audit) and
the read-only record of bootstrap sessions.

Every answer is also checked against the served OpenAPI document (``tests/admin_helpers.py``). The
test database is shared by the whole session and other tests expect no default configuration, so the
``default`` scope is always deleted again here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest_asyncio
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.secretbox import SecretBox
from bootstrap.store import bootstrap_configs

from .admin_helpers import Api, admin_api
from .ca_helpers import TestCa, pem

CONFIGS = "/v3/bootstrap-configurations"
SESSIONS = "/v3/bootstrap-sessions"


@pytest_asyncio.fixture
async def api(pool: asyncpg.Pool, box: SecretBox, unique: str) -> AsyncIterator[Api]:
    """The admin API on loopback with a fresh key."""
    async with admin_api(pool, box, key_name=f"bs-{unique}") as client:
        yield client


@pytest_asyncio.fixture
async def no_default(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Asserts there is no default configuration before the test, and removes any left after it."""
    assert await pool.fetchval("SELECT count(*) FROM bootstrap_configs WHERE scope = '*'") == 0
    try:
        yield
    finally:
        await pool.execute("DELETE FROM bootstrap_configs WHERE scope = '*'")


def error_field(answer: Any) -> str | None:
    """The first field named by an error object."""
    fields = answer.body["fields"]
    return fields[0]["field"] if fields else None


def psk_config(**extra: Any) -> dict[str, Any]:
    """A valid psk-mode request body."""
    return {"server_uri": "coaps://lwm2m.example:5684", "security_mode": "psk", **extra}


# --- configurations --------------------------------------------------------------------------------


async def test_authentication_is_required(api: Api, unique: str) -> None:
    """Every bootstrap operation needs a key."""
    for method, path in (
        ("GET", CONFIGS),
        ("GET", f"{CONFIGS}/default"),
        ("PUT", f"{CONFIGS}/ep-{unique}"),
        ("DELETE", f"{CONFIGS}/ep-{unique}"),
        ("GET", SESSIONS),
        ("GET", f"{SESSIONS}/1"),
    ):
        kwargs: dict[str, Any] = {"json_body": psk_config()} if method == "PUT" else {}
        answer = await api.call(method, path, expect=401, key=None, **kwargs)
        assert answer.body["type"] == "unauthorized"
    await api.get(f"{CONFIGS}/ep-{unique}", expect=401, key="lwb_00000000_" + "A" * 43)


async def test_configuration_create_replace_get_delete(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """PUT creates (201, defaults filled in) then replaces (200); the certificate is stored as DER and
    returned as PEM with its subject; If-Match guards PUT and DELETE; every change is audited."""
    endpoint = f"urn:dev:bs-{unique}"
    path = f"{CONFIGS}/{endpoint}"
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await api.get(path, expect=404)

    created = await api.put(path, psk_config(), expect=201)
    assert created.body == {
        **created.body,
        "scope": endpoint,
        "server_uri": "coaps://lwm2m.example:5684",
        "security_mode": "psk",
        "short_server_id": 1,
        "lifetime": 86400,
        "binding": "U",
        "server_certificate": None,
        "server_certificate_subject": None,
        "certificate_usage": None,
        "oscore": False,
        "object": "bootstrap-configuration",
    }
    assert created.body["created_at"] == created.body["updated_at"]

    ca = TestCa.create(f"LwM2M server CA {unique}")
    est = {
        "server_uri": "coaps+tcp://lwm2m.example:5684",
        "security_mode": "est",
        "short_server_id": 7,
        "lifetime": 600,
        "binding": "TQ",
        "server_certificate": pem(ca.certificate),
        "certificate_usage": 2,
    }
    replaced = await api.put(path, est, expect=200, headers={"If-Match": created.headers["ETag"]})
    assert replaced.body["etag"] != created.body["etag"]
    assert replaced.body["created_at"] == created.body["created_at"]
    assert {k: replaced.body[k] for k in est} == est
    assert replaced.body["server_certificate_subject"] == ca.certificate.subject.rfc4514_string()
    stored = await pool.fetchval(
        "SELECT server_certificate FROM bootstrap_configs WHERE scope = $1", endpoint
    )
    assert bytes(stored) == ca.certificate.public_bytes(Encoding.DER)
    effective = await bootstrap_configs.effective(pool, endpoint)
    assert effective is not None and effective.config.security_mode == "est"

    await api.put(path, psk_config(), expect=412, headers={"If-Match": created.headers["ETag"]})
    await api.put(f"{CONFIGS}/other-{unique}", psk_config(), expect=412, headers={"If-Match": '"x"'})
    await api.get(f"{CONFIGS}/other-{unique}", expect=404)
    got = await api.get(path)
    assert got.body == replaced.body and got.headers["ETag"] == f'"{replaced.body["etag"]}"'
    # A JSON number without a fractional part is an integer (JSON Schema); null clears optional fields.
    again = await api.put(path, psk_config(lifetime=3600.0, server_certificate=None, certificate_usage=None))
    assert again.body["lifetime"] == 3600 and again.body["server_certificate"] is None
    oscore = {"server_uri": "coap://lwm2m.example:5683", "security_mode": "nosec", "oscore": True}
    again = await api.put(path, oscore)
    assert {k: again.body[k] for k in oscore} == oscore
    effective = await bootstrap_configs.effective(pool, endpoint)
    assert effective is not None and effective.config.oscore

    await api.delete(path, expect=412, headers={"If-Match": '"nope"'})
    await api.delete(path, headers={"If-Match": again.headers["ETag"]})
    await api.get(path, expect=404)
    await api.delete(path, expect=404)
    assert await pool.fetchval("SELECT count(*) FROM bootstrap_configs WHERE scope = $1", endpoint) == 0

    rows = await pool.fetch(
        "SELECT method, status, target_id, path FROM admin_audit WHERE api_key_name = $1 AND at >= $2"
        " ORDER BY id",
        f"bs-{unique}",
        since,
    )
    assert [(r["method"], r["status"]) for r in rows] == [
        ("PUT", 201),
        ("PUT", 200),
        ("PUT", 412),
        ("PUT", 412),
        ("PUT", 200),
        ("PUT", 200),
        ("DELETE", 412),
        ("DELETE", 204),
        ("DELETE", 404),
    ]
    assert rows[0]["target_id"] == endpoint and rows[0]["path"] == path
    assert rows[3]["target_id"] == f"other-{unique}" and rows[7]["target_id"] == endpoint


async def test_configuration_validation_names_the_field(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """Request shape errors and BootstrapConfig.validate()'s are 400 naming the request field, and
    nothing is stored."""
    endpoint = f"bad-{unique}"
    path = f"{CONFIGS}/{endpoint}"
    ca, other = TestCa.create(f"Server CA {unique}"), TestCa.create(f"Other CA {unique}")
    cert = pem(ca.certificate)
    coaps, coap = "coaps://lwm2m.example:5684", "coap://lwm2m.example:5683"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"security_mode": "psk"}, "server_uri"),
        ({"server_uri": coaps}, "security_mode"),
        ({"server_uri": coaps, "security_mode": "tls"}, "security_mode"),
        ({"server_uri": coaps, "security_mode": "nosec"}, "server_uri"),  # nosec with coaps refused
        ({"server_uri": "coaps+tcp://h", "security_mode": "nosec"}, "server_uri"),
        ({"server_uri": coap, "security_mode": "psk"}, "server_uri"),
        ({"server_uri": "http://lwm2m.example", "security_mode": "psk"}, "server_uri"),
        ({"server_uri": "coaps://", "security_mode": "psk"}, "server_uri"),
        ({"server_uri": "", "security_mode": "psk"}, "server_uri"),
        ({"server_uri": coaps, "security_mode": "est"}, "server_certificate"),  # est needs the cert
        ({"server_uri": coaps, "security_mode": "certificate"}, "server_certificate"),
        ({"server_uri": coaps, "security_mode": "est", "server_certificate": None}, "server_certificate"),
        (psk_config(server_certificate=cert), "server_certificate"),
        (
            {"server_uri": coaps, "security_mode": "est", "server_certificate": "not PEM"},
            "server_certificate",
        ),
        (
            {
                "server_uri": coaps,
                "security_mode": "est",
                "server_certificate": pem(ca.certificate, other.certificate),
            },
            "server_certificate",
        ),
        (psk_config(short_server_id=0), "short_server_id"),
        (psk_config(short_server_id=65535), "short_server_id"),
        (psk_config(short_server_id="1"), "short_server_id"),
        (psk_config(short_server_id=True), "short_server_id"),
        (psk_config(short_server_id=1.5), "short_server_id"),
        (psk_config(short_server_id=None), "short_server_id"),
        (psk_config(lifetime=0), "lifetime"),
        (psk_config(lifetime=2**31), "lifetime"),
        (psk_config(binding="X"), "binding"),
        (psk_config(binding="UU"), "binding"),
        (psk_config(binding="T"), "binding"),  # a UDP URI needs U
        ({"server_uri": "coaps+tcp://h", "security_mode": "psk", "binding": "U"}, "binding"),
        (psk_config(certificate_usage=1), "certificate_usage"),  # certificate modes only
        (
            {"server_uri": coaps, "security_mode": "est", "server_certificate": cert, "certificate_usage": 4},
            "certificate_usage",
        ),
        (psk_config(oscore=True), "oscore"),  # OSCORE protects nosec (coap://) accounts only
        ({"server_uri": "coap://h", "security_mode": "nosec", "oscore": "yes"}, "oscore"),
        (psk_config(colour="red"), "colour"),
        (psk_config(server_uri="coaps://h\u0000"), "server_uri"),
    ]
    for body, field in cases:
        answer = await api.put(path, body, expect=400)
        assert error_field(answer) == field, body
        assert answer.body["type"] == "validation_error"
        assert "server_certificate_der" not in answer.body["message"], answer.body["message"]
    for raw in (b"", b"[]", b'{"server_uri": '):
        assert error_field(await api.call("PUT", path, expect=400, data=raw)) == "body"
    await api.get(path, expect=404)
    assert await pool.fetchval("SELECT count(*) FROM bootstrap_configs WHERE scope = $1", endpoint) == 0

    # Scopes that cannot name a configuration: too long for an endpoint name, or the stored form of
    # the default.
    for scope in ("e" * 129, "*"):
        await api.put(f"{CONFIGS}/{quote(scope)}", psk_config(), expect=404)
        await api.get(f"{CONFIGS}/{quote(scope)}", expect=404)
        await api.delete(f"{CONFIGS}/{quote(scope)}", expect=404)


async def test_default_scope(api: Api, pool: asyncpg.Pool, unique: str, no_default: None) -> None:
    """``default`` is stored as ``*``, returned as ``default``, listed first, usable as a filter and as
    ``after``; endpoints without their own configuration are not shown the default by GET."""
    endpoint = f"dflt-{unique}"
    ca = TestCa.create(f"Default CA {unique}")
    body = {
        "server_uri": "coaps://lwm2m.example",
        "security_mode": "certificate",
        "server_certificate": pem(ca.certificate),
    }
    created = await api.put(f"{CONFIGS}/default", body, expect=201)
    assert created.body["scope"] == "default" and created.body["security_mode"] == "certificate"
    assert await pool.fetchval("SELECT etag FROM bootstrap_configs WHERE scope = '*'") == created.body["etag"]
    assert (await api.get(f"{CONFIGS}/default")).body == created.body
    effective = await bootstrap_configs.effective(pool, endpoint)
    assert effective is not None and effective.scope == bootstrap_configs.DEFAULT_SCOPE
    await api.get(f"{CONFIGS}/{endpoint}", expect=404)

    await api.put(f"{CONFIGS}/{endpoint}", psk_config(), expect=201)
    try:
        listed = await api.get(f"{CONFIGS}?scope__eq=default&include=total_count")
        assert [i["scope"] for i in listed.body["data"]] == ["default"] and listed.body["total_count"] == 1
        first = await api.get(f"{CONFIGS}?limit=2")
        assert first.body["data"][0]["scope"] == "default"
        after_default = await api.get(f"{CONFIGS}?limit=1000&after=default")
        scopes = [i["scope"] for i in after_default.body["data"]]
        assert "default" not in scopes and endpoint in scopes
        last = await api.get(f"{CONFIGS}?limit=1000&order=DESC")
        assert last.body["data"][-1]["scope"] == "default"
        assert (await api.get(f"{CONFIGS}?order=DESC&after=default")).body["data"] == []

        replaced = await api.put(
            f"{CONFIGS}/default", psk_config(), headers={"If-Match": created.headers["ETag"]}
        )
        await api.delete(f"{CONFIGS}/default", expect=412, headers={"If-Match": created.headers["ETag"]})
        await api.delete(f"{CONFIGS}/default", headers={"If-Match": replaced.headers["ETag"]})
        await api.get(f"{CONFIGS}/default", expect=404)
        await api.delete(f"{CONFIGS}/default", expect=404)
        effective = await bootstrap_configs.effective(pool, endpoint)
        assert effective is not None and effective.scope == endpoint
    finally:
        await pool.execute("DELETE FROM bootstrap_configs WHERE scope = $1", endpoint)
    targets = await pool.fetch(
        "SELECT method, status, target_id FROM admin_audit WHERE api_key_name = $1 AND path = $2 ORDER BY id",
        f"bs-{unique}",
        f"{CONFIGS}/default",
    )
    assert [(r["method"], r["status"], r["target_id"]) for r in targets] == [
        ("PUT", 201, "*"),
        ("PUT", 200, "*"),
        ("DELETE", 412, "*"),
        ("DELETE", 204, "*"),
        ("DELETE", 404, "*"),
    ]


async def test_configuration_list_paging_and_filters(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """Keyset pages by scope in byte order (both directions), filters, total_count; bad parameters are
    400 naming the parameter."""
    ca = TestCa.create(f"List CA {unique}")
    scopes = [f"bsl-{unique}-{i}" for i in range(5)]
    try:
        for i, scope in enumerate(scopes):
            body = (
                {"server_uri": "coap://lwm2m.example", "security_mode": "nosec"}
                if i % 2
                else {
                    "server_uri": "coaps://lwm2m.example",
                    "security_mode": "est",
                    "server_certificate": pem(ca.certificate),
                }
            )
            await api.put(f"{CONFIGS}/{scope}", body, expect=201)

        for order, expected in (("ASC", scopes), ("DESC", scopes[::-1])):
            walked: list[str] = []
            after: str | None = None
            while True:
                suffix = f"&after={quote(after)}" if after else ""
                page = (await api.get(f"{CONFIGS}?limit=2&order={order}&include=total_count{suffix}")).body
                assert page["limit"] == 2 and page["order"] == order and page["after"] == after
                assert page["total_count"] >= 5 and len(page["data"]) <= 2
                walked += [i["scope"] for i in page["data"]]
                if not page["has_more"]:
                    break
                after = page["data"][-1]["scope"]
            ours = [s for s in walked if s in scopes]
            assert ours == expected and len(walked) == len(set(walked))
            keyed = [s.encode() for s in walked if s != "default"]
            assert keyed == sorted(keyed, reverse=order == "DESC")

        for mode, wanted in (("nosec", scopes[1::2]), ("est", scopes[0::2])):
            data = (await api.get(f"{CONFIGS}?security_mode__eq={mode}&limit=1000")).body["data"]
            assert {i["security_mode"] for i in data} == {mode}
            assert [i["scope"] for i in data if i["scope"] in scopes] == wanted
        one = await api.get(f"{CONFIGS}?scope__eq={scopes[2]}&include=total_count")
        assert [i["scope"] for i in one.body["data"]] == [scopes[2]] and one.body["total_count"] == 1
        none = await api.get(f"{CONFIGS}?scope__eq={scopes[2]}&security_mode__eq=psk&include=total_count")
        assert none.body["data"] == [] and none.body["total_count"] == 0 and none.body["has_more"] is False

        for bad, field in (
            ("security_mode__eq=tls", "security_mode__eq"),
            (f"after={'a' * 129}", "after"),
            (f"scope__eq={'a' * 129}", "scope__eq"),
            ("limit=ten", "limit"),
            ("order=up", "order"),
            ("endpoint__eq=x", "endpoint__eq"),
            ("limit=2&limit=3", "limit"),
        ):
            assert error_field(await api.get(f"{CONFIGS}?{bad}", expect=400)) == field
    finally:
        await pool.execute("DELETE FROM bootstrap_configs WHERE scope = ANY($1::text[])", scopes)


# --- sessions --------------------------------------------------------------------------------------


async def _record(pool: asyncpg.Pool, endpoint: str, method: str, outcome: str, started: dt.datetime) -> int:
    await bootstrap_configs.record(
        pool,
        bootstrap_configs.BootstrapRecord(
            endpoint=endpoint,
            method=method,
            transport="coaps",
            started_at=started,
            ended_at=started + dt.timedelta(milliseconds=250),
            outcome=outcome,
            reason=None if outcome == "success" else "device answered 4.00",
            security_mode="psk" if outcome == "success" else None,
        ),
    )
    return int(await pool.fetchval("SELECT max(id) FROM bootstrap_sessions WHERE endpoint = $1", endpoint))


async def test_bootstrap_sessions(api: Api, pool: asyncpg.Pool, unique: str) -> None:
    """Recorded bootstraps, newest first by default; keyset pages by id both ways, filters, one by id;
    the collection is read-only."""
    endpoint, other = f"bss-{unique}", f"bss2-{unique}"
    start = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    plan = [
        ("request", "success"),
        ("pack", "failed"),
        ("request", "failed"),
        ("pack", "success"),
        ("request", "success"),
    ]
    ids = [
        await _record(pool, endpoint, m, o, start + dt.timedelta(minutes=i)) for i, (m, o) in enumerate(plan)
    ]
    other_id = await _record(pool, other, "pack", "success", start)

    listed = await api.get(f"{SESSIONS}?endpoint__eq={endpoint}&include=total_count")
    assert listed.body["order"] == "DESC" and listed.body["total_count"] == 5 and not listed.body["has_more"]
    assert [i["id"] for i in listed.body["data"]] == [str(i) for i in reversed(ids)]
    newest = listed.body["data"][0]
    assert newest == {
        "id": str(ids[4]),
        "endpoint": endpoint,
        "method": "request",
        "transport": "coaps",
        "security_mode": "psk",
        "outcome": "success",
        "reason": None,
        "started_at": "2024-05-01T12:04:00.000Z",
        "ended_at": "2024-05-01T12:04:00.250Z",
        "object": "bootstrap-session",
    }
    failed = listed.body["data"][2]
    assert failed["reason"] == "device answered 4.00" and failed["security_mode"] is None
    everything = await api.get(f"{SESSIONS}?limit=1000")
    assert everything.body["data"][0]["id"] == str(max(*ids, other_id))

    for order, expected in (("ASC", ids), ("DESC", ids[::-1])):
        walked: list[int] = []
        after: str | None = None
        pages = 0
        while True:
            suffix = f"&after={after}" if after else ""
            page = (await api.get(f"{SESSIONS}?endpoint__eq={endpoint}&limit=2&order={order}{suffix}")).body
            assert page["order"] == order and page["after"] == after
            walked += [int(i["id"]) for i in page["data"]]
            pages += 1
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert walked == expected and pages == 3

    for query, wanted in (
        ("outcome__eq=failed", [ids[2], ids[1]]),
        ("outcome__eq=success", [ids[4], ids[3], ids[0]]),
        ("method__eq=pack", [ids[3], ids[1]]),
        ("method__eq=request&outcome__eq=success", [ids[4], ids[0]]),
    ):
        data = (await api.get(f"{SESSIONS}?endpoint__eq={endpoint}&{query}")).body["data"]
        assert [int(i["id"]) for i in data] == wanted, query
    assert [i["id"] for i in (await api.get(f"{SESSIONS}?endpoint__eq={other}")).body["data"]] == [
        str(other_id)
    ]
    assert (await api.get(f"{SESSIONS}?endpoint__eq=nobody-{unique}")).body["data"] == []

    one = await api.get(f"{SESSIONS}/{ids[4]}")
    assert one.body == newest and "ETag" not in one.headers
    await api.get(f"{SESSIONS}/999999999999", expect=404)
    await api.get(f"{SESSIONS}/abc", expect=404)
    await api.get(f"{SESSIONS}/{'9' * 19}", expect=404)
    for bad, field in (
        ("outcome__eq=ok", "outcome__eq"),
        ("method__eq=bs", "method__eq"),
        ("after=abc", "after"),
        ("order=newest", "order"),
        ("scope__eq=default", "scope__eq"),
    ):
        assert error_field(await api.get(f"{SESSIONS}?{bad}", expect=400)) == field
    for method in ("PUT", "DELETE", "POST"):
        answer = await api.call(method, f"{SESSIONS}/{ids[0]}", expect=405, json_body={})
        assert answer.headers["Allow"] == "GET"
    await api.call("POST", SESSIONS, expect=405, json_body={})
