"""DTLS 1.2 client for the device simulator (certificate or PSK mode).

:class:`DtlsClientConnection` is a sans-I/O client connection on pyOpenSSL memory BIOs:
feed it datagrams, it returns datagrams to send. :class:`ClientSession` runs one on its own UDP
socket for a :class:`SessionOwner`. Two owners use it: the simulator's devices
(:class:`device_sim.connection.DeviceConnection`, with a light CoAP link of their own), and an
aiocoap transport, further down (:func:`add_dtls_client_transport`), which the tests use as an
independent CoAP client::

    context = await aiocoap.Context.create_client_context()
    await add_dtls_client_transport(context, CertificateCredentials(...))
    context.serversite = device_site          # to answer the server's requests
    response = await context.request(Message(code=GET, uri="coaps://[::1]/bspack?ep=dev")).response
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiocoap import Message, error, interfaces
from aiocoap.numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
from aiocoap.util import hostportjoin, hostportsplit
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from bootstrap.coap.dtls import pending_bytes, split_into_datagrams
from bootstrap.coap.dtls_transport import ForgivingRecentMessages, forgive_recent_messages

__all__ = [
    "CertificateCredentials",
    "ClientContext",
    "ClientCredentials",
    "ClientSession",
    "DtlsClientAddress",
    "DtlsClientConnection",
    "DtlsClientError",
    "DtlsClientTransport",
    "PskCredentials",
    "ServerNotPinned",
    "SessionOwner",
    "add_dtls_client_transport",
    "open_datagram_endpoint",
]

DTLS_1_2 = 0xFEFD
CERTIFICATE_SUITES = ("ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES128-GCM-SHA256")
PSK_SUITES = ("PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256")
#: Key exchange groups a simulated device offers (see :class:`ClientContext`).
ECDHE_GROUPS = b"P-256"


@dataclass(frozen=True, kw_only=True)
class CertificateCredentials:
    """A device certificate (leaf first, then intermediates) and its key, and how the device
    authenticates the server.

    ``pinned_server_certificate`` (DER) is LwM2M Certificate Usage 3, "domain-issued certificate",
    the default when resource 15 of the Security object is absent (OMA registry 0.xml; the usages
    are DANE's, RFC 6698 §2.1.1): the server must present exactly this certificate, and no chain
    is built or verified. Otherwise ``trusted_cas`` verifies the server's chain (usage 2, trust anchor
    assertion). With neither, the server is not verified (acceptable for a load generator, never
    for a real device).
    """

    certificate_chain: tuple[x509.Certificate, ...]
    private_key: ec.EllipticCurvePrivateKey
    trusted_cas: tuple[x509.Certificate, ...] = ()
    pinned_server_certificate: bytes = b""

    @property
    def chain_trust(self) -> tuple[x509.Certificate, ...]:
        """The trust anchors OpenSSL verifies the server's chain with (none when pinned)."""
        return () if self.pinned_server_certificate else self.trusted_cas


@dataclass(frozen=True, kw_only=True)
class PskCredentials:
    """A PSK identity and key (RFC 4279)."""

    identity: bytes
    key: bytes


ClientCredentials = CertificateCredentials | PskCredentials


class DtlsClientError(Exception):
    """The handshake failed or the connection broke."""


class ServerNotPinned(DtlsClientError):
    """The server presented a certificate other than the pinned one (certificate usage 3)."""


class ClientContext:
    """An ``SSL.Context`` for a DTLS 1.2 client (shareable between connections).

    With ``per_connection=True`` the context carries no device identity: each connection installs
    its own certificate and key, or answers the PSK callback with its own identity, so a fleet of
    devices shares one context (one trust store) instead of building one per device.
    """

    def __init__(
        self,
        credentials: ClientCredentials,
        cipher_suites: Sequence[str] | None = None,
        *,
        per_connection: bool = False,
    ) -> None:
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        ctx.set_min_proto_version(DTLS_1_2)
        ctx.set_max_proto_version(DTLS_1_2)
        ctx.set_options(
            SSL.OP_NO_QUERY_MTU | (SSL.OP_NO_RENEGOTIATION or 0) | SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION
        )
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        self.per_connection = per_connection
        self._psk_callback: Any = None
        default = CERTIFICATE_SUITES if isinstance(credentials, CertificateCredentials) else PSK_SUITES
        suites = tuple(cipher_suites or default)
        # OpenSSL 3+ rates *_CCM_8 below its default security level 2; LwM2M mandates them.
        level = b":@SECLEVEL=0" if any("CCM8" in suite for suite in suites) else b""
        ctx.set_cipher_list(":".join(suites).encode() + level)
        # Offer secp256r1 alone, as a constrained LwM2M device does (RFC 7925 §4.4.2 makes it the
        # one curve to support). OpenSSL's default list puts X25519 first, and a server that takes
        # the client's order would then measure a key exchange real devices never ask for.
        if _lib.SSL_CTX_set1_curves_list(ctx._context, ECDHE_GROUPS) != 1:
            raise DtlsClientError("OpenSSL rejected the ECDHE group list")
        if isinstance(credentials, CertificateCredentials):
            if not per_connection:
                ctx.use_certificate(credentials.certificate_chain[0])
                for extra in credentials.certificate_chain[1:]:
                    ctx.add_extra_chain_cert(extra)
                ctx.use_privatekey(credentials.private_key)
            if credentials.chain_trust:
                store = ctx.get_cert_store()
                assert store is not None
                for ca in credentials.chain_trust:
                    store.add_cert(crypto.X509.from_cryptography(ca))
                ctx.set_verify(SSL.VERIFY_PEER)
            else:
                # Pinned or not verified: OpenSSL checks no chain. A pinned certificate is compared
                # when the handshake completes (DtlsClientConnection); the ServerKeyExchange
                # signature, which proves the server holds its key, is checked in either mode.
                ctx.set_verify(SSL.VERIFY_NONE)
        else:
            fixed = None if per_connection else credentials

            def psk_client(ssl: Any, hint: Any, id_out: Any, max_id: int, psk_out: Any, max_psk: int) -> int:
                own = fixed
                if own is None:  # the connection's own credentials
                    connection = SSL.Connection._reverse_mapping.get(ssl)
                    own = connection.get_app_data() if connection is not None else None
                if not isinstance(own, PskCredentials):
                    return 0
                identity, key = own.identity, own.key
                if len(identity) + 1 > max_id or len(key) > max_psk:
                    return 0
                _ffi.memmove(id_out, identity + b"\x00", len(identity) + 1)
                _ffi.memmove(psk_out, key, len(key))
                return len(key)

            self._psk_callback = _ffi.callback(
                "unsigned int (*)(SSL *, const char *, char *, unsigned int, unsigned char *, unsigned int)",
                psk_client,
            )
            _lib.SSL_CTX_set_psk_client_callback(ctx._context, self._psk_callback)
        self.context = ctx


_SHARED: dict[tuple[Any, ...], ClientContext] = {}
#: id(key) → (key, its pyOpenSSL form): a fleet's devices share a pool of keys, and converting one
#: (a PKCS#8 round trip) cost more than the rest of installing it. The key is held so its id
#: cannot be reused while it is here.
_PKEYS: dict[int, tuple[ec.EllipticCurvePrivateKey, crypto.PKey]] = {}


def _pyopenssl_key(key: ec.EllipticCurvePrivateKey) -> crypto.PKey:
    entry = _PKEYS.get(id(key))
    if entry is None or entry[0] is not key:
        if len(_PKEYS) >= 4096:
            _PKEYS.clear()
        entry = _PKEYS[id(key)] = (key, crypto.PKey.from_cryptography_key(key))
    return entry[1]


def shared_context(
    credentials: ClientCredentials, cipher_suites: Sequence[str] | None = None
) -> ClientContext:
    """One :class:`ClientContext` per kind of credentials, trust anchors and suites, for every
    device of a fleet (an ``SSL_CTX`` with its trust store costs more to build than a handshake's
    key exchange). Certificate chains longer than the leaf get a context of their own."""
    if isinstance(credentials, CertificateCredentials):
        if len(credentials.certificate_chain) > 1:
            return ClientContext(credentials, cipher_suites)
        key: tuple[Any, ...] = ("x509", credentials.chain_trust, tuple(cipher_suites or ()))
    else:
        key = ("psk", tuple(cipher_suites or ()))
    context = _SHARED.get(key)
    if context is None:
        context = _SHARED[key] = ClientContext(credentials, cipher_suites, per_connection=True)
    return context


async def open_datagram_endpoint(protocol: asyncio.DatagramProtocol, host: str, port: int) -> None:
    """A UDP socket connected to ``host:port`` for ``protocol``.

    A numeric address gets its socket made here: the event loop's own path
    (``create_datagram_endpoint(remote_addr=...)``) resolves even numeric addresses and cost a
    simulated device three times as much CPU. Names go through the loop's resolver.
    """
    loop = asyncio.get_running_loop()
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        await loop.create_datagram_endpoint(lambda: protocol, remote_addr=(host, port))
        return
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))  # UDP: sets the peer, nothing is sent
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise


class DtlsClientConnection:
    """A sans-I/O DTLS 1.2 client connection. Methods return datagrams to send."""

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        max_datagram_size: int = 1232,
        cipher_suites: Sequence[str] | None = None,
        context: ClientContext | None = None,
    ) -> None:
        self._max = max_datagram_size
        self._context = context or ClientContext(credentials, cipher_suites)
        self._conn = SSL.Connection(self._context.context, None)
        if self._context.per_connection:
            if isinstance(credentials, CertificateCredentials):
                self._conn.use_certificate(credentials.certificate_chain[0])
                # SSL_use_PrivateKey with the cached conversion (pyOpenSSL's use_privatekey would
                # convert the key again on every connection).
                pkey = _pyopenssl_key(credentials.private_key)
                if _lib.SSL_use_PrivateKey(self._conn._ssl, pkey._pkey) != 1:
                    raise DtlsClientError("OpenSSL refused the device key")
            else:
                self._conn.set_app_data(credentials)
        self._pinned = (
            credentials.pinned_server_certificate if isinstance(credentials, CertificateCredentials) else b""
        )
        self._conn.set_ciphertext_mtu(max_datagram_size)
        self._conn.set_connect_state()
        self.handshake_complete = False
        self.closed = False
        self.error: str | None = None
        self.failure: BaseException | None = None
        """What ended the connection, when something did."""
        self.received: deque[bytes] = deque()

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite (OpenSSL name)."""
        name: str | None = self._conn.get_cipher_name()
        return name

    def start(self) -> list[bytes]:
        """Begin the handshake: the ClientHello datagram(s)."""
        return self._step()

    def datagram_received(self, data: bytes) -> list[bytes]:
        """Process one datagram from the server."""
        if self.closed:
            return []
        self._conn.bio_write(data)
        return self._step()

    def send(self, data: bytes) -> list[bytes]:
        """Encrypt one record of application data."""
        if not self.handshake_complete or self.closed:
            raise DtlsClientError("connection is not established")
        try:
            self._conn.send(data)
        except SSL.Error as exc:
            self._fail(exc)
        return self._drain()

    def timeout(self) -> float | None:
        """Seconds until :meth:`handle_timeout` is due (``None``: no timer)."""
        if self.closed:
            return None
        remaining: float | None = self._conn.DTLSv1_get_timeout()
        return remaining

    def handle_timeout(self) -> list[bytes]:
        """Retransmit the last flight if its timer expired (RFC 6347 §4.2.4)."""
        if self.closed:
            return []
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(exc)
        return self._drain()

    def close(self) -> list[bytes]:
        """Send close_notify and stop."""
        if self.closed:
            return []
        if self.handshake_complete:
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
        self.closed = True
        return self._drain()

    def _server_is_pinned(self) -> bool:
        peer = self._conn.get_peer_certificate()
        return peer is not None and crypto.dump_certificate(crypto.FILETYPE_ASN1, peer) == self._pinned

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        self.failure = exc
        self.error = str(exc) or type(exc).__name__

    def _step(self) -> list[bytes]:
        if not self.handshake_complete:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                return self._drain()
            except SSL.Error as exc:
                self._fail(exc)
                return self._drain()
            if self._pinned and not self._server_is_pinned():
                # No application data has been sent under this session: end it with close_notify.
                try:
                    self._conn.shutdown()
                except SSL.Error:
                    pass
                self._fail(ServerNotPinned("server certificate is not the pinned one (certificate usage 3)"))
                return self._drain()
            self.handshake_complete = True
        while not self.closed:
            # Ask the BIOs first rather than letting recv() raise WantReadError (see the server's
            # engine): a datagram usually holds one record, so this saves an exception per datagram.
            if not pending_bytes(self._conn, incoming=True) and not self._conn.pending():
                break
            try:
                data = self._conn.recv(20000)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.closed = True
                self.error = "close_notify from server"
                break
            except SSL.Error as exc:
                self._fail(exc)
                break
            self.received.append(data)
        return self._drain()

    def _drain(self) -> list[bytes]:
        chunks = []
        while size := pending_bytes(self._conn, incoming=False):
            chunks.append(self._conn.bio_read(size))
        return split_into_datagrams(b"".join(chunks), self._max)


# --- aiocoap transport -------------------------------------------------------------------------------


class DtlsClientAddress(interfaces.EndpointAddress):  # type: ignore[misc]
    """A server reached over one client-side DTLS session."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP
    maximum_payload_size = 1024

    def __init__(self, session: ClientSession) -> None:
        self._session: ClientSession | _EndedSession = session
        self._session_id = id(session)

    def detach(self) -> None:
        """The session is over: keep its name, drop the session. aiocoap's 247-second
        deduplication timers hold this address; they must not hold a TLS connection that long
        (at a hundred devices a second that was tens of thousands of dead sessions)."""
        session = self._session
        if isinstance(session, ClientSession):
            self._session = _EndedSession(session.host, session.port, getattr(session, "sockname", None))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.hostinfo}>"

    @property
    def hostinfo(self) -> str:
        """``host:port`` of the server."""
        text: str = hostportjoin(self._session.host, self._session.port)
        return text

    @property
    def hostinfo_local(self) -> str:
        """``host:port`` of the local socket."""
        name = self._session.sockname
        text: str = hostportjoin(str(name[0]), int(name[1])) if name else ""
        return text

    @property
    def uri_base(self) -> str:
        """``coaps://host:port`` of the server."""
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        """``coaps://`` URI of the local socket."""
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> tuple[str, int, int]:
        """Blocks combine only within one session."""
        return (self._session.host, self._session.port, self._session_id)

    @property
    def cipher(self) -> str | None:
        """The negotiated suite (``None`` once the session is over)."""
        session = self._session
        return session.conn.cipher if isinstance(session, ClientSession) else None

    def send(self, data: bytes) -> None:
        """Encrypt and send one CoAP message (dropped once the session is over)."""
        session = self._session
        if isinstance(session, ClientSession):
            session.send_plaintext(data)


@dataclass(frozen=True)
class _EndedSession:
    """What a detached :class:`DtlsClientAddress` remembers of its session."""

    host: str
    port: int
    sockname: Any


class SessionOwner(Protocol):
    """Who a :class:`ClientSession` works for: an aiocoap transport, or a simulated device's
    connection (:mod:`device_sim.connection`)."""

    credentials: ClientCredentials
    max_datagram_size: int
    client_context: ClientContext

    def plaintext_received(self, session: ClientSession, data: bytes) -> None:
        """A decrypted record (one CoAP message) arrived."""

    def session_ended(self, session: ClientSession, reason: str) -> None:
        """The session failed or was closed."""


class ClientSession(asyncio.DatagramProtocol):
    """One DTLS session on its own connected UDP socket."""

    def __init__(self, interface: SessionOwner, host: str, port: int) -> None:
        self.interface = interface
        self.host = host
        self.port = port
        self.conn = DtlsClientConnection(
            interface.credentials,
            max_datagram_size=interface.max_datagram_size,
            context=interface.client_context,
        )
        self.address = DtlsClientAddress(self)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Closing a session nobody awaits (a context shut down after its request) fails this
        # future; mark the exception as seen so asyncio does not report it as lost.
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.transport: asyncio.DatagramTransport | None = None
        self.sockname: tuple[Any, ...] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    async def connect(self) -> None:
        """Open the session's UDP socket; the handshake starts at once (``OSError`` if the
        server's address cannot be used)."""
        await open_datagram_endpoint(self, self.host, self.port)

    async def handshake(self, limit_s: float) -> None:
        """Wait for the handshake to complete; :class:`DtlsClientError` if it fails or takes
        longer than ``limit_s`` seconds (the session is then closed)."""
        try:
            async with asyncio.timeout(limit_s):
                await asyncio.shield(self.ready)
        except TimeoutError:
            self._fail("handshake timeout")
            raise DtlsClientError("handshake timed out") from None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sockname = self.transport.get_extra_info("sockname")
        self._emit(self.conn.start())

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._emit(self.conn.datagram_received(data))

    def error_received(self, exc: Exception) -> None:
        if not self.ready.done():
            self._fail(f"socket error: {exc}")

    def send_plaintext(self, data: bytes) -> None:
        if self.closed or not self.conn.handshake_complete:
            return
        self._emit(self.conn.send(data))

    def _emit(self, datagrams: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            for datagram in datagrams:
                self.transport.sendto(datagram)
        if self.conn.handshake_complete and not self.ready.done():
            self.ready.set_result(None)
        while self.conn.received:
            self.interface.plaintext_received(self, self.conn.received.popleft())
        if self.conn.closed:
            self._fail(self.conn.error or "closed")
            return
        if not self.conn.handshake_complete:
            self._arm_timer()
        elif self._timer is not None:
            # The handshake is over and renegotiation is off: OpenSSL has no flight left to
            # retransmit (RFC 6347 §4.2.4), so an established session needs no timer.
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        remaining = self.conn.timeout()
        if remaining is not None:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.closed:
            self._emit(self.conn.handle_timeout())

    def _fail(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if not self.ready.done():
            failure = self.conn.failure
            self.ready.set_exception(
                failure if isinstance(failure, DtlsClientError) else DtlsClientError(reason)
            )
        self.interface.session_ended(self, reason)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            for datagram in self.conn.close():
                self.transport.sendto(datagram)
        self._fail("closed by client")


class DtlsClientTransport(interfaces.MessageInterface):  # type: ignore[misc]
    """aiocoap client MessageInterface for ``coaps://`` with one set of device credentials."""

    def __init__(
        self,
        mman: Any,
        credentials: ClientCredentials,
        *,
        mtu: int = 1280,
        handshake_timeout: float = 30.0,
        cipher_suites: Sequence[str] | None = None,
    ) -> None:
        self._mman: Any = mman
        self.credentials = credentials
        self.client_context = shared_context(credentials, cipher_suites)
        self.max_datagram_size = mtu - 48
        self.handshake_timeout = handshake_timeout
        self._sessions: dict[tuple[str, int], ClientSession] = {}
        self._shut = False

    def plaintext_received(self, session: ClientSession, data: bytes) -> None:
        """A CoAP message arrived from a server."""
        if self._mman is None:
            return
        try:
            message = Message.decode(data, remote=session.address)
        except error.UnparsableMessage:
            return
        self._mman.dispatch_message(message)

    def session_ended(self, session: ClientSession, reason: str) -> None:
        """Forget a session and fail what was pending on it."""
        key = (session.host, session.port)
        if self._sessions.get(key) is session:
            del self._sessions[key]
        if self._mman is not None and session.ready.done() and session.ready.exception() is None:
            self._mman.dispatch_error(error.NetworkError(f"DTLS session ended: {reason}"), session.address)
        # After aiocoap has failed what was pending on the address, in this same turn of the loop.
        asyncio.get_running_loop().call_soon(session.address.detach)

    async def _session_for(self, host: str, port: int) -> ClientSession:
        key = (host, port)
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = ClientSession(self, host, port)
            self._sessions[key] = session
            try:
                await session.connect()
            except OSError as exc:
                self._sessions.pop(key, None)
                raise error.NetworkError(f"cannot reach {host}:{port}: {exc}") from exc
        try:
            await session.handshake(self.handshake_timeout)
        except DtlsClientError as exc:
            raise error.NetworkError(f"DTLS handshake with {host}:{port} failed: {exc}") from exc
        return session

    # -- aiocoap MessageInterface --

    def send(self, message: Message) -> None:
        """aiocoap: encrypt and send."""
        if self._mman is not None:
            message.remote.send(message.encode())

    async def recognize_remote(self, remote: object) -> bool:
        """aiocoap: whether ``remote`` belongs to this transport."""
        if not isinstance(remote, DtlsClientAddress):
            return False
        session = remote._session
        return isinstance(session, ClientSession) and session.interface is self

    async def determine_remote(self, request: Message) -> DtlsClientAddress | None:
        """aiocoap: the session (handshaking now if needed) for a ``coaps://`` request."""
        if request.requested_scheme != "coaps":
            return None
        if self._shut:
            raise error.LibraryShutdown()
        if request.unresolved_remote is not None:
            host, port = hostportsplit(request.unresolved_remote)
        elif request.opt.uri_host:
            host, port = request.opt.uri_host, request.opt.uri_port
        else:
            raise ValueError("no host to send to")
        session = await self._session_for(host.strip("[]"), port or 5684)
        return session.address

    async def shutdown(self) -> None:
        """aiocoap: close_notify every session and close the sockets."""
        self._shut = True
        recent = getattr(self._mman, "_recent_messages", None)
        if isinstance(recent, ForgivingRecentMessages):
            recent.clear()  # the device is gone: don't keep its exchanges alive for 247 s
        self._mman = None
        for session in list(self._sessions.values()):
            session.close()
            session.address.detach()
        self._sessions.clear()


async def add_dtls_client_transport(
    context: Any,
    credentials: ClientCredentials,
    *,
    mtu: int = 1280,
    handshake_timeout: float = 30.0,
    cipher_suites: Sequence[str] | None = None,
) -> DtlsClientTransport:
    """Let an aiocoap ``Context`` speak ``coaps://`` with these device credentials.

    Call it once per simulated device context. To answer the server's requests (Bootstrap-Write,
    Delete, ...) give the context a site: ``context.serversite = site``.
    """
    created: list[DtlsClientTransport] = []

    async def construct(mman: Any) -> DtlsClientTransport:
        forgive_recent_messages(mman)
        transport = DtlsClientTransport(
            mman, credentials, mtu=mtu, handshake_timeout=handshake_timeout, cipher_suites=cipher_suites
        )
        created.append(transport)
        return transport

    await context._append_tokenmanaged_messagemanaged_transport(construct)
    request_interfaces: list[Any] = context.request_interfaces
    request_interfaces.insert(0, request_interfaces.pop())
    return created[0]
