"""DTLS 1.2 server engine on pyOpenSSL memory BIOs, without any I/O of its own.

The engine owns per-peer DTLS sessions and is driven by three calls from an I/O
adapter (see :mod:`bootstrap.coap.dtls_transport`): :meth:`DtlsServerEngine.datagram_received`
for every UDP datagram, :meth:`DtlsServerEngine.handle_timers` when
:meth:`DtlsServerEngine.next_deadline` has passed, and
:meth:`DtlsServerEngine.send_application_data` to encrypt plaintext for a peer.
Everything the engine wants done (send a datagram, a session came up, plaintext
arrived, a session ended) goes to a :class:`DtlsEventHandler`. Time is always a
parameter (``now``, seconds on a monotonic clock).

What it implements, and where the behaviour comes from:

- Stateless cookie exchange (RFC 6347 §4.2.1, RFC 9147 §5.1): a ClientHello without a
  valid cookie is answered with a HelloVerifyRequest built here, from a rotating HMAC
  secret bound to the peer's address, port and ClientHello parameters. No OpenSSL
  object and no per-peer state is created for it. Only a ClientHello with a valid cookie
  creates a session; OpenSSL's ``DTLSv1_listen`` then re-checks the same cookie and sets
  the message and record sequence numbers up (RFC 6347 §4.2.1, §4.2.2).
- A new handshake (valid cookie) from an address that already has a session replaces
  that session (RFC 6347 §4.2.8: the cookie exchange demonstrated reachability).
- Flights read from the memory BIO are split into datagrams at record boundaries so that
  no datagram exceeds the configured size (RFC 6347 §4.1.1: records must not span
  datagrams; several records may share one).
- Handshake flights are retransmitted on OpenSSL's timer (RFC 6347 §4.2.4), a handshake
  that does not finish within ``handshake_timeout`` is dropped, an idle session is closed
  with close_notify after ``idle_timeout``, at most ``max_sessions`` sessions exist (the
  least recently active one is evicted), and shutdown sends close_notify (RFC 5246 §7.2.1).
- Cipher suites: the two LwM2M mandates (TLS_PSK_WITH_AES_128_CCM_8, RFC 7925 §4.2, and
  TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, RFC 7925 §4.4) plus AES-128 GCM and CBC-SHA256 variants;
  DTLS 1.2 only; the client's preference order decides. Certificate mode and PSK mode share
  the port: the suites the client offers pick the mode. Certificate mode requires a client
  certificate (RFC 7925 §4.4.2), verified against :meth:`TrustSource.trusted_cas`.
- No compression (RFC 7925 §8), no renegotiation (RFC 7925 §17). Session resumption
  (RFC 7925 §7) is not offered: bootstrap sessions are short and SO_REUSEPORT workers would
  not share a session cache. The extended master secret (RFC 7925 §16) is OpenSSL's default.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import hmac
import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from bootstrap.identity import DeviceIdentity

__all__ = [
    "CIPHER_SUITES",
    "ClientHello",
    "CookieAuthority",
    "DtlsEngineConfig",
    "DtlsEngineStats",
    "DtlsEventHandler",
    "DtlsServerEngine",
    "DtlsSession",
    "PeerAddress",
    "SessionState",
    "TrustSource",
    "build_hello_verify_request",
    "iter_records",
    "parse_client_hello",
    "pending_bytes",
    "split_into_datagrams",
]

log = structlog.get_logger(__name__)

#: A peer as the socket layer reports it: ``(host, port)`` or ``(host, port, flowinfo, scope_id)``.
PeerAddress = tuple[Any, ...]

# --- wire constants (RFC 6347 §4.1, §4.2.2) -------------------------------------------------

RECORD_HEADER_LEN = 13  # type(1) version(2) epoch(2) sequence_number(6) length(2)
HANDSHAKE_HEADER_LEN = 12  # msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_HELLO_VERIFY_REQUEST = 3
#: RFC 6347 §4.2.1: HelloVerifyRequest.server_version is DTLS 1.0 whatever is negotiated later.
DTLS_1_0 = b"\xfe\xff"
DTLS_1_2 = 0xFEFD

#: OpenSSL names of the offered suites. The first two are the ones LwM2M clients must
#: support (RFC 7925 §4.2 and §4.4). Nothing weaker is offered.
CIPHER_SUITES: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-CCM8",
    "PSK-AES128-CCM8",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "PSK-AES128-GCM-SHA256",
    "PSK-AES128-CBC-SHA256",
)
#: secp256r1 is the RFC 7925 §4.4.2 / RFC 8422 curve every constrained client has.
ECDHE_GROUPS = b"P-256:X25519:P-384"
#: Handshake signatures (ServerKeyExchange, CertificateVerify): SHA-2 or EdDSA only.
SIGNATURE_ALGORITHMS = (
    b"ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:"
    b"RSA-PSS+SHA256:RSA-PSS+SHA384:RSA-PSS+SHA512:RSA+SHA256:RSA+SHA384:RSA+SHA512"
)
#: OpenSSL 3 and later rate the 8-byte CCM tag at 64 "security bits" and drop the
#: LwM2M-mandatory *_CCM_8 suites at the default security level 2 ("no shared cipher"
#: with a CCM8-only client such as tinydtls). Level 0 brings them back; what else level 0
#: would relax is pinned explicitly instead: the cipher list above, DTLS 1.2 only, the
#: groups, the signature algorithms, and key size / digest checks on client certificate
#: chains in the verify callback (see _weakness).
_SECURITY_LEVEL = b"@SECLEVEL=0"
_ACCEPTED_DIGESTS = frozenset({"sha256", "sha384", "sha512"})
_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256

_RECV_SIZE = 16384 + 2048  # one DTLS record's plaintext at most (RFC 6347 §4.1)
_BIO_READ_SIZE = 65536
_COOKIE_LEN = 16  # truncated HMAC-SHA256: 128 bits, well within DTLS 1.2's 255-byte limit
_COOKIE_SECRET_LEN = 32
_MAX_PSK_LEN = 64  # RFC 4279 §5.3: PSKs of up to 64 octets MUST be supported


# --- record layer helpers --------------------------------------------------------------------


def iter_records(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` offsets of the DTLS records in ``data``.

    A truncated trailing record is yielded as running to the end of ``data``.
    """
    pos = 0
    size = len(data)
    while pos < size:
        if size - pos < RECORD_HEADER_LEN:
            yield pos, size
            return
        length = int.from_bytes(data[pos + 11 : pos + 13], "big")
        end = min(pos + RECORD_HEADER_LEN + length, size)
        yield pos, end
        pos = end


HANDSHAKE_CLIENT_KEY_EXCHANGE = 16
_HANDSHAKE_BYTE = bytes([CONTENT_HANDSHAKE])  # ContentType handshake (RFC 5246 §6.2.1)
_CLIENT_KEY_EXCHANGE_BYTE = bytes([HANDSHAKE_CLIENT_KEY_EXCHANGE])  # HandshakeType (§7.4)


def psk_identity_in(datagram: bytes) -> bytes | None:
    """The PSK identity of a plaintext ClientKeyExchange in ``datagram``, if it carries one.

    In the PSK key exchange (RFC 4279 §2) the ClientKeyExchange body is ``opaque
    psk_identity<0..2^16-1>`` and travels in clear (epoch 0). Reading it before OpenSSL does lets
    the transport fetch the key asynchronously, so the handshake callback, which must be
    synchronous, finds it in memory. Certificate-mode exchanges yield ``None``.

    Only the datagram's first record is read: a PSK client sends no Certificate (the server asks
    for none with PSK cipher suites), so its ClientKeyExchange opens its second flight (RFC 5246
    §7.3) and the datagram that carries it. Every other datagram (application data, a ClientHello,
    a certificate flight) is passed over on its first bytes.
    """
    if datagram[:1] != _HANDSHAKE_BYTE or datagram[13:14] != _CLIENT_KEY_EXCHANGE_BYTE:
        return None
    start, end = next(iter_records(datagram))
    record = datagram[start:end]
    if len(record) < RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + 2 or record[3:5] != b"\x00\x00":
        return None  # truncated, or not epoch 0
    body = record[RECORD_HEADER_LEN:]
    if body[6:9] != b"\x00\x00\x00":
        return None  # a later fragment of the message
    fragment = body[HANDSHAKE_HEADER_LEN:]
    length = int.from_bytes(fragment[:2], "big")
    if 0 < length <= len(fragment) - 2:
        return fragment[2 : 2 + length]
    return None


def split_into_datagrams(flight: bytes, max_datagram_size: int) -> list[bytes]:
    """Pack the records of ``flight`` into as few datagrams as possible.

    Records never straddle datagrams (RFC 6347 §4.1.1); a datagram holds several records
    as long as it stays within ``max_datagram_size``. A single record that is larger on
    its own goes out alone (OpenSSL fragments handshake messages to the MTU, so this only
    happens if the MTU is set below what OpenSSL can honour).
    """
    if len(flight) <= max_datagram_size:
        return [flight] if flight else []
    datagrams: list[bytes] = []
    start = 0
    for rec_start, rec_end in iter_records(flight):
        if rec_end - start > max_datagram_size and rec_start > start:
            datagrams.append(flight[start:rec_start])
            start = rec_start
    if start < len(flight):
        datagrams.append(flight[start:])
    return datagrams


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The parts of an epoch-0, unfragmented ClientHello that the cookie exchange needs."""

    record_sequence: bytes  # 6 bytes, echoed in the HelloVerifyRequest (RFC 6347 §4.2.1)
    cookie: bytes
    #: version, random, session_id, cipher_suites, compression_methods: the fields a client
    #: MUST repeat unchanged after a HelloVerifyRequest (RFC 6347 §4.2.1). The cookie binds them.
    bound_parameters: bytes
    #: the whole handshake message (header and body), to recognise retransmissions
    message: bytes


def parse_client_hello(datagram: bytes) -> ClientHello | None:
    """Parse the first record of ``datagram`` as a plaintext ClientHello, or return ``None``.

    Only epoch 0, unfragmented ClientHellos are accepted (RFC 6347 §4.2.3 allows fragmenting
    them, but none of the clients this server serves does, and a stateless server cannot
    reassemble them without keeping state).
    """
    if len(datagram) < RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN:
        return None
    if datagram[0] != CONTENT_HANDSHAKE or datagram[3:5] != b"\x00\x00":
        return None
    record_len = int.from_bytes(datagram[11:13], "big")
    if RECORD_HEADER_LEN + record_len > len(datagram):
        return None
    frag = datagram[RECORD_HEADER_LEN : RECORD_HEADER_LEN + record_len]
    if frag[0] != HANDSHAKE_CLIENT_HELLO:
        return None
    msg_len = int.from_bytes(frag[1:4], "big")
    frag_offset = int.from_bytes(frag[6:9], "big")
    frag_len = int.from_bytes(frag[9:12], "big")
    if frag_offset != 0 or frag_len != msg_len or HANDSHAKE_HEADER_LEN + msg_len > len(frag):
        return None
    body = frag[HANDSHAKE_HEADER_LEN : HANDSHAKE_HEADER_LEN + msg_len]
    try:
        pos = 34  # client_version(2) + random(32)
        session_id_end = pos + 1 + body[pos]
        cookie_len = body[session_id_end]
        cookie = body[session_id_end + 1 : session_id_end + 1 + cookie_len]
        pos = session_id_end + 1 + cookie_len
        suites_end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        compression_end = suites_end + 1 + body[suites_end]
    except IndexError:
        return None
    if len(cookie) != cookie_len or compression_end > len(body):
        return None
    bound = body[:session_id_end] + body[session_id_end + 1 + cookie_len : compression_end]
    return ClientHello(
        record_sequence=datagram[5:11],
        cookie=cookie,
        bound_parameters=bound,
        message=frag[: HANDSHAKE_HEADER_LEN + msg_len],
    )


def build_hello_verify_request(record_sequence: bytes, cookie: bytes) -> bytes:
    """Build the HelloVerifyRequest datagram for a ClientHello (RFC 6347 §4.2.1).

    The record echoes the ClientHello's record sequence number; message_seq is 0, since
    it is the server's first handshake message (RFC 6347 §4.2.2).
    """
    body = DTLS_1_0 + bytes([len(cookie)]) + cookie
    blen = len(body).to_bytes(3, "big")
    handshake = bytes([HANDSHAKE_HELLO_VERIFY_REQUEST]) + blen + b"\x00\x00" + b"\x00\x00\x00" + blen + body
    return (
        bytes([CONTENT_HANDSHAKE])
        + DTLS_1_0
        + b"\x00\x00"
        + record_sequence
        + len(handshake).to_bytes(2, "big")
        + handshake
    )


class CookieAuthority:
    """Stateless DTLS cookies: ``HMAC(secret, address, port, ClientHello parameters)``.

    This is the construction RFC 6347 §4.2.1 suggests. The secret rotates every
    ``lifetime`` seconds and the previous one stays valid, so a cookie is accepted for
    between ``lifetime`` and ``2 * lifetime`` seconds. Nothing is stored per peer.
    """

    def __init__(self, lifetime: float = 30.0, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._lifetime = lifetime
        self._random_bytes = random_bytes
        self._current = random_bytes(_COOKIE_SECRET_LEN)
        self._previous: bytes | None = None
        self._rotated_at: float | None = None

    def _rotate(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
            return
        age = now - self._rotated_at
        if age >= self._lifetime:
            self._previous = self._current if age < 2 * self._lifetime else None
            self._current = self._random_bytes(_COOKIE_SECRET_LEN)
            self._rotated_at = now

    @staticmethod
    def _mac(secret: bytes, peer: PeerAddress, parameters: bytes) -> bytes:
        host = str(peer[0]).encode()
        message = len(host).to_bytes(1, "big") + host + int(peer[1]).to_bytes(2, "big") + parameters
        return hmac.new(secret, message, hashlib.sha256).digest()[:_COOKIE_LEN]

    def issue(self, peer: PeerAddress, parameters: bytes, now: float) -> bytes:
        """Return the cookie for ``peer`` sending a ClientHello with ``parameters``."""
        self._rotate(now)
        return self._mac(self._current, peer, parameters)

    def verify(self, cookie: bytes, peer: PeerAddress, parameters: bytes, now: float) -> bool:
        """Whether ``cookie`` was issued (recently enough) for this peer and ClientHello."""
        if len(cookie) != _COOKIE_LEN:
            return False
        self._rotate(now)
        ok = hmac.compare_digest(cookie, self._mac(self._current, peer, parameters))
        if self._previous is not None:
            ok |= hmac.compare_digest(cookie, self._mac(self._previous, peer, parameters))
        return ok


# --- configuration and collaborators ---------------------------------------------------------


class TrustSource(Protocol):
    """Where the engine gets trust anchors and PSKs. Must be cheap and synchronous.

    The engine calls :meth:`trusted_cas` for every new session and rebuilds its OpenSSL
    context (and so its X509 store) when the returned object is not the same object as
    last time, or when the optional integer attribute ``version`` of the source changed.
    Return the same (immutable) sequence object until the set of CAs changes.
    """

    def trusted_cas(self) -> Sequence[x509.Certificate]:
        """CA certificates whose device certificates may connect (trust anchors)."""
        ...

    def psk_for_identity(self, identity: bytes) -> bytes | None:
        """The PSK for a PSK identity, or ``None`` to fail the handshake."""
        ...


@dataclass(frozen=True, kw_only=True)
class DtlsEngineConfig:
    """Settings of a :class:`DtlsServerEngine`.

    ``max_datagram_size`` is the largest UDP payload the engine produces (path MTU minus
    IP and UDP headers: 1232 for the IPv6 minimum MTU of 1280).
    """

    certificate_chain: tuple[x509.Certificate, ...]
    private_key: ec.EllipticCurvePrivateKey
    max_datagram_size: int = 1232
    idle_timeout: float = 300.0
    handshake_timeout: float = 60.0
    max_sessions: int = 10_000
    cookie_secret_lifetime: float = 30.0
    verify_depth: int = 6

    def __post_init__(self) -> None:
        if not self.certificate_chain:
            raise ValueError("certificate_chain needs at least the server certificate")
        if self.max_datagram_size < 256:
            raise ValueError("max_datagram_size is too small for a DTLS handshake")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")


class SessionState(enum.Enum):
    """Life cycle of a :class:`DtlsSession`."""

    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


_serials = itertools.count(1)


class DtlsSession:
    """One DTLS association with one peer address.

    ``identity`` is set once the session is established. ``app_data`` belongs to the
    I/O adapter (the aiocoap transport keeps its endpoint address there).
    """

    __slots__ = (
        "_conn",
        "_expected_cookie",
        "app_data",
        "cipher",
        "client_hello",
        "created_at",
        "failure_reason",
        "handshake_deadline",
        "identity",
        "last_activity",
        "peer",
        "peer_certificate",
        "psk_identity",
        "serial",
        "state",
        "timer_deadline",
    )

    def __init__(
        self, peer: PeerAddress, conn: SSL.Connection, client_hello: ClientHello, now: float
    ) -> None:
        self.peer = peer
        self.serial = next(_serials)
        self.state = SessionState.HANDSHAKING
        self.identity: DeviceIdentity | None = None
        self.cipher: str | None = None
        self.created_at = now
        self.last_activity = now
        self.handshake_deadline = math.inf
        self.timer_deadline: float | None = None
        self.client_hello = client_hello.message
        self.psk_identity: bytes | None = None
        #: The client's certificate as the verify callback saw it (read once per handshake).
        self.peer_certificate: x509.Certificate | None = None
        self.failure_reason: str | None = None
        self.app_data: Any = None
        self._conn: SSL.Connection | None = conn
        self._expected_cookie = client_hello.cookie

    @property
    def is_established(self) -> bool:
        """True between a completed handshake and the end of the session."""
        return self.state is SessionState.ESTABLISHED

    def __repr__(self) -> str:
        return f"<DtlsSession #{self.serial} {self.peer!r} {self.state.value}>"


class DtlsEventHandler(Protocol):
    """What the engine asks its I/O adapter to do. Calls may re-enter the engine."""

    def send_datagram(self, data: bytes, peer: PeerAddress) -> None:
        """Send one UDP datagram to ``peer``."""
        ...

    def session_established(self, session: DtlsSession) -> None:
        """A handshake completed; ``session.identity`` is set."""
        ...

    def application_data(self, session: DtlsSession, data: bytes) -> None:
        """Decrypted application data (one DTLS record) arrived on ``session``."""
        ...

    def session_closed(self, session: DtlsSession, reason: str) -> None:
        """``session`` ended (it may never have been established)."""
        ...


@dataclass(slots=True)
class DtlsEngineStats:
    """Counters, for metrics and tests."""

    hello_verify_requests: int = 0
    handshakes_started: int = 0
    handshakes_completed: int = 0
    handshakes_failed: int = 0
    sessions_replaced: int = 0
    sessions_evicted: int = 0
    sessions_idle_closed: int = 0
    datagrams_dropped: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)


# --- OpenSSL context ---------------------------------------------------------------------------


def pending_bytes(conn: SSL.Connection, *, incoming: bool) -> int:
    """Bytes waiting in a connection's memory BIO: records fed to OpenSSL (``incoming``) or records
    OpenSSL wrote for the network."""
    bio = conn._into_ssl if incoming else conn._from_ssl
    return int(_lib.BIO_get_mem_data(bio, _ffi.NULL))  # BIO_ctrl_pending is not in the binding


def _openssl_error_text(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], list) and args[0]:
        return "; ".join(str(item[-1]) for item in args[0] if isinstance(item, tuple)) or repr(exc)
    return str(exc) or type(exc).__name__


class _ServerContext:
    """An ``SSL.Context`` for one snapshot of the trusted CAs, with its callbacks."""

    def __init__(
        self, engine: DtlsServerEngine, config: DtlsEngineConfig, cas: Sequence[x509.Certificate]
    ) -> None:
        ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
        ctx.set_min_proto_version(DTLS_1_2)
        ctx.set_max_proto_version(DTLS_1_2)
        # OP_NO_QUERY_MTU is safe only because every Connection gets set_ciphertext_mtu().
        ctx.set_options(
            SSL.OP_NO_QUERY_MTU
            | (SSL.OP_NO_RENEGOTIATION or 0)
            | SSL.OP_NO_TICKET
            | SSL.OP_NO_COMPRESSION
            | SSL.OP_SINGLE_ECDH_USE
            | (SSL.OP_COOKIE_EXCHANGE or 0)
        )
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_session_id(b"lwm2m-bootstrap-dtls")
        ctx.set_cipher_list(":".join(CIPHER_SUITES).encode() + b":" + _SECURITY_LEVEL)
        if _lib.SSL_CTX_set1_curves_list(ctx._context, ECDHE_GROUPS) != 1:
            raise RuntimeError("OpenSSL rejected the ECDHE group list")
        if _lib.SSL_CTX_set1_sigalgs_list(ctx._context, SIGNATURE_ALGORITHMS) != 1:
            raise RuntimeError("OpenSSL rejected the signature algorithm list")
        ctx.use_certificate(config.certificate_chain[0])
        for extra in config.certificate_chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(config.private_key)
        ctx.check_privatekey()

        store = ctx.get_cert_store()
        assert store is not None
        for ca in cas:
            store.add_cert(crypto.X509.from_cryptography(ca))
        # An operator may upload an intermediate as the trust anchor for a device fleet.
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        # RFC 7925 §4.4.2: the server requests, and requires, a client certificate.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, engine._verify_certificate)
        ctx.set_verify_depth(config.verify_depth)
        ctx.set_cookie_generate_callback(engine._generate_cookie)
        ctx.set_cookie_verify_callback(engine._verify_cookie)

        # pyOpenSSL 26 has no server PSK API; the cffi binding it uses has the OpenSSL call.
        psk_callback: Any = _ffi.callback(
            "unsigned int (*)(SSL *, const char *, unsigned char *, unsigned int)", engine._psk_lookup
        )
        _lib.SSL_CTX_set_psk_server_callback(ctx._context, psk_callback)
        self._psk_callback = psk_callback  # keep the cffi callback alive as long as ctx
        self.context = ctx


#: NID_ED25519 and NID_ED448 (OpenSSL's obj_mac.h), which the binding does not export.
_NID_ED25519, _NID_ED448 = 1087, 1088


def _strong_key(cert: crypto.X509) -> bool:
    """Whether the key passes :func:`_weakness`'s key checks, asked of the key OpenSSL has already
    parsed. ``cryptography``'s ``public_key()`` would decode it once more, which on a device's
    certificate costs about 1% of a journey. ``False`` means "look closer", not "weak"."""
    pkey = _lib.X509_get_pubkey(cert._x509)
    if pkey == _ffi.NULL:
        return False
    try:
        kind, bits = _lib.EVP_PKEY_id(pkey), _lib.EVP_PKEY_bits(pkey)
    finally:
        _lib.EVP_PKEY_free(pkey)
    if kind == _lib.EVP_PKEY_EC:
        return bool(bits >= _MIN_EC_BITS)
    if kind == _lib.EVP_PKEY_RSA:
        return bool(bits >= _MIN_RSA_BITS)
    return kind in (_NID_ED25519, _NID_ED448)


def _key_weakness(key: Any) -> str | None:
    """What is wrong with a chain certificate's key at security level 2, or ``None``."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < _MIN_EC_BITS:
            return f"EC key on {key.curve.name}"
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return f"unsupported key type {type(key).__name__}"
    return None


def _weakness(cert: x509.Certificate, *, self_signed: bool, strong_key: bool = False) -> str | None:
    """What OpenSSL's security level 2 would have refused in a chain certificate, or ``None``
    (``strong_key``: the key is already known to pass, see :func:`_strong_key`)."""
    problem = None if strong_key else _key_weakness(cert.public_key())
    if problem is not None:
        return problem
    if self_signed:
        return None  # a trust anchor's self-signature carries no weight (RFC 5280 §6.1)
    digest = cert.signature_hash_algorithm
    if digest is not None and digest.name not in _ACCEPTED_DIGESTS:
        return f"signature digest {digest.name}"
    return None


_SHA256_MD = _lib.EVP_get_digestbyname(b"sha256")


def _sha256_fingerprint(cert: crypto.X509) -> bytes:
    """X509_digest in C (pyOpenSSL's ``digest`` formats hex pairs in Python, a visible cost here)."""
    out = _ffi.new("unsigned char[]", 32)
    size = _ffi.new("unsigned int *")
    if not _lib.X509_digest(cert._x509, _SHA256_MD, out, size):
        raise ValueError("X509_digest failed")
    return bytes(_ffi.buffer(out, size[0]))


#: Verdicts of :func:`_weakness` on CA certificates by SHA-256 fingerprint: every handshake under
#: the same manufacturer CA presents the same CA certificates.
_CA_VERDICT_CACHE = 1024


# --- the engine --------------------------------------------------------------------------------


class DtlsServerEngine:
    """Sans-I/O DTLS 1.2 server: many peers on one socket, see the module docstring."""

    def __init__(
        self,
        config: DtlsEngineConfig,
        trust: TrustSource,
        handler: DtlsEventHandler,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.stats = DtlsEngineStats()
        self._trust = trust
        self._handler = handler
        self._random_bytes = random_bytes
        self._cookies = CookieAuthority(config.cookie_secret_lifetime, random_bytes)
        # Insertion order == least recently active first (move_to_end on activity).
        self._sessions: OrderedDict[PeerAddress, DtlsSession] = OrderedDict()
        self._timers: list[tuple[float, int, DtlsSession]] = []
        self._context: _ServerContext | None = None
        self._context_cas: object = None
        self._context_version: object = None
        self._ca_verdicts: dict[bytes, str | None] = {}
        self._closing = False

    # -- public API ------------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        """Sessions that exist (handshaking or established)."""
        return len(self._sessions)

    def sessions(self) -> list[DtlsSession]:
        """A snapshot of the live sessions, least recently active first."""
        return list(self._sessions.values())

    def session_for(self, peer: PeerAddress) -> DtlsSession | None:
        """The live session with ``peer``, if any."""
        return self._sessions.get(peer)

    def datagram_received(self, data: bytes, peer: PeerAddress, now: float) -> None:
        """Process one UDP datagram from ``peer``."""
        if self._closing:
            return
        session = self._sessions.get(peer)
        if data[:1] == b"\x16" and data[3:5] == b"\x00\x00":
            hello = parse_client_hello(data)
            if hello is not None:
                self._client_hello_received(hello, data, peer, session, now)
                return
        if session is None:
            self.stats.datagrams_dropped += 1
            return
        self._touch(session, now)
        conn = session._conn
        assert conn is not None
        conn.bio_write(data)
        self._drive(session, now)

    def send_application_data(self, session: DtlsSession, data: bytes, now: float) -> bool:
        """Encrypt ``data`` as one record and send it to the session's peer.

        Returns False (and sends nothing) if the session is not established or fails.
        """
        conn = session._conn
        if session.state is not SessionState.ESTABLISHED or conn is None:
            return False
        try:
            conn.send(data)
        except SSL.Error as exc:
            self._flush(session)
            self._close(session, f"write failed: {_openssl_error_text(exc)}", notify_peer=False)
            return False
        self._touch(session, now)
        self._flush(session)
        if session.timer_deadline is not None:
            self._update_timer(session, now)
        return True

    def close_session(self, session: DtlsSession, reason: str = "closed by server") -> None:
        """Close ``session``, sending close_notify if it was established."""
        self._close(session, reason, notify_peer=True)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` must be called next (``None``: no timer pending)."""
        timers = self._timers
        while timers:
            deadline, _, session = timers[0]
            if session.state is not SessionState.CLOSED and session.timer_deadline == deadline:
                break
            heapq.heappop(timers)
        candidates = []
        if timers:
            candidates.append(timers[0][0])
        if self._sessions:
            oldest = next(iter(self._sessions.values()))
            candidates.append(oldest.last_activity + self.config.idle_timeout)
        return min(candidates) if candidates else None

    def handle_timers(self, now: float) -> None:
        """Retransmit flights, expire handshakes and idle sessions that are due at ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, session = heapq.heappop(timers)
            if session.state is SessionState.CLOSED or session.timer_deadline != deadline:
                continue
            session.timer_deadline = None
            if session.state is SessionState.HANDSHAKING and now >= session.handshake_deadline:
                self._fail(session, "handshake timeout")
                continue
            conn = session._conn
            assert conn is not None
            try:
                # RFC 6347 §4.2.4: retransmit the last flight, doubling the timer.
                conn.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._flush(session)
                self._fail(session, f"retransmission limit: {_openssl_error_text(exc)}")
                continue
            self._flush(session)
            self._update_timer(session, now)
        idle_limit = now - self.config.idle_timeout
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_activity > idle_limit:
                break
            self.stats.sessions_idle_closed += 1
            self._close(oldest, "idle timeout", notify_peer=True)

    def shutdown(self) -> None:
        """Send close_notify to every established session and drop all sessions."""
        self._closing = True
        for session in list(self._sessions.values()):
            self._close(session, "server shutdown", notify_peer=True)
        self._timers.clear()

    # -- ClientHello and cookies ------------------------------------------------------------------

    def _client_hello_received(
        self, hello: ClientHello, data: bytes, peer: PeerAddress, session: DtlsSession | None, now: float
    ) -> None:
        if not hello.cookie or not self._cookies.verify(hello.cookie, peer, hello.bound_parameters, now):
            # RFC 6347 §4.2.1: answer statelessly; an existing session is left alone (§4.2.8).
            cookie = self._cookies.issue(peer, hello.bound_parameters, now)
            self.stats.hello_verify_requests += 1
            self._handler.send_datagram(build_hello_verify_request(hello.record_sequence, cookie), peer)
            return
        if session is not None:
            if session.client_hello == hello.message:
                # A retransmitted ClientHello: let OpenSSL treat it as a duplicate.
                if session.state is SessionState.HANDSHAKING and session._conn is not None:
                    self._touch(session, now)
                    session._conn.bio_write(data)
                    self._drive(session, now)
                return
            # RFC 6347 §4.2.8: the cookie exchange proved reachability; the peer lost its state.
            self.stats.sessions_replaced += 1
            self._close(session, "replaced by a new handshake from the same address", notify_peer=False)
        while len(self._sessions) >= self.config.max_sessions:
            oldest = next(iter(self._sessions.values()))
            self.stats.sessions_evicted += 1
            self._close(oldest, "evicted: session limit reached", notify_peer=True)
        self._start_session(hello, data, peer, now)

    def _start_session(self, hello: ClientHello, data: bytes, peer: PeerAddress, now: float) -> None:
        conn = SSL.Connection(self._current_context().context, None)
        session = DtlsSession(peer, conn, hello, now)
        session.handshake_deadline = now + self.config.handshake_timeout
        conn.set_app_data(session)
        conn.set_ciphertext_mtu(self.config.max_datagram_size)
        conn.set_accept_state()
        conn.bio_write(data)
        try:
            # Re-checks the cookie through _verify_cookie and sets the handshake and record
            # sequence numbers up to continue after a HelloVerifyRequest (RFC 6347 §4.2.2).
            conn.DTLSv1_listen()
        except SSL.Error as exc:
            self.stats.datagrams_dropped += 1
            log.debug("dtls.listen_rejected", peer=peer, reason=_openssl_error_text(exc))
            return
        conn.set_ciphertext_mtu(self.config.max_datagram_size)
        self.stats.handshakes_started += 1
        self._sessions[peer] = session
        self._drive(session, now)

    def _generate_cookie(self, conn: SSL.Connection) -> bytes:
        # Only reached if OpenSSL decides to send its own HelloVerifyRequest, which the
        # stateless check above already rules out; hand out a cookie that never verifies.
        return self._random_bytes(_COOKIE_LEN)

    def _verify_cookie(self, conn: SSL.Connection, cookie: bytes) -> bool:
        session = conn.get_app_data()
        return isinstance(session, DtlsSession) and hmac.compare_digest(cookie, session._expected_cookie)

    # -- credentials ------------------------------------------------------------------------------

    def _current_context(self) -> _ServerContext:
        cas = self._trust.trusted_cas()
        version = getattr(self._trust, "version", None)
        if self._context is None or cas is not self._context_cas or version != self._context_version:
            self._context = _ServerContext(self, self.config, cas)
            self._context_cas = cas
            self._context_version = version
            log.info("dtls.trust_store_rebuilt", trusted_cas=len(cas))
        return self._context

    def _verify_certificate(
        self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        session = conn.get_app_data()
        if not ok:
            if isinstance(session, DtlsSession) and session.failure_reason is None:
                text = _ffi.string(_lib.X509_verify_cert_error_string(errno)).decode(errors="replace")
                subject = cert.to_cryptography().subject.rfc4514_string()
                session.failure_reason = f"client certificate rejected (depth {depth}, {subject}): {text}"
            return False
        # X509_NAME_cmp in C, rather than parsing both names into Python objects.
        raw = cert._x509
        self_signed = _lib.X509_NAME_cmp(_lib.X509_get_subject_name(raw), _lib.X509_get_issuer_name(raw)) == 0
        if depth > 0:
            fingerprint = _sha256_fingerprint(cert)
            if fingerprint in self._ca_verdicts:
                problem = self._ca_verdicts[fingerprint]
            else:
                problem = _weakness(cert.to_cryptography(), self_signed=self_signed)
                if len(self._ca_verdicts) >= _CA_VERDICT_CACHE:
                    self._ca_verdicts.clear()
                self._ca_verdicts[fingerprint] = problem
        else:
            certificate = cert.to_cryptography()
            problem = _weakness(certificate, self_signed=self_signed, strong_key=_strong_key(cert))
            if problem is None:
                names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                if len(names) != 1 or not names[0].value:
                    problem = "client certificate needs exactly one subject common name"
            if problem is None and isinstance(session, DtlsSession):
                session.peer_certificate = certificate
        if problem is not None:
            if isinstance(session, DtlsSession) and session.failure_reason is None:
                session.failure_reason = f"client certificate rejected (depth {depth}): {problem}"
            return False
        return True

    def _psk_lookup(self, ssl: Any, identity: Any, psk_out: Any, max_psk_len: int) -> int:
        try:
            conn = SSL.Connection._reverse_mapping[ssl]
            session = conn.get_app_data()
            raw = _ffi.string(identity) if identity != _ffi.NULL else b""
            if not isinstance(session, DtlsSession):
                return 0
            session.psk_identity = raw
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                session.failure_reason = "PSK identity is not UTF-8"
                return 0
            key = self._trust.psk_for_identity(raw)
            if not key:
                session.failure_reason = f"unknown PSK identity {raw.decode()!r}"
                return 0
            if len(key) > min(max_psk_len, _MAX_PSK_LEN):
                session.failure_reason = "PSK too long"
                return 0
            _ffi.memmove(psk_out, key, len(key))
            return len(key)
        except Exception as exc:  # never let an exception unwind through OpenSSL
            log.exception("dtls.psk_lookup_failed", error=repr(exc))
            return 0

    # -- driving a session ------------------------------------------------------------------------

    def _drive(self, session: DtlsSession, now: float) -> None:
        conn = session._conn
        assert conn is not None
        if session.state is SessionState.HANDSHAKING:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                self._flush(session)  # the fatal alert
                self._fail(session, _openssl_error_text(exc))
                return
            else:
                if not self._established(session):
                    return
        if session.state is SessionState.ESTABLISHED:
            self._read_application_data(session)
            if session.timer_deadline is None:
                # With renegotiation off (OP_NO_RENEGOTIATION), an established session whose
                # handshake left no timer never arms one again: ask OpenSSL no more.
                self._flush(session)
                return
        if session.state is not SessionState.CLOSED:
            self._flush(session)
            self._update_timer(session, now)

    def _established(self, session: DtlsSession) -> bool:
        conn = session._conn
        assert conn is not None
        cipher = conn.get_cipher_name() or ""
        identity: DeviceIdentity | None = None
        if cipher.startswith("PSK-") and session.psk_identity is not None:
            identity = DeviceIdentity(kind="psk", name=session.psk_identity.decode("utf-8"), certificate=None)
        else:
            cert = session.peer_certificate or conn.get_peer_certificate(as_cryptography=True)
            if cert is not None:
                names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                if len(names) == 1:
                    value = names[0].value
                    name = value if isinstance(value, str) else value.decode("utf-8", "replace")
                    identity = DeviceIdentity(kind="x509", name=name, certificate=cert)
        if identity is None:
            self._send_close_notify(session)
            self._fail(session, "no usable client identity")
            return False
        session.identity = identity
        session.cipher = cipher
        session.state = SessionState.ESTABLISHED
        session.handshake_deadline = math.inf
        self.stats.handshakes_completed += 1
        self._flush(session)  # the server's final flight, before anything the handler sends
        log.debug("dtls.session_established", peer=session.peer, cipher=cipher, identity=identity.name)
        self._handler.session_established(session)
        return session.state is SessionState.ESTABLISHED

    def _read_application_data(self, session: DtlsSession) -> None:
        first = True
        while session.state is SessionState.ESTABLISHED:
            conn = session._conn
            assert conn is not None
            # Ask the BIOs whether anything is left rather than letting recv() raise WantReadError:
            # with one record per datagram the usual case, that saves an exception per datagram.
            if not first and not pending_bytes(conn, incoming=True) and not conn.pending():
                return
            first = False
            try:
                data = conn.recv(_RECV_SIZE)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                # close_notify from the peer: answer with ours (RFC 5246 §7.2.1).
                self._close(session, "close_notify from peer", notify_peer=True)
                return
            except SSL.Error as exc:
                self._flush(session)
                self._close(session, f"fatal: {_openssl_error_text(exc)}", notify_peer=False)
                return
            if data:
                self._handler.application_data(session, data)

    def _flush(self, session: DtlsSession) -> None:
        conn = session._conn
        if conn is None:
            return
        chunks = []
        while size := pending_bytes(conn, incoming=False):  # no WantReadError round trip
            chunks.append(conn.bio_read(max(size, 1)))
        if not chunks:
            return
        flight = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        for datagram in split_into_datagrams(flight, self.config.max_datagram_size):
            self._handler.send_datagram(datagram, session.peer)

    def _update_timer(self, session: DtlsSession, now: float) -> None:
        conn = session._conn
        if conn is None or session.state is SessionState.CLOSED:
            return
        deadline: float | None = None
        remaining = conn.DTLSv1_get_timeout()
        if remaining is not None:
            deadline = now + remaining
        if session.state is SessionState.HANDSHAKING:
            deadline = (
                session.handshake_deadline if deadline is None else min(deadline, session.handshake_deadline)
            )
        if deadline != session.timer_deadline:
            session.timer_deadline = deadline
            if deadline is not None:
                heapq.heappush(self._timers, (deadline, session.serial, session))

    def _touch(self, session: DtlsSession, now: float) -> None:
        session.last_activity = now
        if self._sessions.get(session.peer) is session:
            self._sessions.move_to_end(session.peer)

    def _send_close_notify(self, session: DtlsSession) -> None:
        conn = session._conn
        if conn is not None:
            try:
                conn.shutdown()
            except SSL.Error:
                pass
            self._flush(session)

    def _fail(self, session: DtlsSession, reason: str) -> None:
        key = session.failure_reason or reason
        detail = key if key == reason else f"{key} ({reason})"
        self.stats.handshakes_failed += 1
        self.stats.failure_reasons[key] = self.stats.failure_reasons.get(key, 0) + 1
        log.info("dtls.handshake_failed", peer=session.peer, reason=detail)
        self._close(session, detail, notify_peer=False)

    def _close(self, session: DtlsSession, reason: str, *, notify_peer: bool) -> None:
        if session.state is SessionState.CLOSED:
            return
        was_established = session.state is SessionState.ESTABLISHED
        if notify_peer and was_established:
            self._send_close_notify(session)
        session.state = SessionState.CLOSED
        session.timer_deadline = None
        if self._sessions.get(session.peer) is session:
            del self._sessions[session.peer]
        conn = session._conn
        session._conn = None
        if conn is not None:
            conn.set_app_data(None)
        if was_established:
            log.debug("dtls.session_closed", peer=session.peer, reason=reason)
        self._handler.session_closed(session, reason)
