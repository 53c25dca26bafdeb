"""EST over DTLS and TLS against the full server: identity from the handshake, refusals, sren, fleets.

Real peers: Debian's ``coap-client-openssl`` (certificate and PSK mode, ``coaps://`` and
``coaps+tcp://``) and the simulator's pyOpenSSL DTLS client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiocoap import Code, Context, Message
from aiocoap.optiontypes import BlockOption
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from bootstrap.coap.wire import WireMessage
from bootstrap.secretbox import SecretBox
from bootstrap.server import BootstrapServer
from bootstrap.store import devices
from device_sim.connection import DeviceConnection
from device_sim.device import SimDevice
from device_sim.dtls_client import CertificateCredentials, PskCredentials, add_dtls_client_transport
from device_sim.fleet import EstClient, FleetOptions, run_fleet
from device_sim.provisioning import FactoryCa

from .pki import p256

pytestmark = pytest.mark.interop
OPENSSL_CLIENT = "coap-client-openssl"


def coaps_uri(server: BootstrapServer) -> str:
    assert server.dtls is not None
    host, port = server.dtls.address
    return f"coaps://{host}:{port}"


def coaps_tcp_uri(server: BootstrapServer) -> str:
    assert server.settings.coaps_tcp_bind is not None
    host, port = server.settings.coaps_tcp_bind
    return f"coaps+tcp://{host}:{port}"


async def builtin_anchors(server_uri: str, client: Any) -> list[x509.Certificate]:
    response = await client.request(Message(code=Code.GET, uri=server_uri + "/est/crts")).response
    return [c for c in pkcs7.load_der_pkcs7_certificates(response.payload) if c.issuer == c.subject]


def libcoap(name: str = OPENSSL_CLIENT) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's libcoap3-bin")
    return path


async def run_client(*args: str, limit: float = 40.0) -> str:
    """Run coap-client; return what it logged (it exits 0 even on failures)."""
    process = await asyncio.create_subprocess_exec(
        libcoap(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    return (stdout + stderr).decode(errors="replace")


def write_device_files(
    directory: Path, factory: FactoryCa, endpoint: str, *, expired: bool = False
) -> tuple[SimDevice, list[str]]:
    """A device key + factory certificate on disk, and the coap-client arguments using them."""
    device = SimDevice(endpoint, p256())
    not_after = dt.datetime.now(dt.UTC) - dt.timedelta(days=1) if expired else None
    certificate = factory.device_certificate(endpoint, device.key.public_key(), not_after=not_after)
    (directory / f"{endpoint}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{endpoint}.key").write_bytes(
        device.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / f"{endpoint}.csr").write_bytes(device.csr_der())
    return device, ["-c", str(directory / f"{endpoint}.crt"), "-j", str(directory / f"{endpoint}.key")]


async def issued_count(pool: asyncpg.Pool, endpoint: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", endpoint))


@pytest.mark.parametrize("block_size", [None, 64])
async def test_libcoap_enrolls_over_dtls_with_a_factory_certificate(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    tmp_path: Path,
    unique: str,
    block_size: int | None,
) -> None:
    """coap-client-openssl, certificate mode: EST sen end to end, the certificate verifies.

    In one message the direct lane answers; with 64-byte blocks the CSR arrives in Block1 (aiocoap
    reassembles it) and the answer leaves in Block2 slices that aiocoap serves: the lane takes none.
    """
    assert server.dtls is not None and server.dtls.direct is not None
    endpoint = f"dtls-cert-{block_size}-{unique}"
    device, args = write_device_files(tmp_path, trusted_factory, endpoint)
    out = tmp_path / "out.p7"
    blocks = ["-b", str(block_size)] if block_size else []
    taken = server.dtls.direct.taken
    log = await run_client(
        "-B", "20", *blocks, *args, "-m", "post", "-t", "286", "-A", "281",
        "-f", str(tmp_path / f"{endpoint}.csr"), "-o", str(out), coaps_uri(server) + "/est/sen",
    )  # fmt: skip
    assert out.exists() and out.stat().st_size > 0, log
    device.check_enrolled(
        out.read_bytes(), 281, await builtin_anchors(server_uri, coap_client), now=dt.datetime.now(dt.UTC)
    )
    assert await issued_count(pool, endpoint) == 1
    assert (server.dtls.direct.taken > taken) is (block_size is None)


async def test_libcoap_enrolls_over_dtls_with_a_psk(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    pool: asyncpg.Pool,
    box: SecretBox,
    tmp_path: Path,
    unique: str,
) -> None:
    """coap-client-openssl, PSK mode: the PSK identity maps to its endpoint, whose CSR is signed."""
    endpoint, identity, key = f"dtls-psk-{unique}", f"id-{unique}", f"psk-key-{unique}"[:24].ljust(16, "x")
    await devices.put(pool, box, devices.PskCredential(endpoint, identity, key.encode()))
    device = SimDevice(endpoint, p256())
    (tmp_path / "csr.der").write_bytes(device.csr_der())
    out = tmp_path / "out.p7"
    log = await run_client(
        "-B", "20", "-u", identity, "-k", key, "-m", "post", "-t", "286", "-f", str(tmp_path / "csr.der"),
        "-o", str(out), coaps_uri(server) + "/est/sen",
    )  # fmt: skip
    assert out.exists() and out.stat().st_size > 0, log
    device.check_enrolled(
        out.read_bytes(), 281, await builtin_anchors(server_uri, coap_client), now=dt.datetime.now(dt.UTC)
    )
    assert await issued_count(pool, endpoint) == 1


async def test_libcoap_enrolls_over_coaps_tcp(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    tmp_path: Path,
    unique: str,
) -> None:
    """coaps+tcp (RFC 8323) with a client certificate: same trust store and identity rule."""
    endpoint = f"tls-{unique}"
    device, args = write_device_files(tmp_path, trusted_factory, endpoint)
    out = tmp_path / "out.p7"
    log = await run_client(
        "-B", "20", *args, "-m", "post", "-t", "286", "-f", str(tmp_path / f"{endpoint}.csr"), "-o", str(out),
        coaps_tcp_uri(server) + "/est/sen",
    )  # fmt: skip
    assert out.exists() and out.stat().st_size > 0, log
    device.check_enrolled(
        out.read_bytes(), 281, await builtin_anchors(server_uri, coap_client), now=dt.datetime.now(dt.UTC)
    )
    assert await issued_count(pool, endpoint) == 1


async def test_cn_mismatch_is_403_and_stores_nothing(
    server: BootstrapServer, trusted_factory: FactoryCa, pool: asyncpg.Pool, tmp_path: Path, unique: str
) -> None:
    """A device authenticated as A asking a certificate for B gets 4.03."""
    endpoint = f"honest-{unique}"
    _, args = write_device_files(tmp_path, trusted_factory, endpoint)
    other = SimDevice(f"victim-{unique}", p256())
    (tmp_path / "other.csr").write_bytes(other.csr_der())
    log = await run_client(
        "-B",
        "20",
        *args,
        "-m",
        "post",
        "-t",
        "286",
        "-f",
        str(tmp_path / "other.csr"),
        coaps_uri(server) + "/est/sen",
    )
    assert "4.03" in log, log
    assert await issued_count(pool, other.endpoint) == 0 and await issued_count(pool, endpoint) == 0


@pytest.mark.parametrize("case", ["untrusted CA", "expired device certificate"])
async def test_refused_handshakes(
    server: BootstrapServer,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    tmp_path: Path,
    unique: str,
    case: str,
) -> None:
    """An untrusted manufacturer or an expired factory certificate never gets past the handshake."""
    endpoint = f"refused-{unique}"
    if case == "untrusted CA":
        rogue = FactoryCa.load_or_create(tmp_path / "rogue")
        _, args = write_device_files(tmp_path, rogue, endpoint)
    else:
        _, args = write_device_files(tmp_path, trusted_factory, endpoint, expired=True)
    assert server.dtls is not None
    completed = server.dtls.stats.handshakes_completed
    log = await run_client(
        "-B",
        "5",
        *args,
        "-m",
        "post",
        "-t",
        "286",
        "-f",
        str(tmp_path / f"{endpoint}.csr"),
        coaps_uri(server) + "/est/sen",
    )
    assert "2.04" not in log
    assert server.dtls.stats.handshakes_completed == completed
    assert await issued_count(pool, endpoint) == 0


async def test_wrong_psk_is_refused(
    server: BootstrapServer, pool: asyncpg.Pool, box: SecretBox, tmp_path: Path, unique: str
) -> None:
    """A device with the right identity and the wrong key gets no session and no certificate."""
    endpoint, identity = f"wrongpsk-{unique}", f"wid-{unique}"
    await devices.put(pool, box, devices.PskCredential(endpoint, identity, b"the-right-key-16"))
    (tmp_path / "csr.der").write_bytes(SimDevice(endpoint, p256()).csr_der())
    log = await run_client(
        "-B", "4", "-u", identity, "-k", "the-WRONG-key-16", "-m", "post", "-t", "286",
        "-f", str(tmp_path / "csr.der"),
        coaps_uri(server) + "/est/sen",
    )  # fmt: skip
    assert "2.04" not in log
    assert await issued_count(pool, endpoint) == 0


async def test_cookieless_client_hello_flood_creates_no_state(server: BootstrapServer) -> None:
    """Spoofable ClientHellos without a cookie get a HelloVerifyRequest and leave no session behind."""
    assert server.dtls is not None
    before = server.dtls.session_count
    host, port = server.dtls.address
    # A minimal DTLS 1.2 ClientHello record (RFC 6347 §4.2.1), empty cookie.
    body = b"\xfe\xfd" + os.urandom(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\xae" + b"\x01\x00"
    handshake = (
        b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big")
    )
    record = (
        b"\x16\xfe\xff" + b"\x00\x00" + b"\x00\x00\x00\x00\x00\x00" + len(handshake + body).to_bytes(2, "big")
    )
    datagram = record + handshake + body
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
    try:
        for sender in senders:
            sender.setblocking(False)
            for _ in range(50):
                sender.sendto(datagram, (host, port))
        await asyncio.sleep(0.5)
        assert server.dtls.session_count == before
        answered = 0
        for sender in senders:
            try:
                while sender.recv(2048)[:1] == b"\x16":
                    answered += 1
            except BlockingIOError:
                pass
        assert answered > 0, "the server should answer with HelloVerifyRequests"
    finally:
        for sender in senders:
            sender.close()


async def _enroll_with(
    connection: DeviceConnection, server: BootstrapServer, device: SimDevice, op: str
) -> WireMessage:
    options = FleetOptions(server=coaps_uri(server))
    return await EstClient(connection, options).enroll(device.csr_der(), operation=op)


async def test_sren_renews_certificates_this_server_issued(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """sen with the factory certificate, then sren with the issued one; factory certs cannot sren,
    and a revoked certificate cannot either."""
    anchors = await builtin_anchors(server_uri, coap_client)
    device = SimDevice(f"renew-{unique}", p256())
    factory_cert = trusted_factory.device_certificate(device.endpoint, device.key.public_key())
    factory_connection = await DeviceConnection.open(
        coaps_uri(server), CertificateCredentials(certificate_chain=(factory_cert,), private_key=device.key)
    )
    try:
        refused = await _enroll_with(factory_connection, server, device, "sren")
        assert refused.code == Code.FORBIDDEN and b"not issued by this server" in refused.payload
        first = await _enroll_with(factory_connection, server, device, "sen")
        assert first.code == Code.CHANGED
    finally:
        factory_connection.close()
    issued = device.check_enrolled(first.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
    chain = tuple(c for c in pkcs7.load_der_pkcs7_certificates(first.payload) if c != issued)

    operational = await DeviceConnection.open(
        coaps_uri(server), CertificateCredentials(certificate_chain=(issued, *chain), private_key=device.key)
    )
    try:
        renewed = await _enroll_with(operational, server, device, "sren")
        assert renewed.code == Code.CHANGED, renewed.payload
        new = device.check_enrolled(renewed.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
        assert new.serial_number != issued.serial_number
        await pool.execute(
            "UPDATE issued_certificates SET revoked_at = now(), revocation_reason = 'superseded'"
            " WHERE serial_number = $1",
            format(issued.serial_number, "X"),
        )
        again = await _enroll_with(operational, server, device, "sren")
        assert again.code == Code.FORBIDDEN and b"revoked" in again.payload
    finally:
        operational.close()
    assert await issued_count(pool, device.endpoint) == 2


async def test_psk_clients_cannot_sren(
    server: BootstrapServer, pool: asyncpg.Pool, box: SecretBox, unique: str
) -> None:
    """Re-enrollment is for certificate holders."""
    endpoint, identity, key = f"pskren-{unique}", f"pskren-{unique}", os.urandom(16)
    await devices.put(pool, box, devices.PskCredential(endpoint, identity, key))
    connection = await DeviceConnection.open(
        coaps_uri(server), PskCredentials(identity=identity.encode(), key=key)
    )
    try:
        response = await _enroll_with(connection, server, SimDevice(endpoint, p256()), "sren")
    finally:
        connection.close()
    assert response.code == Code.FORBIDDEN and b"PSK" in response.payload


async def test_two_hundred_concurrent_devices_over_dtls(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """200 simulated devices handshake and enroll at once over DTLS; every chain verifies."""
    anchors = tuple(await builtin_anchors(server_uri, coap_client))
    options = FleetOptions(
        server=coaps_uri(server),
        devices=200,
        concurrency=200,
        factory=trusted_factory,
        server_trust=anchors,
        endpoint_prefix=f"fleet-{unique}",
        progress=False,
        timeout_s=60,
    )
    report = await run_fleet(options)
    assert report.failed == 0, dict(report.failures)
    assert report.succeeded == 200
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM issued_certificates WHERE endpoint LIKE $1", f"fleet-{unique}-%"
        )
        == 200
    )


async def test_trust_and_device_commands_reach_the_running_server(
    server: BootstrapServer, database_url: str, master_key_b64: str, tmp_path: Path, unique: str
) -> None:
    """trust add/list/remove and device add/remove change what running servers accept, live."""
    import sys

    env = {
        **os.environ,
        "LWM2M_BOOTSTRAP_MASTER_KEY": master_key_b64,
        "DATABASE_URL": database_url,
        "LWM2M_BOOTSTRAP_LOG_LEVEL": "warning",
    }

    async def cli(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bootstrap", *args, "--data-dir", str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, output.decode()

    assert server.trust is not None
    maker = FactoryCa.load_or_create(tmp_path / "maker")
    pem = tmp_path / "maker.pem"
    pem.write_bytes(maker.certificate.public_bytes(serialization.Encoding.PEM))
    code, out = await cli("trust", "add", str(pem), "--name", f"maker-{unique}")
    assert code == 0 and "trusted" in out, out
    code, out = await cli("trust", "list", "--service", "bootstrap")
    assert f"maker-{unique}" in out
    for _ in range(100):
        if maker.certificate in server.trust.trusted_cas():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("trust add did not reach the running server")
    code, out = await cli("trust", "remove", f"maker-{unique}")
    assert code == 0, out
    for _ in range(100):
        if maker.certificate not in server.trust.trusted_cas():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("trust remove did not reach the running server")

    code, out = await cli(
        "device", "add", f"ep-{unique}", "--psk-identity", f"cli-{unique}", "--psk-key", "zz"
    )
    assert code == 1 and "hexadecimal" in out, out
    code, out = await cli(
        "device", "add", f"ep-{unique}", "--psk-identity", f"cli-{unique}", "--psk-key", "ab" * 16
    )
    assert code == 0, out
    await server.trust.prefetch_psk(f"cli-{unique}".encode())  # what a handshake does first
    assert server.trust.psk_for_identity(f"cli-{unique}".encode()) == bytes.fromhex("ab" * 16)
    code, out = await cli("device", "list")
    assert f"ep-{unique}\tcli-{unique}" in out and "ab" * 16 not in out
    assert (await cli("device", "remove", f"ep-{unique}"))[0] == 0


async def test_coap_off_binds_no_plain_coap_port(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    """--coap off really leaves 5683 (and every plain CoAP port) unbound; DTLS still serves."""
    import psutil

    from .conftest import make_settings

    settings = make_settings(database_url, master_key_b64, tmp_path, coap_bind=None, admin_bind=None)
    instance = BootstrapServer(settings)
    await instance.start()
    try:
        ports = {c.laddr.port for c in psutil.Process().net_connections(kind="inet") if c.laddr}
        assert 5683 not in ports
        assert instance.dtls is not None and instance.dtls.address[1] in ports
    finally:
        await instance.stop(drain_seconds=1)


async def test_a_server_with_every_coap_transport_off_starts_and_stops(
    database_url: str, master_key_b64: str, tmp_path: Path
) -> None:
    """An admin-only instance (no CoAP at all) stops cleanly: aiocoap's own shutdown refuses a
    context without transports, so the server must not call it."""
    from .conftest import make_settings

    settings = make_settings(
        database_url,
        master_key_b64,
        tmp_path,
        coap_bind=None,
        coaps_bind=None,
        coaps_tcp_bind=None,
        admin_bind=None,
    )
    instance = BootstrapServer(settings)
    await instance.start()
    assert instance.dtls is None
    await instance.stop(drain_seconds=1)
    assert instance.coap is None and instance.database is None


async def test_est_over_dtls_in_small_block2_slices_takes_the_direct_lane(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    trusted_factory: FactoryCa,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    """A DTLS client asking for 64-byte Block2 slices of its enrollment answer: the direct lane
    answers, slices the certificate chain, serves every follow-up from the session without a second
    enrollment, and the certificate verifies."""
    assert server.dtls is not None and server.dtls.direct is not None
    anchors = await builtin_anchors(server_uri, coap_client)
    device = SimDevice(f"lane-{unique}", p256())
    certificate = trusted_factory.device_certificate(device.endpoint, device.key.public_key())
    context = Context(loop=asyncio.get_running_loop(), serversite=None)
    await add_dtls_client_transport(
        context, CertificateCredentials(certificate_chain=(certificate,), private_key=device.key)
    )
    taken = server.dtls.direct.taken
    try:
        request = Message(
            code=Code.POST, uri=coaps_uri(server) + "/.well-known/est/sen", payload=device.csr_der()
        )
        request.opt.content_format = 286
        request.opt.block2 = BlockOption.BlockwiseTuple(0, False, 2)
        response = await asyncio.wait_for(context.request(request).response, 30)
    finally:
        await context.shutdown()
    assert response.code == Code.CHANGED, response.payload
    assert len(response.payload) > 64 * 8
    device.check_enrolled(response.payload, 281, anchors, now=dt.datetime.now(dt.UTC))
    assert server.dtls.direct.taken - taken >= len(response.payload) // 64
    assert await issued_count(pool, device.endpoint) == 1


async def test_devices_pin_the_certificate_ca_server_certificate_prints(
    database_url: str, master_key_b64: str, tmp_path: Path, unique: str
) -> None:
    """``ca server-certificate`` issues the server's certificate before the server first runs, and
    the server then presents it: simulated devices that pin it (LwM2M certificate usage 3) enroll;
    devices that pin another certificate stop after the handshake, before sending anything."""
    import json
    import sys

    from .conftest import make_settings

    name = f"bs-{unique}.example"
    env = {
        **os.environ,
        "LWM2M_BOOTSTRAP_MASTER_KEY": master_key_b64,
        "DATABASE_URL": database_url,
        "LWM2M_BOOTSTRAP_LOG_LEVEL": "warning",
    }

    async def run(module: str, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        return process.returncode or 0, output.decode()

    command = ("bootstrap", "ca", "server-certificate", "--data-dir", str(tmp_path), "--server-names", name)
    code, printed = await run(*command)
    assert code == 0 and printed.count("BEGIN CERTIFICATE") == 1, printed
    assert x509.load_pem_x509_certificate(printed.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == [name]
    assert (await run(*command))[1] == printed  # kept, not issued again
    pinned = tmp_path / "server.pem"
    pinned.write_text(printed)
    code, exported = await run("bootstrap", "ca", "export", "--data-dir", str(tmp_path))
    assert code == 0
    other = tmp_path / "issuing-ca.der"
    other.write_bytes(
        x509.load_pem_x509_certificates(exported.encode())[0].public_bytes(serialization.Encoding.DER)
    )

    settings = make_settings(
        database_url, master_key_b64, tmp_path, server_names=(name,), coap_bind=None, admin_bind=None
    )
    server = BootstrapServer(settings)
    await server.start()
    try:
        results = {}
        for case, path in (("right", pinned), ("wrong", other)):
            report = tmp_path / f"{case}.json"
            results[case] = await run(
                "device_sim", "--server", coaps_uri(server), "--devices", "4", "--concurrency", "4",
                "--flow", "est", "--endpoint-prefix", f"pin-{case}-{unique}",
                "--factory-dir", str(tmp_path / "factory"), "--database-url", database_url,
                "--server-certificate", str(path), "--json", str(report), "--no-progress",
            )  # fmt: skip
        code, output = results["right"]
        assert code == 0 and json.loads((tmp_path / "right.json").read_text())["succeeded"] == 4, output
        # The fleet checks it can reach the server before it starts: a wrong pin stops it there.
        code, output = results["wrong"]
        assert code == 2 and "ServerNotPinned" in output and "not the pinned one" in output, output
        assert not (tmp_path / "wrong.json").exists()

        code, output = await run(
            "device_sim", "--server", coaps_uri(server), "--server-certificate", str(tmp_path / "missing.pem")
        )
        assert code == 2 and "--server-certificate" in output and "Traceback" not in output
        code, output = await run(
            "device_sim",
            "--server",
            coaps_uri(server),
            "--server-certificate",
            str(pinned),
            "--server-ca",
            str(pinned),
        )
        assert code == 2 and "not allowed with" in output
    finally:
        await server.stop(drain_seconds=1)
