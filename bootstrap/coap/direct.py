"""The direct lane: the hot CoAP exchanges on DTLS sessions, without aiocoap's generic pipeline.

Enrollment is the product's hot path, and on it aiocoap's request machinery (message and token
managers, pipes, the block-wise cache, a 247-second deduplication timer per request) cost more CPU
than signing the certificate; the bootstrap interface's role reversal paid the same for each of the
server's own requests. Most of these exchanges need none of it: a CSR fits one message, the
server's Discover, Delete, Write and Finish fit one message each, and their answers fit one message
or a few Block2 slices. The DTLS transport offers each decrypted datagram here first; what this lane
does not take goes to aiocoap as before.

Requests from devices. The lane takes a request when (RFC 7252 §3 wire format, :mod:`.wire`):

* it is a Confirmable or Non-confirmable GET or POST below an EST root;
* it carries no Block1 (a CSR sent in blocks is reassembled by aiocoap) and no critical option
  other than Uri-Host, Uri-Port, Uri-Path, Accept and Block2 (aiocoap answers 4.02 to the rest);
* if it asks for a Block2 slice after the first, this lane made that response.

It then does the message layer a server owes the client, per session:

* a Confirmable request is answered in a piggybacked ACK (§5.2.1), a Non-confirmable one with a
  NON carrying a fresh message ID from aiocoap's allocator (§5.2.3), the token echoed;
* duplicates (same message ID, §4.5) get the same answer again without a second enrollment; a
  duplicate that arrives while the first copy is still being signed is absorbed, and the client's
  retransmission timer brings the next copy (an empty ACK would oblige a separate, retransmitted
  response for no gain: signing takes milliseconds, and a slow CA answers well inside the client's
  retransmission window of MAX_TRANSMIT_WAIT, 93 s);
* answers larger than the block size (1024 bytes, or less if the client asks for less with
  Block2 in its request) are sent as Block2 slices (RFC 7959 §2.4) and the whole answer is kept
  with the session for the follow-up requests.

Requests from the server (:meth:`DirectLane.request`) go out through :mod:`.outbound` (Confirmable,
retransmitted, separate responses acknowledged, Block2 answers fetched whole), with message IDs from
aiocoap's allocator, which shares the session. Payloads above one block (certificate-mode Writes
with a key and a certificate) go through aiocoap, which sends them block-wise.

All of it lives on the session object and goes when the session ends; the only timers are the
retransmission timers of the server's own requests in flight.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from .. import est
from .duplicates import RecentAnswers
from .exchange import INTERNAL_ERROR, CoapReply, CoapRequest
from .outbound import Outbound
from .wire import (
    ACK,
    CON,
    EMPTY,
    GET,
    METHOD_CODES,
    METHOD_NAMES,
    NON,
    POST,
    WireMessage,
    code_from_dotted,
    encode_message,
    parse_message,
)

__all__ = ["DirectLane", "LaneRoutes", "LaneState", "parse_request"]

log = structlog.get_logger(__name__)

#: Largest block (SZX 6, RFC 7959 §2.2) and the default payload per message on DTLS.
MAX_BLOCK = 1024
#: Remembered answers per session, for duplicates (§4.5) and Block2 follow-ups.
_RECENT = 16
_BLOCK_CACHE = 4

_EST_ROOTS = tuple((root, len(root)) for root in est.ROOTS)


def _takeable(message: WireMessage) -> bool:
    """A CON or NON GET/POST without Block1: the only requests the lane answers itself."""
    return message.code in (GET, POST) and message.mtype <= NON and message.block1 is None


def parse_request(data: bytes) -> WireMessage | None:
    """A GET or POST the lane could take (``None`` for anything else)."""
    message = parse_message(data)
    return message if message is not None and _takeable(message) else None


class LaneRemote(Protocol):
    """What the lane needs of a DTLS session's remote (``DtlsEndpointAddress``)."""

    lane_state: LaneState | None
    """The lane's memory of the session (set by the lane, dropped when the session ends)."""

    @property
    def hostinfo(self) -> str:
        """``host:port`` of the peer, for log lines."""
        ...

    @property
    def maximum_payload_size(self) -> int:
        """Largest payload per message on the session."""
        ...

    def send(self, data: bytes) -> None:
        """Encrypt and send one CoAP message on the session."""
        ...


@dataclass(slots=True)
class LaneState:
    """Per-session memory of the lane: recent answers by message ID, Block2 bodies, and the
    server's own requests in flight."""

    outbound: Outbound

    recent: RecentAnswers = field(default_factory=lambda: RecentAnswers(_RECENT))
    """Answers by message ID, for duplicates."""
    bodies: OrderedDict[tuple[int, tuple[str, ...], int | None], CoapReply] = field(
        default_factory=OrderedDict
    )
    """(code, path, Accept) → the whole answer whose first slice was sent."""

    def close(self, error: BaseException) -> None:
        """The session ended: fail every request still waiting."""
        self.outbound.close(error)


#: A transport-neutral handler: the EST endpoint's ``handle``, the bootstrap endpoint's ``request``...
Handler = Callable[[CoapRequest], Awaitable[CoapReply]]


@dataclass(frozen=True, kw_only=True)
class LaneRoutes:
    """Which requests from devices the lane answers, and with what."""

    est: Handler | None = None
    """EST below every EST root (the handler sees the path below the root)."""
    bootstrap_request: Handler | None = None
    """``/bs`` (Bootstrap-Request)."""
    bootstrap_pack: Handler | None = None
    """``/bspack`` (Bootstrap-Pack-Request)."""

    def route(self, path: tuple[str, ...]) -> tuple[Handler, tuple[str, ...]] | None:
        """The handler for ``path`` and the path it is given, or ``None``."""
        if path == ("bs",):
            return None if self.bootstrap_request is None else (self.bootstrap_request, path)
        if path == ("bspack",):
            return None if self.bootstrap_pack is None else (self.bootstrap_pack, path)
        if self.est is None:
            return None
        below = est_path(path)
        return None if below is None else (self.est, below)


def est_path(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path below an EST root, or ``None`` if ``path`` is not under one."""
    for root, depth in _EST_ROOTS:
        if path[:depth] == root and len(path) > depth:
            return path[depth:]
    return None


class DirectLane:
    """Answers the EST requests it takes from DTLS sessions, and carries the server's own
    requests to devices (the bootstrap interface's role reversal); see the module docstring."""

    def __init__(self, routes: LaneRoutes, next_mid: Callable[[], int]) -> None:
        self._routes = routes
        self._next_mid = next_mid
        self._tasks: set[asyncio.Task[None]] = set()
        self.taken = 0
        """Requests answered here (for tests and benchmarks)."""
        self.sent = 0
        """Requests of the server's own carried here (for tests and benchmarks)."""

    def _state(self, remote: LaneRemote) -> LaneState:
        state: LaneState | None = remote.lane_state
        if state is None:
            state = remote.lane_state = LaneState(Outbound(self._next_mid))
        return state

    def offer(self, remote: LaneRemote, data: bytes) -> bool:
        """Take the decrypted datagram ``data`` from ``remote``'s session, or return False."""
        message = parse_message(data)
        if message is None:
            return False
        if message.code == EMPTY or message.is_response:
            state: LaneState | None = remote.lane_state
            return state is not None and state.outbound.incoming(remote.send, message)
        if not _takeable(message):
            return False
        routed = self._routes.route(message.path)
        if routed is None:
            return False
        handler, below = routed
        state = self._state(remote)
        key = (message.code, message.path, message.accept)
        continuing = message.block2 is not None and message.block2[0] > 0
        if continuing and key not in state.bodies:
            return False  # aiocoap made the first slice, so it has the body for the rest
        if state.recent.replay(message.mid, remote.send):  # a duplicate (RFC 7252 §4.5)
            return True
        self.taken += 1
        state.recent.remember(message.mid, None)
        if continuing:
            self._answer(remote, state, message, key, state.bodies[key])
            return True
        task = asyncio.get_running_loop().create_task(
            self._handle(handler, remote, state, message, below, key)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _handle(
        self,
        handler: Handler,
        remote: LaneRemote,
        state: LaneState,
        request: WireMessage,
        below: tuple[str, ...],
        key: tuple[int, tuple[str, ...], int | None],
    ) -> None:
        try:
            reply = await handler(
                CoapRequest(
                    method=METHOD_NAMES[request.code],
                    path=below,
                    content_format=request.content_format,
                    accept=request.accept,
                    payload=request.payload,
                    remote=remote,
                    peer=remote.hostinfo,
                    query=request.query,
                )
            )
        except Exception:  # handlers translate their own errors; this is the last resort
            log.exception("direct lane handler failed", peer=remote.hostinfo)
            reply = INTERNAL_ERROR
        self._answer(remote, state, request, key, reply)
        if reply.after is not None:
            reply.after()

    def _answer(
        self,
        remote: LaneRemote,
        state: LaneState,
        request: WireMessage,
        key: tuple[int, tuple[str, ...], int | None],
        reply: CoapReply,
    ) -> None:
        block_size = min(MAX_BLOCK, int(remote.maximum_payload_size))
        number = 0
        if request.block2 is not None:
            number, _, szx = request.block2
            block_size = min(block_size, 1 << (min(szx, 6) + 4))
        payload = reply.payload
        block2: tuple[int, bool, int] | None = None
        size2: int | None = None
        if len(payload) > block_size or number > 0:
            start = number * block_size
            if start >= len(payload):
                state.bodies.pop(key, None)
                reply = CoapReply("4.02", b"Block2 number beyond the end of the answer")
                payload = reply.payload
            else:
                more = start + block_size < len(payload)
                payload = payload[start : start + block_size]
                block2 = (number, more, block_size.bit_length() - 5)  # SZX: 16 bytes → 0 ... 1024 → 6
                if number == 0:
                    size2 = len(reply.payload)
                if more:
                    state.bodies[key] = reply
                    state.bodies.move_to_end(key)
                    while len(state.bodies) > _BLOCK_CACHE:
                        state.bodies.popitem(last=False)
                else:
                    state.bodies.pop(key, None)
        confirmable = request.mtype == CON
        answer = encode_message(
            mtype=ACK if confirmable else NON,
            mid=request.mid if confirmable else self._next_mid(),
            token=request.token,
            code=code_from_dotted(reply.code),
            payload=payload,
            content_format=reply.content_format,
            max_age=reply.max_age,
            block2=block2,
            size2=size2,
        )
        state.recent.answered(request.mid, answer)
        remote.send(answer)

    # -- the server's own requests (role reversal) --------------------------------------------

    def can_carry(self, remote: LaneRemote, payload: bytes) -> bool:
        """Whether a request with ``payload`` fits one message on ``remote``'s session (larger
        Writes go block-wise through aiocoap)."""
        return len(payload) <= min(MAX_BLOCK, int(remote.maximum_payload_size))

    async def request(
        self,
        remote: LaneRemote,
        *,
        method: str,
        path: tuple[str, ...],
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
    ) -> WireMessage:
        """Send a Confirmable request to the device and return its response.

        Raises :class:`TimeoutError` after MAX_RETRANSMIT unanswered retransmissions,
        :class:`~.outbound.PeerReset` on a Reset, or the session's error if it ends first.
        """
        if not self.can_carry(remote, payload):
            raise ValueError("payload larger than one block: send it through aiocoap")
        self.sent += 1
        return await self._state(remote).outbound.request(
            remote.send,
            METHOD_CODES[method],
            path,
            payload=payload,
            content_format=content_format,
            accept=accept,
        )

    async def drain(self) -> None:
        """Wait for the answers being made (used on shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
