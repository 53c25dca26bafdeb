"""The LwM2M Bootstrap Interface over loopback: /bs and /bspack against the running server, driven by
simulated devices over DTLS, in every security mode and content format; refusals; EST skg."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import cbor2
import pytest
from aiocoap import Code, Message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_der_private_key, pkcs7

from bootstrap.bootstrap_plan import BootstrapConfig
from bootstrap.bootstrapper import BootstrapQuery, check_identity, parse_query
from bootstrap.coap.wire import code_from_dotted
from bootstrap.errors import BadRequest, Unauthorized
from bootstrap.policy import Requester
from bootstrap.server import BootstrapServer
from bootstrap.store import bootstrap_configs
from device_sim.coap_link import Response
from device_sim.connection import DeviceConnection
from device_sim.device import SimDevice, verify_chain
from device_sim.fleet import FleetOptions, connect, run_fleet
from device_sim.journey import ClientSide, run_journey
from device_sim.lwm2m_client import SimLwm2mClient

from .pki import csr_der, p256

pytestmark = pytest.mark.interop


def coaps_uri(server: BootstrapServer) -> str:
    assert server.dtls is not None
    host, port = server.dtls.address
    return f"coaps://{host}:{port}"


async def ca_certificates(server_uri: str, client: Any) -> list[x509.Certificate]:
    response = await client.request(Message(code=Code.GET, uri=server_uri + "/est/crts")).response
    return list(pkcs7.load_der_pkcs7_certificates(response.payload))


async def configure(pool: asyncpg.Pool, endpoints: list[str], config: BootstrapConfig) -> None:
    for endpoint in endpoints:
        await bootstrap_configs.put(pool, endpoint, config)


def est_config(root: x509.Certificate, mode: str = "est") -> BootstrapConfig:
    uri = "coap://lwm2m.example:5683" if mode == "nosec" else "coaps://lwm2m.example:5684"
    return BootstrapConfig(
        server_uri=uri,
        security_mode=mode,  # type: ignore[arg-type]
        server_certificate_der=root.public_bytes(Encoding.DER) if mode in ("est", "certificate") else None,
        lifetime=3600,
    )


def options(
    server: BootstrapServer, factory: Any, anchors: list[x509.Certificate], prefix: str, **extra: Any
) -> FleetOptions:
    return FleetOptions(
        server=coaps_uri(server),
        factory=factory,
        server_trust=tuple(c for c in anchors if c.issuer == c.subject),
        endpoint_prefix=prefix,
        flow="bootstrap",
        progress=False,
        timeout_s=30,
        **extra,
    )


@pytest.mark.parametrize("mode", ["est", "certificate", "psk", "nosec"])
async def test_every_security_mode_by_pack_and_by_request(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
    mode: str,
) -> None:
    """Half the devices bootstrap by /bspack, half by /bs; each ends with a consistent account (and,
    in est mode, a certificate by EST over the same session); each bootstrap is recorded."""
    chain = await ca_certificates(server_uri, coap_client)
    root = next(c for c in chain if c.issuer == c.subject)
    prefix = f"bs-{mode}-{unique}"
    await configure(pool, [f"{prefix}-{i:07d}" for i in range(6)], est_config(root, mode))
    assert server.dtls is not None and server.dtls.direct is not None
    sent, taken = server.dtls.direct.sent, server.dtls.direct.taken
    report = await run_fleet(options(server, trusted_factory, chain, prefix, devices=6, concurrency=6))
    assert report.failed == 0, dict(report.failures)
    # Every /bs and /bspack request was answered by the direct lane (one message each).
    assert server.dtls.direct.taken - taken >= 6
    # The server's Discover, Deletes, one-message Writes and Finish went through the direct lane.
    assert server.dtls.direct.sent - sent >= 3 * 3
    assert report.extra == {"bootstrapped_by_pack": 3, "bootstrapped_by_request": 3}
    # The server records a /bs session once the device's answer to Finish is in: poll for it.
    for _ in range(200):
        rows = await pool.fetch(
            "SELECT method, outcome, security_mode FROM bootstrap_sessions WHERE endpoint LIKE $1",
            f"{prefix}-%",
        )
        if len(rows) >= 6:
            break
        await asyncio.sleep(0.05)
    assert sorted((r["method"], r["outcome"], r["security_mode"]) for r in rows) == sorted(
        [("pack", "success", mode)] * 3 + [("request", "success", mode)] * 3
    )
    issued = await pool.fetchval(
        "SELECT count(*) FROM issued_certificates WHERE endpoint LIKE $1", f"{prefix}-%"
    )
    assert issued == (6 if mode in ("est", "certificate") else 0)
    if mode == "psk":
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM lwm2m_psk_accounts WHERE endpoint LIKE $1", f"{prefix}-%"
            )
            == 6
        )


@pytest.mark.parametrize("fmt", [None, 110, 112, 11542, 11544])
async def test_every_content_format(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
    fmt: int | None,
) -> None:
    """pct (or its absence: a 1.0 client, TLV) decides the Write format; packs come in the Accept'ed one."""
    chain = await ca_certificates(server_uri, coap_client)
    root = next(c for c in chain if c.issuer == c.subject)
    prefix = f"fmt-{fmt}-{unique}"
    await configure(pool, [f"{prefix}-{i:07d}" for i in range(2)], est_config(root, "psk"))
    report = await run_fleet(
        options(server, trusted_factory, chain, prefix, devices=2, concurrency=2, lwm2m_format=fmt)
    )
    assert report.failed == 0, dict(report.failures)


async def test_ep_must_be_the_authenticated_identity(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """A device authenticated as A asking to bootstrap as B gets 4.00, and no session starts."""
    chain = await ca_certificates(server_uri, coap_client)
    victim = f"victim-{unique}"
    await configure(
        pool, [victim], est_config(chain[-1] if chain[-1].issuer == chain[-1].subject else chain[0])
    )
    opts = options(server, trusted_factory, chain, f"att-{unique}")
    connection = await connect(SimDevice(f"att-{unique}", p256()), opts)
    try:
        for method, path, query in (
            ("POST", ("bs",), (f"ep={victim}", "pct=112")),
            ("GET", ("bspack",), (f"ep={victim}",)),
        ):
            response = await connection.request(method, path, query=query)
            assert response.code == BAD_REQUEST, response
            assert b"not the authenticated identity" in response.payload
    finally:
        connection.close()
    await asyncio.sleep(0.1)
    assert await pool.fetchval("SELECT count(*) FROM bootstrap_sessions WHERE endpoint = $1", victim) == 0


async def test_no_configuration_and_bad_requests(
    server: BootstrapServer,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
    server_uri: str,
    coap_client: Any,
) -> None:
    """No own config and no default: 4.00; missing ep: 4.00; pack in an unknown format: 4.06."""
    assert await pool.fetchval("SELECT count(*) FROM bootstrap_configs WHERE scope = '*'") == 0
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"lost-{unique}"
    opts = options(server, trusted_factory, chain, endpoint)
    connection = await connect(SimDevice(endpoint, p256()), opts)
    try:
        response = await connection.request("POST", ("bs",), query=(f"ep={endpoint}",))
        assert response.code == BAD_REQUEST and b"no bootstrap configuration" in response.payload
        response = await connection.request("POST", ("bs",))
        assert response.code == BAD_REQUEST and b"missing ep" in response.payload
        await configure(pool, [endpoint], est_config(chain[0], "psk"))
        # TLV (11542) cannot carry a pack
        response = await connection.request("GET", ("bspack",), query=(f"ep={endpoint}",), accept=11542)
        assert response.code == code_from_dotted("4.06")
    finally:
        connection.close()


BAD_REQUEST, CHANGED = code_from_dotted("4.00"), code_from_dotted("2.04")


class StallingSide(ClientSide):
    """A device whose first Discover answer takes a while (so a second Bootstrap-Request overlaps)."""

    stalled = False

    async def handle(
        self, method: str, path: str, payload: bytes, content_format: int | None, accept: int | None
    ) -> Response:
        if not self.stalled and method == "GET":
            self.stalled = True
            await asyncio.sleep(1.0)
        return await super().handle(method, path, payload, content_format, accept)


class RefusingFinishSide(ClientSide):
    """A device that answers 4.06 to Bootstrap-Finish (inconsistent configuration)."""

    async def handle(
        self, method: str, path: str, payload: bytes, content_format: int | None, accept: int | None
    ) -> Response:
        if method == "POST" and path == "/bs":
            return "4.06", b"", None
        return await super().handle(method, path, payload, content_format, accept)


async def _session_with_side(
    server: BootstrapServer,
    factory: Any,
    chain: list[x509.Certificate],
    endpoint: str,
    side_class: type[ClientSide],
) -> tuple[DeviceConnection, ClientSide]:
    opts = options(server, factory, chain, endpoint)
    side = side_class(SimLwm2mClient(endpoint=endpoint, bootstrap_server_uri=opts.server))
    return await connect(SimDevice(endpoint, p256()), opts, side.handle), side


async def _outcomes(pool: asyncpg.Pool, endpoint: str, count: int) -> list[asyncpg.Record]:
    for _ in range(200):
        rows = await pool.fetch(
            "SELECT outcome, reason FROM bootstrap_sessions WHERE endpoint = $1 ORDER BY id", endpoint
        )
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} recorded bootstraps for {endpoint}")


async def test_a_new_bootstrap_request_supersedes_the_old_session(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """The first session is cancelled with a recorded reason; the second one completes."""
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"twice-{unique}"
    await configure(pool, [endpoint], est_config(chain[0], "psk"))
    connection, side = await _session_with_side(server, trusted_factory, chain, endpoint, StallingSide)
    try:
        query = (f"ep={endpoint}", "pct=112")
        assert (await connection.request("POST", ("bs",), query=query)).code == CHANGED
        await asyncio.sleep(0.2)
        assert (await connection.request("POST", ("bs",), query=query)).code == CHANGED
        await asyncio.wait_for(side.finished.wait(), 15)
        rows = await _outcomes(pool, endpoint, 2)
    finally:
        connection.close()
    assert [r["outcome"] for r in rows] == ["failed", "success"]
    assert "superseded" in rows[0]["reason"]


async def test_finish_refused_fails_the_session_with_its_reason(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """A 4.06 at Bootstrap-Finish is recorded as a failed bootstrap naming it."""
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"refuse-{unique}"
    await configure(pool, [endpoint], est_config(chain[0], "psk"))
    connection, _ = await _session_with_side(server, trusted_factory, chain, endpoint, RefusingFinishSide)
    try:
        query = (f"ep={endpoint}", "pct=112")
        assert (await connection.request("POST", ("bs",), query=query)).code == CHANGED
        rows = await _outcomes(pool, endpoint, 1)
    finally:
        connection.close()
    assert rows[0]["outcome"] == "failed" and "4.06" in rows[0]["reason"]


class DroppedSide(ClientSide):
    """A device whose session the server drops as soon as the bootstrap starts."""

    server: BootstrapServer

    async def handle(
        self, method: str, path: str, payload: bytes, content_format: int | None, accept: int | None
    ) -> Response:
        assert self.server.dtls is not None
        engine = self.server.dtls.engine
        for session in engine.sessions():
            if session.identity is not None and session.identity.name == self.client.endpoint:
                engine.close_session(session, "dropped by the test")
        return await super().handle(method, path, payload, content_format, accept)


async def test_a_device_stops_waiting_for_finish_when_its_session_ends(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """The server's close_notify ends the device's link, and the device stops waiting for a
    Bootstrap-Finish at once instead of after its timeout."""
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"dropped-{unique}"
    await configure(pool, [endpoint], est_config(chain[0], "psk"))
    DroppedSide.server = server
    connection, side = await _session_with_side(server, trusted_factory, chain, endpoint, DroppedSide)
    connection.link.on_close = side.channel_closed
    try:
        query = (f"ep={endpoint}", "pct=112")
        assert (await connection.request("POST", ("bs",), query=query)).code == CHANGED
        await asyncio.wait_for(side.finished.wait(), 5)
    finally:
        connection.close()
    assert not side.client.finished
    assert side.lost is not None and "close_notify" in str(side.lost)


async def test_est_server_side_key_generation(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """skg answers multipart-core [284 key, 281 certificates]; key and certificate match; audited."""
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"skg-{unique}"
    opts = options(server, trusted_factory, chain, endpoint)
    connection = await connect(SimDevice(endpoint, p256()), opts)
    try:
        response = await connection.request(
            "POST", ("est", "skg"), payload=csr_der(endpoint), content_format=286
        )
        assert response.code == CHANGED, response.payload
        assert response.content_format == 62
        parts = cbor2.loads(response.payload)
        assert parts[0] == 284 and parts[2] == 281
        key = load_der_private_key(parts[1], password=None)
        certificates = pkcs7.load_der_pkcs7_certificates(parts[3])
        leaf = next(c for c in certificates if c.public_key() == key.public_key())
        anchors = [c for c in chain if c.issuer == c.subject]
        verify_chain(leaf, certificates + chain, anchors, now=dt.datetime.now(dt.UTC))
        mismatch = await connection.request(
            "POST", ("est", "skg"), payload=csr_der("someone-else"), content_format=286
        )
        assert mismatch.code == code_from_dotted("4.03")
    finally:
        connection.close()
    assert await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", endpoint) == 1


async def test_journey_checks_catch_a_bad_account(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """A simulated device reports (not ignores) what it cannot use: here a 4.00 for a missing config."""
    chain = await ca_certificates(server_uri, coap_client)
    from device_sim.journey import JourneyError

    with pytest.raises(JourneyError, match=r"bootstrap request 4\.00"):
        await run_journey(
            SimDevice(f"unconfigured-{unique}", p256()),
            options(server, trusted_factory, chain, f"unconfigured-{unique}"),
            chain,
            use_pack=False,
        )


def test_query_parsing_and_identity_rules() -> None:
    """ep is required; pct must be a number; ep must be the authenticated identity unless the
    development flag allows unauthenticated bootstrap."""
    assert parse_query(["ep=dev-1", "pct=112"]) == BootstrapQuery("dev-1", 112)
    assert parse_query(["ep=dev-1"]) == BootstrapQuery("dev-1", None)
    for bad in (["pct=112"], ["ep="], ["ep=x", "pct=json"], ["ep=" + "x" * 129]):
        with pytest.raises(BadRequest):
            parse_query(bad)
    query = BootstrapQuery("dev-1", None)
    assert (
        check_identity(query, Requester(endpoint="dev-1", kind="psk"), allow_unauthenticated=False) == "dev-1"
    )
    with pytest.raises(BadRequest):
        check_identity(query, Requester(endpoint="dev-2", kind="x509"), allow_unauthenticated=True)
    with pytest.raises(Unauthorized):
        check_identity(query, None, allow_unauthenticated=False)
    assert check_identity(query, None, allow_unauthenticated=True) == "dev-1"


async def run_cli(database_url: str, key: str, data_dir: Path, *args: str) -> tuple[int, str, str]:
    """``python -m bootstrap ARGS`` against the test database with master key ``key``:
    (exit code, stdout, stderr)."""
    env = {**os.environ, "LWM2M_BOOTSTRAP_MASTER_KEY": key, "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bootstrap", *args, "--data-dir", str(data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_lwm2m_psk_export_gives_the_lwm2m_server_the_key_the_device_got(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    database_url: str,
    master_key_b64: str,
    tmp_path: Path,
    unique: str,
) -> None:
    """Mode psk: `lwm2m-psk export` hands over exactly the identity and key written to the device,
    into a file only its owner reads, audited; `list` never shows a key; an unknown endpoint or
    another master key fails the command and leaves no file."""
    chain = await ca_certificates(server_uri, coap_client)
    endpoint = f"pskx-{unique}"
    await configure(pool, [endpoint], est_config(chain[0], "psk"))
    journey = await run_journey(
        SimDevice(endpoint, p256()), options(server, trusted_factory, chain, endpoint), chain, use_pack=True
    )
    account = journey.account
    assert account.security_mode == 0 and len(account.secret_key) == 32

    async def cli(*args: str, key: str = master_key_b64) -> tuple[int, str, str]:
        return await run_cli(database_url, key, tmp_path, "lwm2m-psk", *args)

    exported = tmp_path / "lwm2m-psks.jsonl"
    code, out, err = await cli("export", "--endpoint", endpoint, "--output", str(exported))
    assert code == 0, err
    assert out == "" and "exported 1 LwM2M PSK account(s)" in err and account.secret_key.hex() not in err
    assert exported.stat().st_mode & 0o777 == 0o600
    (line,) = [json.loads(text) for text in exported.read_text().splitlines()]
    assert line["endpoint"] == endpoint
    assert line["identity"].encode() == account.public_key_or_identity
    assert bytes.fromhex(line["key_hex"]) == account.secret_key
    assert dt.datetime.fromisoformat(line["provisioned_at"]) <= dt.datetime.now(dt.UTC)
    audit = await pool.fetchrow(
        "SELECT api_key_name, outcome FROM admin_audit WHERE path = 'lwm2m-psk export' AND target_id = $1",
        endpoint,
    )
    assert audit is not None and audit["api_key_name"].startswith("cli:") and audit["outcome"] == "success"

    # To standard output; --since after the bootstrap selects nothing.
    code, out, _ = await cli("export", "--endpoint", endpoint)
    assert code == 0 and json.loads(out) == line
    code, out, _ = await cli("export", "--endpoint", endpoint, "--since", line["provisioned_at"])
    assert code == 0 and json.loads(out) == line  # the newest one imported comes again
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    code, out, err = await cli("export", "--endpoint", endpoint, "--since", later)  # no offset: UTC
    assert code == 0 and out == "" and "exported 0" in err
    code, out, err = await cli("export", "--since", "yesterday")
    assert code == 2 and "not an ISO 8601 time" in err and out == ""

    code, out, _ = await cli("list")
    assert code == 0 and f"{endpoint}\t{line['identity']}\t" in out and line["key_hex"] not in out

    refused = tmp_path / "refused.jsonl"
    before = os.listdir(tmp_path)
    code, out, err = await cli(
        "export", "--endpoint", endpoint, "--endpoint", f"nobody-{unique}", "--output", str(refused)
    )
    assert code == 1 and f"no LwM2M PSK account for nobody-{unique}" in err and out == ""
    code, _, err = await cli("export", "--output", str(tmp_path / "missing" / "f.jsonl"))
    assert code == 1 and "is not a directory" in err
    code, _, err = await cli(
        "export", "--output", "/proc/lwm2m-psks.jsonl"
    )  # a directory nothing can create in
    assert code == 1 and "cannot write /proc/lwm2m-psks.jsonl" in err and "Traceback" not in err
    other_key = base64.b64encode(os.urandom(32)).decode()
    code, out, err = await cli("export", "--endpoint", endpoint, "--output", str(refused), key=other_key)
    assert code != 0 and "does not open with this master key" in err and line["key_hex"] not in out + err
    outcomes = await pool.fetch(
        "SELECT outcome FROM admin_audit WHERE path = 'lwm2m-psk export' AND target_id = $1 ORDER BY id",
        endpoint,
    )
    assert [r["outcome"] for r in outcomes] == ["success"] * 4 + ["failure"]
    assert sorted(os.listdir(tmp_path)) == sorted(before)  # no file, no leftover partial one


def oscore_peer(directory: Path, *, sender: bytes, recipient: bytes, secret: bytes, salt: bytes) -> Any:
    """An aiocoap OSCORE security context (a real RFC 8613 implementation) with these parameters."""
    from aiocoap.oscore import FilesystemSecurityContext

    directory.mkdir()
    settings = {
        "sender-id_hex": sender.hex(), "recipient-id_hex": recipient.hex(), "secret_hex": secret.hex(),
        "salt_hex": salt.hex(), "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256",
    }  # fmt: skip
    (directory / "secret.json").write_text(json.dumps(settings))
    return FilesystemSecurityContext(str(directory))


def oscore_exchange(device: Any, server: Any) -> bytes:
    """The device protects GET /3/0, the server opens it and answers, the device opens the answer."""
    from aiocoap import ACK, CON, CONTENT, GET, Message

    request = Message(code=GET, uri_path=["3", "0"])
    protected, request_id = device.protect(request)
    protected.mid, protected.token, protected.mtype = 1, b"t", CON
    opened, server_request_id = server.unprotect(Message.decode(protected.encode()))
    assert opened.opt.uri_path == ("3", "0")
    answer, _ = server.protect(Message(code=CONTENT, payload=b"device"), server_request_id)
    answer.mid, answer.token, answer.mtype = 1, b"t", ACK
    reply, _ = device.unprotect(Message.decode(answer.encode()), request_id)
    return bytes(reply.payload)


async def test_oscore_contexts_reach_devices_and_their_lwm2m_server(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: Any,
    pool: asyncpg.Pool,
    database_url: str,
    master_key_b64: str,
    tmp_path: Path,
    unique: str,
) -> None:
    """`config set --security-mode nosec --oscore`: each device, by pack or by request, gets its own
    context in /21 linked from /0/x/17, and `lwm2m-oscore export` gives the LwM2M server the same."""

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli(database_url, master_key_b64, tmp_path, *args)

    chain = await ca_certificates(server_uri, coap_client)
    endpoints = [f"osc-{unique}-{i}" for i in range(2)]
    refused = await cli(
        "config", "set", "--endpoint", endpoints[0], "--server-uri", "coaps://lwm2m.example:5684",
        "--security-mode", "psk", "--oscore",
    )  # fmt: skip
    assert refused[0] != 0 and "oscore" in refused[2], refused
    for endpoint in endpoints:
        code, out, err = await cli(
            "config", "set", "--endpoint", endpoint, "--server-uri", "coap://lwm2m.example:5683",
            "--security-mode", "nosec", "--oscore",
        )  # fmt: skip
        assert code == 0 and "nosec with OSCORE" in out, err
    code, out, _ = await cli("config", "list")
    assert code == 0 and f"{endpoints[0]}\tnosec + oscore\tcoap://lwm2m.example:5683\t" in out
    code, out, _ = await cli("config", "show", "--endpoint", endpoints[1])
    assert code == 0 and "oscore:            yes" in out
    given = {}
    for endpoint, use_pack in zip(endpoints, (True, False), strict=True):
        journey = await run_journey(
            SimDevice(endpoint, p256()),
            options(server, trusted_factory, chain, endpoint),
            chain,
            use_pack=use_pack,
        )
        assert journey.account.security_mode == 3 and journey.account.oscore
        given[endpoint] = journey.account.oscore
    assert given[endpoints[0]][1] != given[endpoints[1]][1]  # Sender IDs: the server's lookup key
    for _ in range(100):  # the /bs session is recorded once the device has answered Finish
        modes = await pool.fetch(
            "SELECT method, security_mode FROM bootstrap_sessions WHERE endpoint = ANY($1) ORDER BY method",
            endpoints,
        )
        if len(modes) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(r["method"], r["security_mode"]) for r in modes] == [
        ("pack", "nosec+oscore"),
        ("request", "nosec+oscore"),
    ]

    code, out, err = await cli(
        "lwm2m-oscore", "export", "--endpoint", endpoints[0], "--endpoint", endpoints[1]
    )
    assert code == 0 and "exported 2 LwM2M OSCORE context(s)" in err, err
    for line in map(json.loads, out.splitlines()):
        device = given[line["endpoint"]]
        assert bytes.fromhex(line["master_secret_hex"]) == device[0] and len(device[0]) == 32
        assert bytes.fromhex(line["sender_id_hex"]) == device[1]
        assert bytes.fromhex(line["recipient_id_hex"]) == device[2]
        assert (line["aead_algorithm"], line["hmac_algorithm"]) == (device[3], device[4]) == (10, -10)
        assert bytes.fromhex(line["master_salt_hex"]) == device[5]
    code, out, _ = await cli("lwm2m-oscore", "list")
    assert f"{endpoints[1]}\t{given[endpoints[1]][1].hex()}\t" in out
    assert given[endpoints[1]][0].hex() not in out
