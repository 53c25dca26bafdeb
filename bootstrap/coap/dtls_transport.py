"""``coaps://`` for aiocoap: the DTLS engine of :mod:`bootstrap.coap.dtls` as an aiocoap transport.

Plug it into a server context with::

    context = await aiocoap.Context.create_server_context(site, bind=("::", 5683))
    dtls = await start_dtls_server(context, settings, trust)
    ...
    await dtls.shutdown()        # or just context.shutdown()

The transport is a MessageInterface below aiocoap's own MessageManager and TokenManager,
exactly like the UDP transport, so CON retransmission, deduplication, block-wise transfer
and observation work unchanged over DTLS. Each established DTLS session is one
:class:`DtlsEndpointAddress` (so its hash changes with every new session, as RFC 7252
§9.1.2 wants): requests arrive with it as ``request.remote``; the server can send its own
requests to the device over the same session with ``Message(..., remote=request.remote)``;
``request.remote.authenticated_claims`` is ``[DeviceIdentity(...)]``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from aiocoap import Message, error, interfaces
from aiocoap.numbers.constants import MAX_REGULAR_BLOCK_SIZE_EXP
from aiocoap.util import hostportjoin, hostportsplit
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap import metrics
from bootstrap.coap.direct import DirectLane, LaneRoutes, LaneState
from bootstrap.coap.dtls import (
    DtlsEngineConfig,
    DtlsEngineStats,
    DtlsServerEngine,
    DtlsSession,
    PeerAddress,
    TrustSource,
    psk_identity_in,
)
from bootstrap.identity import DeviceIdentity

__all__ = [
    "DtlsEndpointAddress",
    "DtlsMessageInterface",
    "DtlsServer",
    "DtlsServerSettings",
    "DtlsSessionClosed",
    "TrustSource",
    "start_dtls_server",
]

log = structlog.get_logger(__name__)

COAPS_PORT = 5684
_IPV4_OVERHEAD = 20 + 8
_IPV6_OVERHEAD = 40 + 8
#: CoAP payload per message or block: 1024 + CoAP header and options + DTLS record overhead
#: (13-byte header, at most 64 bytes of IV/MAC/padding with CBC-SHA256) fits 1280-48.
_MAX_PAYLOAD = 1024


@dataclass(frozen=True, kw_only=True)
class DtlsServerSettings:
    """Where and how to serve ``coaps://``.

    ``mtu`` is the path MTU in bytes, IP and UDP headers included (1280 is the IPv6
    minimum and safe everywhere); datagrams are at most ``mtu`` minus 48 (IPv6 socket)
    or 28 (IPv4 socket) bytes. ``reuse_port`` sets SO_REUSEPORT so that several worker
    processes can share the port (the kernel keeps each peer on one worker).
    ``receive_buffer`` is the socket's SO_RCVBUF in bytes (0: the system default). Every device
    shares this one socket: when the process is descheduled or busy for a moment, datagrams queue
    here, and what does not fit is dropped by the kernel and costs the device a retransmission
    (1 s for a handshake flight, 2-3 s for a CoAP request). Linux caps the size at
    ``net.core.rmem_max``.
    """

    bind: tuple[str, int]
    certificate_chain: tuple[x509.Certificate, ...]
    private_key: ec.EllipticCurvePrivateKey
    mtu: int = 1280
    idle_timeout: float = 300.0
    max_sessions: int = 10_000
    handshake_timeout: float = 60.0
    reuse_port: bool = False
    receive_buffer: int = 4 * 2**20


def _set_receive_buffer(sock: Any, size: int) -> int:
    """Ask for an SO_RCVBUF of ``size`` bytes (0: leave it); return what the socket has."""
    if size > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    # Linux reports twice the usable size it granted (socket(7)); less than asked means the
    # request was capped at net.core.rmem_max.
    if size > 0 and granted < size:
        log.warning(
            "dtls.receive_buffer_capped",
            requested=size,
            granted=granted,
            hint="raise the net.core.rmem_max sysctl",
        )
    return granted


class DtlsSessionClosed(error.NetworkError):  # type: ignore[misc]
    """The DTLS session a message belonged to has ended (idle, replaced, evicted, shutdown...)."""


class ForgivingRecentMessages(dict[Any, Any]):
    """aiocoap's deduplication memory (``MessageManager._recent_messages``, RFC 7252 §4.5), whose
    expiry timers tolerate an entry removed early.

    aiocoap keeps every request's message id, with its response, for EXCHANGE_LIFETIME (247 s) and
    pops it from a timer. Once a DTLS session is closed nothing can match those entries again, yet
    they keep the session's endpoint and responses alive for four minutes: at a hundred devices a
    second that is tens of thousands of dead sessions, and ever slower garbage collections. The
    transport drops a closed session's entries; the timer then finds nothing, which is fine.
    """

    def pop(self, key: Any, *default: Any) -> Any:
        return super().pop(key, *default) if default else super().pop(key, None)


def forgive_recent_messages(mman: Any) -> ForgivingRecentMessages | None:
    """Install :class:`ForgivingRecentMessages` in an aiocoap message manager (aiocoap 0.4.17)."""
    recent = getattr(mman, "_recent_messages", None)
    if isinstance(recent, ForgivingRecentMessages):
        return recent
    if isinstance(recent, dict):
        mman._recent_messages = ForgivingRecentMessages(recent)
        return mman._recent_messages  # type: ignore[no-any-return]
    return None


class DtlsEndpointAddress(interfaces.EndpointAddress):  # type: ignore[misc]
    """A peer reached through one DTLS session. Compares by identity: one object per session."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False
    # A class attribute (not the base class property) so aiocoap can lower it per remote.
    maximum_block_size_exp = MAX_REGULAR_BLOCK_SIZE_EXP
    maximum_payload_size = _MAX_PAYLOAD

    def __init__(
        self, interface: DtlsMessageInterface, session: DtlsSession, identity: DeviceIdentity
    ) -> None:
        self._interface = interface
        self._session = session
        self._identity = identity
        self._hostinfo: str = hostportjoin(str(session.peer[0]), int(session.peer[1]))
        #: Message ids of requests received on this session (the newest few hundred), so their
        #: deduplication entries can be dropped when the session ends.
        self.request_mids: deque[int] = deque(maxlen=512)
        #: The direct lane's memory of this session (:mod:`bootstrap.coap.direct`).
        self.lane_state: LaneState | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._hostinfo} {self._identity.kind}:{self._identity.name!r}>"

    @property
    def direct_lane(self) -> DirectLane | None:
        """The direct lane of this session's transport, for the server's own requests."""
        return self._interface.direct

    @property
    def peer(self) -> PeerAddress:
        """The socket address of the peer."""
        return self._session.peer

    @property
    def session(self) -> DtlsSession:
        """The DTLS session (closed sessions stay reachable here, but sending is a no-op)."""
        return self._session

    @property
    def identity(self) -> DeviceIdentity:
        """The identity the peer authenticated with."""
        return self._identity

    @property
    def is_secure(self) -> bool:
        """Always True: messages through this address are DTLS protected."""
        return True

    @property
    def hostinfo(self) -> str:
        """``host:port`` of the peer."""
        return self._hostinfo

    @property
    def hostinfo_local(self) -> str:
        """``host:port`` the server socket is bound to."""
        return self._interface.hostinfo_local

    @property
    def uri_base(self) -> str:
        """``coaps://host:port`` of the peer."""
        return "coaps://" + self._hostinfo

    @property
    def uri_base_local(self) -> str:
        """``coaps://host:port`` of the server socket."""
        return "coaps://" + self._interface.hostinfo_local

    @property
    def authenticated_claims(self) -> list[DeviceIdentity]:
        """The authenticated identity, as the single claim."""
        return [self._identity]

    @property
    def blockwise_key(self) -> tuple[PeerAddress, int]:
        """Blocks combine only within one session of one peer."""
        return (self._session.peer, self._session.serial)

    def send(self, data: bytes) -> None:
        """Encrypt and send one CoAP message (used by the message interface)."""
        self._interface.send_plaintext(self._session, data)

    def release(self) -> None:
        """The session ended: keep the name, drop the certificate. aiocoap's pending expiry timers
        may hold this address for minutes; it should not hold the certificate that long."""
        light = DeviceIdentity(kind=self._identity.kind, name=self._identity.name)
        self._identity = light
        self._session.identity = light
        self.lane_state = None


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, interface: DtlsMessageInterface) -> None:
        self._interface = interface

    def datagram_received(self, data: bytes, addr: PeerAddress) -> None:
        self._interface.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable etc.); DTLS has its own timers, nothing to do.
        log.debug("dtls.socket_error", error=str(exc))


@runtime_checkable
class PskPrefetcher(Protocol):
    """Optional trust-source capability: PSKs loaded on demand (millions of devices)."""

    def psk_known(self, identity: bytes) -> bool:
        """Whether :meth:`TrustSource.psk_for_identity` can answer for ``identity`` without I/O."""
        ...

    async def prefetch_psk(self, identity: bytes) -> None:
        """Load ``identity``'s key (or its absence) so the synchronous lookup can answer."""
        ...


class DtlsMessageInterface(interfaces.MessageInterface):  # type: ignore[misc]
    """aiocoap MessageInterface serving ``coaps://`` through a :class:`DtlsServerEngine`."""

    def __init__(
        self, mman: Any, settings: DtlsServerSettings, trust: TrustSource, lane: LaneRoutes | None = None
    ) -> None:
        self._mman: Any = mman
        #: Exchanges that need nothing of aiocoap happen here (see bootstrap.coap.direct).
        self.direct: DirectLane | None = DirectLane(lane, mman._next_message_id) if lane is not None else None
        self._settings = settings
        self._trust = trust
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self.hostinfo_local: str = ""
        self.engine: DtlsServerEngine | None = None
        self._held: dict[PeerAddress, list[bytes]] = {}
        self._recent: ForgivingRecentMessages | None = None
        # Decided once: isinstance() against a runtime-checkable Protocol is slow per datagram.
        self._prefetcher: PskPrefetcher | None = trust if isinstance(trust, PskPrefetcher) else None
        self._fetches: set[asyncio.Task[None]] = set()

    @classmethod
    async def create(
        cls, mman: Any, settings: DtlsServerSettings, trust: TrustSource, lane: LaneRoutes | None = None
    ) -> DtlsMessageInterface:
        """Bind the socket and build the engine."""
        self = cls(mman, settings, trust, lane)
        self._recent = forgive_recent_messages(mman)
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(self),
            local_addr=settings.bind,
            reuse_port=settings.reuse_port or None,
        )
        sock = transport.get_extra_info("socket")
        receive_buffer = _set_receive_buffer(sock, settings.receive_buffer)
        overhead = _IPV6_OVERHEAD if sock.family == socket.AF_INET6 else _IPV4_OVERHEAD
        sockname = transport.get_extra_info("sockname")
        self._transport = transport
        self.hostinfo_local = hostportjoin(str(sockname[0]), int(sockname[1]))
        self.engine = DtlsServerEngine(
            DtlsEngineConfig(
                certificate_chain=settings.certificate_chain,
                private_key=settings.private_key,
                max_datagram_size=settings.mtu - overhead,
                idle_timeout=settings.idle_timeout,
                handshake_timeout=settings.handshake_timeout,
                max_sessions=settings.max_sessions,
            ),
            trust,
            self,
        )
        log.info(
            "dtls.listening",
            address=self.hostinfo_local,
            max_datagram=settings.mtu - overhead,
            receive_buffer=receive_buffer,
        )
        return self

    @property
    def sockname(self) -> PeerAddress:
        """The bound socket address."""
        assert self._transport is not None
        name: PeerAddress = self._transport.get_extra_info("sockname")
        return name

    # -- network side ------------------------------------------------------------------------

    def datagram_received(self, data: bytes, peer: PeerAddress) -> None:
        """Feed one datagram from the socket into the engine.

        When the trust source loads PSKs on demand (``psk_known``/``prefetch_psk``), a datagram with
        a ClientKeyExchange naming an identity not yet in memory is held, with everything else from
        that peer, until the key is fetched; then they are fed in order.
        """
        if self.engine is None or self._closed:
            return
        held = self._held.get(peer)
        if held is not None:
            held.append(data)
            return
        if self._prefetcher is not None:
            identity = psk_identity_in(data)
            if identity is not None and not self._prefetcher.psk_known(identity):
                self._held[peer] = [data]
                task = asyncio.create_task(self._fetch_then_feed(identity, peer))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
                return
        self._feed(data, peer)

    async def _fetch_then_feed(self, identity: bytes, peer: PeerAddress) -> None:
        assert self._prefetcher is not None
        try:
            await self._prefetcher.prefetch_psk(identity)
        except Exception:  # the handshake then fails as for an unknown identity
            log.exception("dtls.psk_fetch_failed", peer=peer)
        for data in self._held.pop(peer, []):
            self._feed(data, peer)

    def _feed(self, data: bytes, peer: PeerAddress) -> None:
        engine = self.engine
        if engine is None or self._closed:
            return
        try:
            engine.datagram_received(data, peer, self._loop.time())
        except Exception:
            log.exception("dtls.datagram_failed", peer=peer)
        self._schedule()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.engine is None or self._closed:
            return
        try:
            self.engine.handle_timers(self._loop.time())
        except Exception:
            log.exception("dtls.timer_failed")
        self._schedule()

    def _schedule(self) -> None:
        assert self.engine is not None
        deadline = self.engine.next_deadline()
        if deadline is None:
            return
        # An earlier wake-up is harmless (handle_timers does what is due and we re-arm);
        # only re-arm when the new deadline is earlier than the armed one.
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    # -- DtlsEventHandler ---------------------------------------------------------------------

    def send_datagram(self, data: bytes, peer: PeerAddress) -> None:
        """Engine callback: put a datagram on the wire."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, peer)

    def session_established(self, session: DtlsSession) -> None:
        """Engine callback: make the endpoint address for a new session."""
        assert session.identity is not None
        session.app_data = DtlsEndpointAddress(self, session, session.identity)
        metrics.observe_handshake(session.identity.kind, "ok")
        metrics.session_opened("coaps")

    def application_data(self, session: DtlsSession, data: bytes) -> None:
        """Engine callback: decode a CoAP message and hand it to aiocoap."""
        remote = session.app_data
        if self._mman is None or not isinstance(remote, DtlsEndpointAddress):
            return
        if self.direct is not None and self.direct.offer(remote, data):
            return
        try:
            message = Message.decode(data, remote=remote)
        except error.UnparsableMessage:
            log.info("dtls.unparsable_coap", peer=session.peer, size=len(data))
            return
        if message.code.is_request():
            remote.request_mids.append(message.mid)
        try:
            self._mman.dispatch_message(message)
        except Exception:  # keep the engine consistent whatever the CoAP layer does
            log.exception("dtls.dispatch_failed", peer=session.peer)

    def session_closed(self, session: DtlsSession, reason: str) -> None:
        """Engine callback: fail whatever aiocoap still has pending with this peer."""
        remote = session.app_data
        if isinstance(remote, DtlsEndpointAddress):
            metrics.session_closed("coaps")
        else:  # it never got past the handshake
            metrics.observe_handshake("unknown", "failed")
        if self._mman is not None and isinstance(remote, DtlsEndpointAddress):
            self._mman.dispatch_error(DtlsSessionClosed(reason), remote)
        if isinstance(remote, DtlsEndpointAddress):
            if remote.lane_state is not None:
                remote.lane_state.close(DtlsSessionClosed(reason))
            if self._recent is not None:
                for mid in remote.request_mids:  # nothing can repeat these any more
                    self._recent.pop((remote, mid), None)
            remote.release()

    # -- aiocoap MessageInterface -------------------------------------------------------------------

    def send_plaintext(self, session: DtlsSession, data: bytes) -> None:
        """Encrypt and send on ``session`` (dropped if the session has ended)."""
        if self.engine is None or self._closed:
            return
        if not self.engine.send_application_data(session, data, self._loop.time()):
            # Fail the exchange now rather than after CoAP's retransmissions give up; deferred
            # so that aiocoap finishes registering the message it is sending first.
            log.debug("dtls.send_dropped", peer=session.peer, state=session.state.value)
            self._loop.call_soon(self._report_closed, session)
        self._schedule()

    def _report_closed(self, session: DtlsSession) -> None:
        remote = session.app_data
        if self._mman is not None and isinstance(remote, DtlsEndpointAddress):
            self._mman.dispatch_error(DtlsSessionClosed("DTLS session has ended"), remote)

    def send(self, message: Message) -> None:
        """aiocoap: send a CoAP message to its (DTLS) remote."""
        if self._mman is None:
            return
        message.remote.send(message.encode())

    async def recognize_remote(self, remote: object) -> bool:
        """aiocoap: whether ``remote`` is one of this transport's addresses."""
        return isinstance(remote, DtlsEndpointAddress) and remote._interface is self

    async def determine_remote(self, request: Message) -> DtlsEndpointAddress | None:
        """aiocoap: route a ``coaps://host:port`` request over an existing session, if any.

        This transport never opens sessions itself (it is a server); requests to peers
        without a live session are left to other transports.
        """
        if request.requested_scheme != "coaps" or self.engine is None or self._closed:
            return None
        if request.unresolved_remote is not None:
            host, port = hostportsplit(request.unresolved_remote)
        elif request.opt.uri_host:
            host, port = request.opt.uri_host, request.opt.uri_port
        else:
            return None
        host = host.strip("[]")
        port = port or COAPS_PORT
        for key in ((host, port), (host, port, 0, 0), (f"::ffff:{host}", port, 0, 0)):
            session = self.engine.session_for(key)
            remote = session.app_data if session is not None and session.is_established else None
            if isinstance(remote, DtlsEndpointAddress):
                return remote
        return None

    async def shutdown(self) -> None:
        """aiocoap: close_notify to every peer, close the socket."""
        if self._closed:
            return
        self._mman = None  # the message manager is shutting down: no more dispatch_error
        if self.engine is not None:
            self.engine.shutdown()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        log.info("dtls.stopped", address=self.hostinfo_local)


class DtlsServer:
    """Handle on a running ``coaps://`` listener (returned by :func:`start_dtls_server`)."""

    def __init__(self, context: Any, token_manager: Any, interface: DtlsMessageInterface) -> None:
        self._context = context
        self._token_manager = token_manager
        self._interface = interface

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        name = self._interface.sockname
        return (str(name[0]), int(name[1]))

    @property
    def session_count(self) -> int:
        """Live DTLS sessions (handshaking or established)."""
        engine = self._interface.engine
        return 0 if engine is None else engine.session_count

    @property
    def stats(self) -> DtlsEngineStats:
        """Engine counters."""
        assert self._interface.engine is not None
        return self._interface.engine.stats

    @property
    def direct(self) -> DirectLane | None:
        """The direct lane, if enabled (for inspection and tests)."""
        return self._interface.direct

    @property
    def engine(self) -> DtlsServerEngine:
        """The engine (for inspection and tests)."""
        assert self._interface.engine is not None
        return self._interface.engine

    async def shutdown(self) -> None:
        """Stop serving ``coaps://``: fail pending requests, close_notify all peers, close the socket."""
        interfaces_list: list[Any] = self._context.request_interfaces
        if self._token_manager in interfaces_list:
            interfaces_list.remove(self._token_manager)
            await self._token_manager.shutdown()


async def start_dtls_server(
    context: Any, settings: DtlsServerSettings, trust: TrustSource, *, lane: LaneRoutes | None = None
) -> DtlsServer:
    """Serve ``coaps://`` on ``settings.bind`` for an existing aiocoap ``Context``.

    With ``lane``, the requests it routes (EST, ``/bs``, ``/bspack``) and the server's own requests
    to devices go through the direct lane (:mod:`bootstrap.coap.direct`) instead of aiocoap's
    request pipeline whenever they fit one message.

    The transport is added with aiocoap's own MessageManager/TokenManager stack (the same
    private hook aiocoap 0.4.17 uses for its UDP transport) and put first in the
    context's request interfaces, so requests addressed to a DTLS remote go out over it.
    """
    created: list[DtlsMessageInterface] = []

    async def construct(mman: Any) -> DtlsMessageInterface:
        interface = await DtlsMessageInterface.create(mman, settings, trust, lane)
        created.append(interface)
        return interface

    append: Callable[[Callable[[Any], Any]], Any] = context._append_tokenmanaged_messagemanaged_transport
    await append(construct)
    request_interfaces: list[Any] = context.request_interfaces
    token_manager = request_interfaces.pop()
    request_interfaces.insert(0, token_manager)
    return DtlsServer(context, token_manager, created[0])
