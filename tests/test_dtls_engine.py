"""The DTLS server engine in memory: pyOpenSSL client connections against the engine, no sockets."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import crypto

from bootstrap.coap.dtls import (
    CookieAuthority,
    DtlsEngineConfig,
    DtlsServerEngine,
    DtlsSession,
    PeerAddress,
    SessionState,
    _strong_key,
    _weakness,
    build_hello_verify_request,
    iter_records,
    parse_client_hello,
    split_into_datagrams,
)
from bootstrap.identity import DeviceIdentity
from device_sim.dtls_client import (
    CertificateCredentials,
    DtlsClientConnection,
    DtlsClientError,
    PskCredentials,
)

from .dtls_helpers import NOW, DtlsPki, Issued, StaticTrust, issue, make_ca, make_test_pki

PEER = ("192.0.2.10", 40001)
T0 = 1000.0


@pytest.fixture(scope="module")
def pki() -> DtlsPki:
    return make_test_pki()


@dataclass
class Recorder:
    """A DtlsEventHandler that records everything."""

    sent: list[tuple[bytes, PeerAddress]] = field(default_factory=list)
    established: list[DtlsSession] = field(default_factory=list)
    data: list[tuple[DtlsSession, bytes]] = field(default_factory=list)
    closed: list[tuple[DtlsSession, str]] = field(default_factory=list)

    def send_datagram(self, data: bytes, peer: PeerAddress) -> None:
        self.sent.append((data, peer))

    def session_established(self, session: DtlsSession) -> None:
        self.established.append(session)

    def application_data(self, session: DtlsSession, data: bytes) -> None:
        self.data.append((session, data))

    def session_closed(self, session: DtlsSession, reason: str) -> None:
        self.closed.append((session, reason))

    def take(self, peer: PeerAddress) -> list[bytes]:
        mine = [d for d, p in self.sent if p == peer]
        self.sent = [(d, p) for d, p in self.sent if p != peer]
        return mine


Filter = Callable[[bytes], bool]


@dataclass
class Harness:
    engine: DtlsServerEngine
    rec: Recorder
    trust: StaticTrust

    def exchange(
        self,
        client: DtlsClientConnection,
        peer: PeerAddress = PEER,
        *,
        now: float = T0,
        first: list[bytes] | None = None,
        drop_to_server: Filter | None = None,
        drop_to_client: Filter | None = None,
    ) -> None:
        """Shuttle datagrams until both sides are quiet."""
        to_server = client.start() if first is None else first
        for _ in range(50):
            for datagram in to_server:
                if drop_to_server is None or not drop_to_server(datagram):
                    self.engine.datagram_received(datagram, peer, now)
            to_server = []
            for datagram in self.rec.take(peer):
                if drop_to_client is None or not drop_to_client(datagram):
                    to_server += client.datagram_received(datagram)
            if not to_server:
                return
        raise AssertionError("handshake did not settle")


def make_harness(pki: DtlsPki, **config: object) -> Harness:
    trust = StaticTrust(
        cas=(pki.device_ca.certificate,),
        psks={b"psk-device": b"0123456789abcdef", "gerät-ü".encode(): b"k3y"},
    )
    rec = Recorder()
    engine = DtlsServerEngine(
        DtlsEngineConfig(
            certificate_chain=(pki.server.certificate, *pki.server.chain),
            private_key=pki.server.key,
            **config,  # type: ignore[arg-type]
        ),
        trust,
        rec,
    )
    return Harness(engine, rec, trust)


def cert_client(pki: DtlsPki, device: Issued, *suites: str, **kw: object) -> DtlsClientConnection:
    creds = CertificateCredentials(
        certificate_chain=(device.certificate, *device.chain),
        private_key=device.key,
        trusted_cas=(pki.server_ca.certificate,),
    )
    return DtlsClientConnection(creds, cipher_suites=suites or None, **kw)  # type: ignore[arg-type]


def psk_client(identity: bytes, key: bytes, *suites: str) -> DtlsClientConnection:
    return DtlsClientConnection(PskCredentials(identity=identity, key=key), cipher_suites=suites or None)


# --- record layer -----------------------------------------------------------------------------


def _record(content: int, body_len: int, seq: int = 0) -> bytes:
    return (
        bytes([content, 0xFE, 0xFD, 0, 1])
        + seq.to_bytes(6, "big")
        + body_len.to_bytes(2, "big")
        + b"x" * body_len
    )


def test_split_packs_records_without_crossing_the_limit() -> None:
    records = [_record(22, n, i) for i, n in enumerate((100, 500, 600, 50, 1200, 10))]
    flight = b"".join(records)
    datagrams = split_into_datagrams(flight, 700)
    assert b"".join(datagrams) == flight
    for datagram in datagrams:
        # each datagram is whole records
        assert sum(end - start for start, end in iter_records(datagram)) == len(datagram)
        assert len(datagram) <= 700 or len(list(iter_records(datagram))) == 1
    assert [len(d) for d in datagrams] == [113 + 513, 613 + 63, 1213, 23]


def test_split_small_flight_is_one_datagram() -> None:
    flight = _record(22, 40) + _record(20, 1) + _record(22, 40)
    assert split_into_datagrams(flight, 1232) == [flight]
    assert split_into_datagrams(b"", 1232) == []


def test_client_hello_parse_and_hello_verify_request(pki: DtlsPki) -> None:
    hello_datagrams = cert_client(pki, pki.device).start()
    assert len(hello_datagrams) == 1
    hello = parse_client_hello(hello_datagrams[0])
    assert hello is not None
    assert hello.cookie == b""
    hvr = build_hello_verify_request(hello.record_sequence, b"c" * 16)
    assert hvr[0] == 22 and hvr[1:3] == b"\xfe\xff" and hvr[5:11] == hello.record_sequence
    assert hvr[13] == 3 and hvr[-17:] == bytes([16]) + b"c" * 16
    assert parse_client_hello(hvr) is None


@given(st.binary(max_size=300))
def test_client_hello_parser_never_raises(data: bytes) -> None:
    parse_client_hello(data)
    parse_client_hello(b"\x16\xfe\xfd\x00\x00" + data)


def test_cookie_binds_address_port_and_parameters() -> None:
    authority = CookieAuthority(lifetime=30.0)
    cookie = authority.issue(("192.0.2.1", 5000), b"params", T0)
    assert authority.verify(cookie, ("192.0.2.1", 5000), b"params", T0 + 1)
    assert not authority.verify(cookie, ("192.0.2.1", 5001), b"params", T0 + 1)
    assert not authority.verify(cookie, ("192.0.2.2", 5000), b"params", T0 + 1)
    assert not authority.verify(cookie, ("192.0.2.1", 5000), b"other", T0 + 1)
    assert not authority.verify(cookie[:-1], ("192.0.2.1", 5000), b"params", T0 + 1)
    # still valid one rotation later, gone after two
    assert authority.verify(cookie, ("192.0.2.1", 5000), b"params", T0 + 35)
    assert not authority.verify(cookie, ("192.0.2.1", 5000), b"params", T0 + 70)


# --- cookie exchange -----------------------------------------------------------------------------


def test_cookie_less_client_hellos_create_no_state(pki: DtlsPki) -> None:
    h = make_harness(pki)
    hello = cert_client(pki, pki.device).start()[0]
    flood = 2000
    for i in range(flood):
        h.engine.datagram_received(hello, (f"198.51.{i // 250}.{i % 250}", 1000 + i), T0)
    assert h.engine.session_count == 0
    assert h.engine.stats.hello_verify_requests == flood
    assert len(h.rec.sent) == flood
    assert h.engine._context is None  # not even an OpenSSL context was needed
    assert h.engine.next_deadline() is None


def test_cookie_is_bound_to_the_peer_address(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    h.engine.datagram_received(client.start()[0], PEER, T0)
    (hvr,) = h.rec.take(PEER)
    second_hello = client.datagram_received(hvr)
    # replayed from another address (spoofing): another HelloVerifyRequest, no session
    h.engine.datagram_received(second_hello[0], ("192.0.2.99", PEER[1]), T0)
    assert h.engine.session_count == 0
    assert h.engine.stats.hello_verify_requests == 2
    # from the right address: a session
    h.engine.datagram_received(second_hello[0], PEER, T0)
    assert h.engine.session_count == 1


def test_datagrams_from_unknown_peers_are_dropped(pki: DtlsPki) -> None:
    h = make_harness(pki)
    h.engine.datagram_received(b"\x17\xfe\xfd\x00\x01" + bytes(8) + b"garbage", PEER, T0)
    h.engine.datagram_received(b"", PEER, T0)
    assert h.engine.stats.datagrams_dropped == 2
    assert h.rec.sent == []


# --- handshakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA256"]
)
def test_certificate_mode_handshake(pki: DtlsPki, suite: str) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device, suite)
    h.exchange(client)
    assert client.handshake_complete, client.error
    assert client.cipher == suite
    (session,) = h.rec.established
    assert session.identity == DeviceIdentity(
        kind="x509", name="urn:dev:ops:good-device", certificate=pki.device.certificate
    )
    assert session.cipher == suite
    assert h.engine.session_count == 1


@pytest.mark.parametrize("suite", ["PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256", "PSK-AES128-CBC-SHA256"])
def test_psk_mode_handshake(pki: DtlsPki, suite: str) -> None:
    h = make_harness(pki)
    client = psk_client(b"psk-device", b"0123456789abcdef", suite)
    h.exchange(client)
    assert client.handshake_complete, client.error
    (session,) = h.rec.established
    assert session.identity == DeviceIdentity(kind="psk", name="psk-device", certificate=None)
    assert session.cipher == suite


def test_psk_identity_is_decoded_as_utf8(pki: DtlsPki) -> None:
    h = make_harness(pki)
    h.exchange(psk_client("gerät-ü".encode(), b"k3y"))
    assert h.rec.established[0].identity == DeviceIdentity(kind="psk", name="gerät-ü")


def test_client_preference_picks_the_suite(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device, "ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES128-GCM-SHA256")
    h.exchange(client)
    assert client.cipher == "ECDHE-ECDSA-AES128-CCM8"


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "PSK-AES128-CBC-SHA",
        "ECDHE-PSK-AES128-CBC-SHA256",
    ],
)
def test_suites_outside_the_list_are_refused(pki: DtlsPki, suite: str) -> None:
    h = make_harness(pki)
    client = (
        psk_client(b"psk-device", b"0123456789abcdef", suite)
        if "PSK" in suite
        else cert_client(pki, pki.device, suite)
    )
    h.exchange(client)
    assert not client.handshake_complete
    assert h.rec.established == []
    assert h.engine.session_count == 0
    assert "no shared cipher" in h.rec.closed[0][1]


def test_client_sending_its_intermediate_is_accepted(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device_via_intermediate)
    h.exchange(client)
    assert client.handshake_complete, (client.error, h.rec.closed)
    assert h.rec.established[0].identity is not None
    assert h.rec.established[0].identity.name == "urn:dev:ops:chained-device"


def test_trusted_intermediate_is_a_trust_anchor(pki: DtlsPki) -> None:
    h = make_harness(pki)
    h.trust.cas = (pki.device_intermediate.certificate,)
    leaf_only = Issued(pki.device_via_intermediate.certificate, pki.device_via_intermediate.key)
    client = cert_client(pki, leaf_only)
    h.exchange(client)
    assert client.handshake_complete, (client.error, h.rec.closed)


def test_ca_verdicts_are_remembered_and_still_refuse(pki: DtlsPki) -> None:
    """A chain certificate is judged once per fingerprint; the remembered verdict is applied to
    every later handshake, for a sound intermediate and for one with a 1024-bit RSA key alike."""
    h = make_harness(pki)
    for _ in range(2):
        client = cert_client(pki, pki.device_via_intermediate)
        h.exchange(client)
        assert client.handshake_complete, (client.error, h.rec.closed)
    assert len(h.engine._ca_verdicts) == 2  # the intermediate and the factory root
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_intermediate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Weak Intermediate")]))
        .issuer_name(pki.device_ca.certificate.subject)
        .public_key(weak_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(pki.device_ca.key, hashes.SHA256())
    )
    weak = issue(Issued(weak_intermediate, weak_key), "urn:dev:ops:weak-chain")  # type: ignore[arg-type]
    for attempt in range(2):
        client = cert_client(pki, weak)
        h.exchange(client)
        assert not client.handshake_complete
        assert "(depth 1): RSA key of 1024 bits" in h.rec.closed[-1][1], (attempt, h.rec.closed)
    assert len(h.engine._ca_verdicts) == 3


def _weak_rsa_device(pki: DtlsPki) -> Issued:
    """A device certificate with a 1024-bit RSA key (OpenSSL level 2 refuses it; so must we)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "urn:dev:ops:weak-rsa")]))
        .issuer_name(pki.device_ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(pki.device_ca.key, hashes.SHA256())
    )
    return Issued(cert, key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device", "server_reason", "client_alert"),
    [
        ("rogue_device", "unable to get local issuer certificate", "unknown ca"),
        ("expired_device", "certificate has expired", "certificate expired"),
        ("future_device", "certificate is not yet valid", "bad certificate"),
        ("no_cn_device", "exactly one subject common name", ""),
        ("weak_rsa_device", "RSA key of 1024 bits", ""),
    ],
)
def test_bad_client_certificates_fail_the_handshake(
    pki: DtlsPki, device: str, server_reason: str, client_alert: str
) -> None:
    h = make_harness(pki)
    issued = _weak_rsa_device(pki) if device == "weak_rsa_device" else getattr(pki, device)
    client = cert_client(pki, issued, "ECDHE-ECDSA-AES128-CCM8")
    h.exchange(client)
    assert not client.handshake_complete
    assert client.error is not None and client_alert in client.error
    assert h.rec.established == []
    assert h.engine.session_count == 0
    assert h.engine.stats.handshakes_failed == 1
    ((_, reason),) = h.rec.closed
    assert server_reason in reason


def test_certificate_mode_requires_a_client_certificate(pki: DtlsPki) -> None:
    h = make_harness(pki)
    # PSK credentials with only a certificate-mode suite: a client that has no certificate
    no_cert = DtlsClientConnection(
        PskCredentials(identity=b"x", key=b"y"), cipher_suites=("ECDHE-ECDSA-AES128-CCM8",)
    )
    h.exchange(no_cert)
    assert not no_cert.handshake_complete
    assert h.rec.established == []
    assert "certificate" in h.rec.closed[0][1]


def test_unknown_psk_identity_fails(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = psk_client(b"nobody", b"0123456789abcdef")
    h.exchange(client)
    assert not client.handshake_complete
    assert "unknown PSK identity 'nobody'" in h.rec.closed[0][1]


def test_wrong_psk_stalls_then_times_out(pki: DtlsPki) -> None:
    h = make_harness(pki, handshake_timeout=10.0)
    client = psk_client(b"psk-device", b"not-the-right-key")
    h.exchange(client)
    # the server cannot decrypt the client's Finished and, as DTLS does, drops it silently
    assert not client.handshake_complete
    assert h.rec.established == [] and h.rec.closed == []
    assert h.engine.session_count == 1
    h.engine.handle_timers(T0 + 11)
    assert h.engine.session_count == 0
    assert h.rec.closed[0][1] == "handshake timeout"


def test_trust_changes_rebuild_the_store(pki: DtlsPki) -> None:
    h = make_harness(pki)
    rogue = cert_client(pki, pki.rogue_device)
    h.exchange(rogue)
    assert not rogue.handshake_complete
    h.trust.cas = (pki.device_ca.certificate, pki.rogue_ca.certificate)  # a new object
    rogue = cert_client(pki, pki.rogue_device)
    h.exchange(rogue, ("192.0.2.11", 1))
    assert rogue.handshake_complete
    h.trust.version += 1  # same object, new version: rebuilt too
    before = h.engine._context
    h.exchange(cert_client(pki, pki.device), ("192.0.2.12", 1))
    assert h.engine._context is not before


# --- sessions -----------------------------------------------------------------------------------------


def test_application_data_both_ways_and_close_notify(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    h.exchange(client)
    (session,) = h.rec.established
    for datagram in client.send(b"ping"):
        h.engine.datagram_received(datagram, PEER, T0 + 1)
    assert h.rec.data == [(session, b"ping")]
    assert h.engine.send_application_data(session, b"pong", T0 + 2)
    for datagram in h.rec.take(PEER):
        client.datagram_received(datagram)
    assert list(client.received) == [b"pong"]
    for datagram in client.close():
        h.engine.datagram_received(datagram, PEER, T0 + 3)
    assert session.state is SessionState.CLOSED
    assert h.rec.closed == [(session, "close_notify from peer")]
    assert not h.engine.send_application_data(session, b"late", T0 + 4)


def test_idle_session_is_closed_with_close_notify(pki: DtlsPki) -> None:
    h = make_harness(pki, idle_timeout=60.0)
    client = cert_client(pki, pki.device)
    h.exchange(client, now=T0)
    assert h.engine.next_deadline() == pytest.approx(T0 + 60.0)
    h.engine.handle_timers(T0 + 59)
    assert h.engine.session_count == 1
    h.engine.handle_timers(T0 + 60.5)
    assert h.engine.session_count == 0
    assert h.rec.closed[0][1] == "idle timeout"
    for datagram in h.rec.take(PEER):
        client.datagram_received(datagram)
    assert client.closed and client.error == "close_notify from server"


def test_session_cap_evicts_the_least_recently_active(pki: DtlsPki) -> None:
    h = make_harness(pki, max_sessions=3)
    clients = {}
    for i in range(3):
        peer = ("192.0.2.20", 2000 + i)
        clients[peer] = cert_client(pki, pki.device)
        h.exchange(clients[peer], peer, now=T0 + i)
    # activity on the oldest makes the second one the least recently active
    for datagram in clients[("192.0.2.20", 2000)].send(b"hi"):
        h.engine.datagram_received(datagram, ("192.0.2.20", 2000), T0 + 10)
    h.exchange(cert_client(pki, pki.device), ("192.0.2.20", 3000), now=T0 + 11)
    assert h.engine.session_count == 3
    assert h.engine.stats.sessions_evicted == 1
    ((evicted, reason),) = h.rec.closed
    assert evicted.peer == ("192.0.2.20", 2001)
    assert reason.startswith("evicted")


def test_new_handshake_from_same_address_replaces_session(pki: DtlsPki) -> None:
    h = make_harness(pki)
    first = cert_client(pki, pki.device)
    h.exchange(first)
    old = h.rec.established[0]
    second = psk_client(b"psk-device", b"0123456789abcdef")
    h.exchange(second)
    assert second.handshake_complete
    assert h.engine.session_count == 1
    assert old.state is SessionState.CLOSED
    assert h.rec.closed[0][0] is old and "replaced" in h.rec.closed[0][1]
    assert h.engine.session_for(PEER) is h.rec.established[1]
    assert h.engine.stats.sessions_replaced == 1


def test_retransmitted_client_hello_does_not_replace_the_handshake(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    h.engine.datagram_received(client.start()[0], PEER, T0)
    (hvr,) = h.rec.take(PEER)
    (hello_with_cookie,) = client.datagram_received(hvr)
    h.engine.datagram_received(hello_with_cookie, PEER, T0)
    session = h.engine.session_for(PEER)
    flight = h.rec.take(PEER)
    h.engine.datagram_received(hello_with_cookie, PEER, T0 + 0.5)  # duplicate on the wire
    assert h.engine.session_for(PEER) is session
    assert h.engine.stats.handshakes_started == 1
    to_server: list[bytes] = []
    for datagram in flight:
        to_server += client.datagram_received(datagram)
    h.exchange(client, first=to_server)
    assert client.handshake_complete


def test_flights_fit_a_small_mtu(pki: DtlsPki) -> None:
    server_chain_ca = make_ca("Server Intermediate", parent=pki.server_ca)
    server = issue(server_chain_ca, "localhost", server=True)
    rec = Recorder()
    engine = DtlsServerEngine(
        DtlsEngineConfig(
            certificate_chain=(server.certificate, *server.chain),
            private_key=server.key,
            max_datagram_size=300,
        ),
        StaticTrust(cas=(pki.device_ca.certificate,)),
        rec,
    )
    h = Harness(engine, rec, StaticTrust())
    sizes: list[int] = []
    original = rec.send_datagram

    def spy(data: bytes, peer: PeerAddress) -> None:
        sizes.append(len(data))
        original(data, peer)

    rec.send_datagram = spy  # type: ignore[method-assign]
    client = cert_client(pki, pki.device_via_intermediate, max_datagram_size=300)
    h.exchange(client)
    assert client.handshake_complete, client.error
    assert max(sizes) <= 300
    assert sum(sizes) > 1200  # the certificate flight really was split


def test_server_retransmits_a_lost_flight(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    h.engine.datagram_received(client.start()[0], PEER, time.monotonic())
    (hvr,) = h.rec.take(PEER)
    h.engine.datagram_received(client.datagram_received(hvr)[0], PEER, time.monotonic())
    lost = h.rec.take(PEER)  # ServerHello ... ServerHelloDone never arrives
    assert lost
    deadline = h.engine.next_deadline()
    assert deadline is not None and deadline - time.monotonic() <= 1.1
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.05)
    h.engine.handle_timers(time.monotonic())
    again = h.rec.take(PEER)
    assert [len(d) for d in again] == [len(d) for d in lost]
    to_server: list[bytes] = []
    for datagram in again:
        to_server += client.datagram_received(datagram)
    h.exchange(client, first=to_server, now=time.monotonic())
    assert client.handshake_complete


def test_lost_final_flight_is_resent_when_the_client_retransmits(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    dropped: list[bytes] = []

    def drop_final(datagram: bytes) -> bool:
        # the server's ChangeCipherSpec + Finished flight (starts with a CCS record)
        if datagram[0] == 20 and not dropped:
            dropped.append(datagram)
            return True
        return False

    h.exchange(client, now=time.monotonic(), drop_to_client=drop_final)
    assert dropped and not client.handshake_complete
    assert h.engine.session_for(PEER) is not None
    assert h.engine.session_for(PEER).is_established  # type: ignore[union-attr]
    timeout = client.timeout()
    assert timeout is not None
    time.sleep(timeout + 0.05)
    h.exchange(client, first=client.handle_timeout(), now=time.monotonic())
    assert client.handshake_complete
    assert len(h.rec.established) == 1


def test_shutdown_sends_close_notify_and_ignores_new_clients(pki: DtlsPki) -> None:
    h = make_harness(pki)
    client = cert_client(pki, pki.device)
    h.exchange(client)
    h.engine.shutdown()
    assert h.engine.session_count == 0
    assert h.rec.closed[0][1] == "server shutdown"
    for datagram in h.rec.take(PEER):
        client.datagram_received(datagram)
    assert client.closed and client.error == "close_notify from server"
    h.engine.datagram_received(cert_client(pki, pki.device).start()[0], ("192.0.2.30", 1), T0)
    assert h.rec.sent == []


def test_devices_sharing_one_client_context_keep_their_own_identities(pki: DtlsPki) -> None:
    """The simulator shares one SSL_CTX per kind of credentials; each connection still presents
    its own certificate or PSK identity."""
    from device_sim.dtls_client import shared_context

    h = make_harness(pki)
    other = issue(pki.device_ca, "urn:dev:ops:second-device")
    names = []
    for device in (pki.device, other):
        credentials = CertificateCredentials(
            certificate_chain=(device.certificate,),
            private_key=device.key,
            trusted_cas=(pki.server_ca.certificate,),
        )
        context = shared_context(credentials)
        client = DtlsClientConnection(credentials, context=context)
        h.exchange(client)
        assert client.handshake_complete, (client.error, h.rec.closed)
        names.append(h.rec.established[-1].identity.name)  # type: ignore[union-attr]
    assert names == ["urn:dev:ops:good-device", "urn:dev:ops:second-device"]
    assert shared_context(credentials) is context

    h.trust.psks[b"psk-two"] = b"another-key-16by"
    for identity, key in ((b"psk-device", b"0123456789abcdef"), (b"psk-two", b"another-key-16by")):
        credentials_psk = PskCredentials(identity=identity, key=key)
        client = DtlsClientConnection(credentials_psk, context=shared_context(credentials_psk))
        h.exchange(client)
        assert client.handshake_complete, (client.error, h.rec.closed)
        assert h.rec.established[-1].identity.name == identity.decode()  # type: ignore[union-attr]


def _pinning_client(pki: DtlsPki, pinned: x509.Certificate, **trust: Any) -> DtlsClientConnection:
    from cryptography.hazmat.primitives.serialization import Encoding

    from device_sim.dtls_client import shared_context

    credentials = CertificateCredentials(
        certificate_chain=(pki.device.certificate,),
        private_key=pki.device.key,
        pinned_server_certificate=pinned.public_bytes(Encoding.DER),
        **trust,
    )
    return DtlsClientConnection(credentials, context=shared_context(credentials))


def test_a_device_pinning_the_server_certificate_needs_no_chain(pki: DtlsPki) -> None:
    """Certificate usage 3: the server's certificate is compared with the pinned copy; its chain is
    not verified, so trust anchors that would reject it do not matter."""
    h = make_harness(pki)
    client = _pinning_client(pki, pki.server.certificate, trusted_cas=(pki.rogue_ca.certificate,))
    h.exchange(client)
    assert client.handshake_complete, (client.error, h.rec.closed)
    h.engine.datagram_received(client.send(b"hello")[0], PEER, T0)
    assert [data for _, data in h.rec.data] == [b"hello"]


def test_a_device_pinning_another_certificate_ends_the_session(pki: DtlsPki) -> None:
    """The same CA's other certificate is not the pinned one: no application data, close_notify."""
    h = make_harness(pki)
    other = issue(pki.server_ca, "other.example", server=True)
    client = _pinning_client(pki, other.certificate, trusted_cas=(pki.server_ca.certificate,))
    h.exchange(client)
    assert not client.handshake_complete and client.closed
    assert client.error is not None and "not the pinned one" in client.error
    with pytest.raises(DtlsClientError):
        client.send(b"hello")
    assert h.rec.data == []
    assert [reason for _, reason in h.rec.closed] == ["close_notify from peer"]


def test_pinning_devices_share_a_context_without_a_trust_store(pki: DtlsPki) -> None:
    """Pinned or not verified, OpenSSL checks no chain: one shared context for both, another for
    devices that verify the chain."""
    from device_sim.dtls_client import shared_context

    def credentials(**trust: Any) -> CertificateCredentials:
        return CertificateCredentials(
            certificate_chain=(pki.device.certificate,), private_key=pki.device.key, **trust
        )

    pinned = credentials(pinned_server_certificate=b"\x30\x00", trusted_cas=(pki.server_ca.certificate,))
    unverified = credentials()
    verifying = credentials(trusted_cas=(pki.server_ca.certificate,))
    assert shared_context(pinned) is shared_context(unverified)
    assert shared_context(pinned) is not shared_context(verifying)


@pytest.mark.parametrize(
    ("make_key", "strong", "problem"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), True, None),
        (lambda: ec.generate_private_key(ec.SECP384R1()), True, None),
        (lambda: ec.generate_private_key(ec.SECP192R1()), False, "EC key on secp192r1"),
        (lambda: rsa.generate_private_key(65537, 2048), True, None),
        (lambda: rsa.generate_private_key(65537, 1024), False, "RSA key of 1024 bits"),
        (ed25519.Ed25519PrivateKey.generate, True, None),
    ],
    ids=["P-256", "P-384", "P-192", "RSA-2048", "RSA-1024", "Ed25519"],
)
def test_the_key_check_asked_of_openssl_agrees_with_cryptography(
    make_key: Callable[[], Any], strong: bool, problem: str | None
) -> None:
    """The leaf's key is checked on OpenSSL's parsed key; only a key that fails is decoded again,
    for the message, so both paths give one verdict."""
    key = make_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "urn:dev:ops:key-check")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    assert _strong_key(crypto.X509.from_cryptography(certificate)) is strong
    checked = _weakness(certificate, self_signed=False, strong_key=strong)
    assert checked == _weakness(certificate, self_signed=False) == problem
