"""coaps:// through the DTLS transport of a real aiocoap server context, against libcoap's clients.

Needs Debian's ``libcoap3-bin`` (``coap-client-openssl``, ``coap-client-gnutls``); the tests fail,
not skip, when it is missing. libcoap's client exits 0 whatever happens and prints the response code
on stderr, so the tests look at what it printed and at the server's own counters.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as resource
import pytest
from cryptography.hazmat.primitives import serialization

from bootstrap.coap.dtls_transport import (
    DtlsEndpointAddress,
    DtlsServer,
    DtlsServerSettings,
    start_dtls_server,
)
from bootstrap.identity import DeviceIdentity
from device_sim.dtls_client import (
    CertificateCredentials,
    ClientCredentials,
    PskCredentials,
    add_dtls_client_transport,
)

from .dtls_helpers import DtlsPki, StaticTrust, make_test_pki

OPENSSL_CLIENT = "coap-client-openssl"
GNUTLS_CLIENT = "coap-client-gnutls"
PSK_IDENTITY = "urn:dev:ops:psk-device"
PSK_KEY = "s3cret-psk-key"
BIG = bytes(range(256)) * 12  # 3072 bytes: three 1024-byte blocks


def client_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's libcoap3-bin (apt-get install libcoap3-bin)")
    return path


class WhoAmI(resource.Resource):  # type: ignore[misc]
    """Echoes the authenticated identity."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        claims = list(request.remote.authenticated_claims)
        assert isinstance(request.remote, DtlsEndpointAddress)
        assert request.remote.is_secure and request.remote.scheme == "coaps"
        identity = claims[0]
        assert isinstance(identity, DeviceIdentity) and len(claims) == 1
        return aiocoap.Message(payload=f"{identity.kind}:{identity.name}".encode())


class Big(resource.Resource):  # type: ignore[misc]
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=BIG)


class Echo(resource.Resource):  # type: ignore[misc]
    """Answers a POST with the length of the body it got; counts how often it was rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.calls += 1
        return aiocoap.Message(code=aiocoap.CHANGED, payload=f"got {len(request.payload)}".encode())


class Reverse(resource.Resource):  # type: ignore[misc]
    """Role reversal, as a bootstrap server does: request the client over the same session."""

    context: Any = None

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        outgoing = aiocoap.Message(code=aiocoap.GET, uri_path=("0", "1"))
        outgoing.remote = request.remote
        response = await asyncio.wait_for(self.context.request(outgoing).response, 10)
        return aiocoap.Message(payload=f"client answered {response.code.dotted}".encode())


@pytest.fixture(scope="module")
def pki() -> DtlsPki:
    return make_test_pki()


@pytest.fixture(scope="module")
def pem_dir(pki: DtlsPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dtls-pki")
    for name in ("device", "rogue_device", "expired_device", "future_device"):
        getattr(pki, name).write_pem(directory, name)
    (directory / "server_ca.crt").write_bytes(
        pki.server_ca.certificate.public_bytes(serialization.Encoding.PEM)
    )
    return directory


class Running:
    def __init__(self, context: Any, dtls: DtlsServer, echo: Echo) -> None:
        self.context = context
        self.dtls = dtls
        self.echo = echo

    @property
    def uri(self) -> str:
        host, port = self.dtls.address
        return f"coaps://{host}:{port}"


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server(pki: DtlsPki) -> AsyncIterator[StartServer]:
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        site = resource.Site()
        site.add_resource(["whoami"], WhoAmI())
        site.add_resource(["big"], Big())
        echo = Echo()
        site.add_resource(["echo"], echo)
        reverse = Reverse()
        site.add_resource(["reverse"], reverse)
        context = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", 0), transports=["udp6"]
        )
        reverse.context = context
        trust = StaticTrust(cas=(pki.device_ca.certificate,), psks={PSK_IDENTITY.encode(): PSK_KEY.encode()})
        overrides.setdefault("bind", ("127.0.0.1", 0))
        settings = DtlsServerSettings(
            certificate_chain=(pki.server.certificate,),
            private_key=pki.server.key,
            **overrides,
        )
        dtls = await start_dtls_server(context, settings, trust)
        running = Running(context, dtls, echo)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.dtls.shutdown()
        await running.context.shutdown()


_LOG_LINE = re.compile(r"^[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d\.\d+ ")


async def coap_client(binary: str, *args: str, limit: float = 30.0) -> tuple[str, str]:
    """Run a libcoap client; return (response payload, everything it logged).

    libcoap writes warnings to stdout next to the payload (and errors and response codes to
    stderr); log lines start with a timestamp.
    """
    process = await asyncio.create_subprocess_exec(
        client_binary(binary), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), limit)
    lines = out.decode(errors="replace").splitlines()
    payload = "\n".join(line for line in lines if not _LOG_LINE.match(line))
    logged = "\n".join(line for line in lines if _LOG_LINE.match(line)) + "\n" + err.decode(errors="replace")
    return payload, logged


def cert_args(pem_dir: Path, device: str) -> list[str]:
    return [
        "-c",
        str(pem_dir / f"{device}.crt"),
        "-j",
        str(pem_dir / f"{device}.key"),
        "-C",
        str(pem_dir / "server_ca.crt"),
    ]


def psk_args(key: str = PSK_KEY) -> list[str]:
    return ["-u", PSK_IDENTITY, "-k", key]


async def wait_for(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


# --- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [OPENSSL_CLIENT, GNUTLS_CLIENT])
@pytest.mark.interop
async def test_certificate_mode_identity(start_server: StartServer, pem_dir: Path, binary: str) -> None:
    server = await start_server()
    out, err = await coap_client(binary, "-B", "10", *cert_args(pem_dir, "device"), server.uri + "/whoami")
    assert out == "x509:urn:dev:ops:good-device", err
    assert server.dtls.stats.handshakes_completed == 1
    # the client sends close_notify on exit
    await wait_for(lambda: server.dtls.session_count == 0)


@pytest.mark.parametrize("binary", [OPENSSL_CLIENT, GNUTLS_CLIENT])
@pytest.mark.interop
async def test_psk_mode_identity(start_server: StartServer, binary: str) -> None:
    server = await start_server()
    out, err = await coap_client(binary, "-B", "10", *psk_args(), server.uri + "/whoami")
    assert out == f"psk:{PSK_IDENTITY}", err


def rmem_max() -> int:
    """The largest SO_RCVBUF an unprivileged request gets (net.core.rmem_max)."""
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def test_the_socket_gets_the_receive_buffer_asked_for(start_server: StartServer) -> None:
    """Every device shares one socket; its buffer absorbs bursts (Linux reports double the size
    it grants, and caps requests at net.core.rmem_max)."""
    cap = rmem_max()
    small = await start_server(receive_buffer=min(128 * 1024, cap))
    large = await start_server(receive_buffer=cap)
    sizes = [
        server.dtls._interface._transport.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF
        )
        for server in (small, large)
    ]
    assert sizes == [2 * min(128 * 1024, cap), 2 * cap]


@pytest.mark.interop
async def test_blockwise_response(start_server: StartServer, pem_dir: Path, tmp_path: Path) -> None:
    server = await start_server()
    target = tmp_path / "big.bin"
    _, err = await coap_client(
        OPENSSL_CLIENT, "-B", "10", *cert_args(pem_dir, "device"), "-o", str(target), server.uri + "/big"
    )
    assert target.read_bytes() == BIG, err


@pytest.mark.interop
async def test_blockwise_request(start_server: StartServer, pem_dir: Path, tmp_path: Path) -> None:
    server = await start_server()
    body = tmp_path / "body.bin"
    body.write_bytes(b"C" * 700)
    out, err = await coap_client(
        OPENSSL_CLIENT,
        "-B",
        "10",
        *psk_args(),
        "-m",
        "post",
        "-b",
        "64",
        "-f",
        str(body),
        server.uri + "/echo",
    )
    assert out == "got 700", err
    assert server.echo.calls == 1


@pytest.mark.parametrize("binary", [OPENSSL_CLIENT, GNUTLS_CLIENT])
@pytest.mark.interop
async def test_server_requests_the_client_over_the_same_session(
    start_server: StartServer, pem_dir: Path, binary: str
) -> None:
    server = await start_server()
    out, err = await coap_client(binary, "-B", "15", *cert_args(pem_dir, "device"), server.uri + "/reverse")
    # libcoap's client serves no resources, so 4.04 proves the request reached it and came back
    assert out == "client answered 4.04", err


@pytest.mark.interop
async def test_many_sequential_clients(start_server: StartServer, pem_dir: Path) -> None:
    server = await start_server()
    for i in range(5):
        args = cert_args(pem_dir, "device") if i % 2 else psk_args()
        out, _ = await coap_client(OPENSSL_CLIENT, "-B", "10", *args, server.uri + "/whoami")
        assert out.endswith("device")
    assert server.dtls.stats.handshakes_completed == 5


@pytest.mark.interop
@pytest.mark.parametrize("lost", ["1", "2,3", "3", "4"])
async def test_lost_client_datagrams_are_recovered(
    start_server: StartServer, pem_dir: Path, lost: str
) -> None:
    # libcoap's -l drops the client's n-th datagrams: 1 ClientHello, 2 ClientHello with cookie,
    # 3 the client's Certificate...Finished flight, 4 the CoAP request
    server = await start_server()
    out, logged = await coap_client(
        OPENSSL_CLIENT, "-B", "20", "-l", lost, *cert_args(pem_dir, "device"), server.uri + "/whoami"
    )
    assert out == "x509:urn:dev:ops:good-device", logged
    assert server.dtls.stats.handshakes_completed == 1


@pytest.mark.interop
async def test_ipv6(start_server: StartServer) -> None:
    server = await start_server(bind=("::1", 0))
    _, port = server.dtls.address
    out, logged = await coap_client(OPENSSL_CLIENT, "-B", "10", *psk_args(), f"coaps://[::1]:{port}/whoami")
    assert out == f"psk:{PSK_IDENTITY}", logged


# --- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "reason", "alert"),
    [
        ("rogue_device", "unable to get local issuer certificate", "unknown ca"),
        ("expired_device", "certificate has expired", "certificate expired"),
        ("future_device", "certificate is not yet valid", "bad certificate"),
    ],
)
@pytest.mark.interop
async def test_bad_certificates_are_refused(
    start_server: StartServer, pem_dir: Path, device: str, reason: str, alert: str
) -> None:
    server = await start_server()
    out, err = await coap_client(
        OPENSSL_CLIENT, "-B", "5", *cert_args(pem_dir, device), server.uri + "/whoami"
    )
    assert out == ""
    assert alert in err.lower()
    assert server.dtls.stats.handshakes_completed == 0
    assert server.dtls.stats.handshakes_failed == 1
    assert any(reason in r for r in server.dtls.stats.failure_reasons)
    assert server.dtls.session_count == 0


@pytest.mark.interop
async def test_wrong_psk_is_refused(start_server: StartServer) -> None:
    server = await start_server(handshake_timeout=2.0)
    out, _ = await coap_client(OPENSSL_CLIENT, "-B", "3", *psk_args("not-the-key"), server.uri + "/whoami")
    assert out == ""
    assert server.dtls.stats.handshakes_completed == 0
    # DTLS drops the undecryptable Finished silently; the half-open handshake expires
    await wait_for(lambda: server.dtls.stats.handshakes_failed == 1, limit=10)
    assert server.dtls.session_count == 0
    assert "handshake timeout" in server.dtls.stats.failure_reasons


@pytest.mark.interop
async def test_unknown_psk_identity_is_refused(start_server: StartServer) -> None:
    server = await start_server()
    out, logged = await coap_client(
        OPENSSL_CLIENT, "-B", "3", "-u", "urn:dev:ops:stranger", "-k", PSK_KEY, server.uri + "/whoami"
    )
    assert out == ""
    assert "unknown psk identity" in logged.lower()
    await wait_for(lambda: server.dtls.stats.handshakes_failed == 1)
    assert "unknown PSK identity 'urn:dev:ops:stranger'" in server.dtls.stats.failure_reasons


# --- the device simulator's aiocoap DTLS client against the server (no libcoap needed) -------------


class DeviceObject(resource.Resource):  # type: ignore[misc]
    """What a device serves to the bootstrap server."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=b"device-data")


@pytest.fixture
async def device_context() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    contexts: list[Any] = []

    async def make(credentials: ClientCredentials, **kw: Any) -> Any:
        context = await aiocoap.Context.create_client_context(transports=["udp6"])
        site = resource.Site()
        site.add_resource(["0", "1"], DeviceObject())
        context.serversite = site
        await add_dtls_client_transport(context, credentials, **kw)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.shutdown()


def device_credentials(pki: DtlsPki) -> CertificateCredentials:
    return CertificateCredentials(
        certificate_chain=(pki.device.certificate,),
        private_key=pki.device.key,
        trusted_cas=(pki.server_ca.certificate,),
    )


async def get(context: Any, uri: str, **kw: Any) -> aiocoap.Message:
    request = aiocoap.Message(code=aiocoap.GET, uri=uri, **kw)
    response: aiocoap.Message = await asyncio.wait_for(context.request(request).response, 15)
    return response


@pytest.mark.parametrize(
    ("mode", "suite"),
    [("x509", "ECDHE-ECDSA-AES128-CCM8"), ("psk", "PSK-AES128-CCM8"), ("psk", "PSK-AES128-GCM-SHA256")],
)
async def test_simulator_client_identity(
    start_server: StartServer, device_context: Any, pki: DtlsPki, mode: str, suite: str
) -> None:
    server = await start_server()
    credentials: ClientCredentials = (
        device_credentials(pki)
        if mode == "x509"
        else PskCredentials(identity=PSK_IDENTITY.encode(), key=PSK_KEY.encode())
    )
    context = await device_context(credentials, cipher_suites=(suite,))
    response = await get(context, server.uri + "/whoami")
    expected = "x509:urn:dev:ops:good-device" if mode == "x509" else f"psk:{PSK_IDENTITY}"
    assert response.payload.decode() == expected
    assert response.remote.cipher == suite
    (session,) = server.dtls.engine.sessions()
    assert session.cipher == suite


async def test_simulator_role_reversal_and_blockwise(
    start_server: StartServer, device_context: Any, pki: DtlsPki
) -> None:
    server = await start_server()
    context = await device_context(device_credentials(pki))
    response = await get(context, server.uri + "/reverse")
    assert response.payload == b"client answered 2.05"
    response = await get(context, server.uri + "/big")
    assert response.payload == BIG
    post = aiocoap.Message(code=aiocoap.POST, uri=server.uri + "/echo", payload=b"E" * 5000)
    response = await asyncio.wait_for(context.request(post).response, 15)
    assert response.payload == b"got 5000"
    assert server.echo.calls == 1
    assert server.dtls.stats.handshakes_completed == 1  # all of it over one session


async def test_idle_session_closes_and_the_client_reconnects(
    start_server: StartServer, device_context: Any, pki: DtlsPki
) -> None:
    server = await start_server(idle_timeout=0.5)
    context = await device_context(device_credentials(pki))
    assert (await get(context, server.uri + "/whoami")).code == aiocoap.CONTENT
    await wait_for(lambda: server.dtls.session_count == 0)
    assert server.dtls.stats.sessions_idle_closed == 1
    await asyncio.sleep(0.1)  # the client processes the close_notify
    assert (await get(context, server.uri + "/whoami")).code == aiocoap.CONTENT
    assert server.dtls.stats.handshakes_completed == 2


async def test_server_request_to_a_closed_session_fails(
    start_server: StartServer, device_context: Any, pki: DtlsPki
) -> None:
    server = await start_server()
    context = await device_context(device_credentials(pki))
    assert (await get(context, server.uri + "/whoami")).code == aiocoap.CONTENT
    (session,) = server.dtls.engine.sessions()
    remote = session.app_data
    assert isinstance(remote, DtlsEndpointAddress)
    outgoing = aiocoap.Message(code=aiocoap.GET, uri_path=("0", "1"))
    outgoing.remote = remote
    pending = server.context.request(outgoing)
    server.dtls.engine.close_session(session, "test")
    with pytest.raises(aiocoap.error.NetworkError):
        await asyncio.wait_for(pending.response, 10)


async def test_concurrent_devices(start_server: StartServer, device_context: Any, pki: DtlsPki) -> None:
    server = await start_server()
    devices = 25
    contexts = [
        await device_context(
            device_credentials(pki)
            if i % 2
            else PskCredentials(identity=PSK_IDENTITY.encode(), key=PSK_KEY.encode())
        )
        for i in range(devices)
    ]
    responses = await asyncio.gather(*(get(c, server.uri + "/whoami") for c in contexts))
    assert sorted(r.payload.decode() for r in responses) == sorted(
        ["x509:urn:dev:ops:good-device"] * (devices // 2) + [f"psk:{PSK_IDENTITY}"] * (devices - devices // 2)
    )
    assert server.dtls.session_count == devices
    assert server.dtls.stats.hello_verify_requests == devices
