"""The direct lane: EST requests on DTLS sessions answered without aiocoap's generic pipeline.

Enrollment is the product's hot path, and on it aiocoap's request machinery (message and token
managers, pipes, the block-wise cache, a 247-second deduplication timer per request) cost more CPU
than signing the certificate. Most EST requests need none of it: a CSR fits one message and the
answer fits one message or a few Block2 slices. The DTLS transport offers each decrypted datagram
here first; what this lane takes it answers itself, everything else goes to aiocoap as before.

The lane takes a request when (RFC 7252 §3 wire format):

* it is a Confirmable or Non-confirmable GET or POST below an EST root;
* it carries no Block1 (a CSR sent in blocks is reassembled by aiocoap) and no critical option
  other than Uri-Host, Uri-Port, Uri-Path, Accept and Block2 (aiocoap answers 4.02 to the rest);
* if it asks for a Block2 slice after the first, this lane made that response.

What it does is the CoAP message layer a server owes the client, per session:

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

All of it lives on the session object and goes when the session ends: no timers at all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from .. import est
from .est_resource import EstEndpoint, EstReply, EstRequest

__all__ = ["DirectLane", "LaneState", "WireRequest", "encode_response", "parse_request"]

log = structlog.get_logger(__name__)

# Message types and codes (RFC 7252 §3, §12.1).
CON, NON, ACK = 0, 1, 2
GET, POST = 1, 2
_METHODS = {GET: "GET", POST: "POST"}

# Option numbers (RFC 7252 §5.10, RFC 7959 §2.1).
URI_HOST, URI_PORT, URI_PATH, CONTENT_FORMAT, MAX_AGE, ACCEPT = 3, 7, 11, 12, 14, 17
BLOCK2, BLOCK1, SIZE2 = 23, 27, 28
#: Critical (odd-numbered, §5.4.1) options this lane understands; any other critical option sends
#: the request to aiocoap, which refuses it with 4.02 Bad Option.
_CRITICAL_UNDERSTOOD = frozenset({URI_HOST, URI_PORT, URI_PATH, ACCEPT, BLOCK2})

#: Largest block (SZX 6, RFC 7959 §2.2) and the default payload per message on DTLS.
MAX_BLOCK = 1024
#: Remembered answers per session, for duplicates (§4.5) and Block2 follow-ups.
_RECENT = 16
_BLOCK_CACHE = 4

_EST_ROOTS = tuple((root, len(root)) for root in est.ROOTS)


@dataclass(slots=True)
class WireRequest:
    """The parts of a CoAP request the lane uses."""

    mtype: int
    mid: int
    token: bytes
    code: int
    path: tuple[str, ...]
    content_format: int | None = None
    accept: int | None = None
    block2: tuple[int, int] | None = None
    """``(num, szx)`` of a Block2 option in the request."""
    payload: bytes = b""


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


def parse_request(data: bytes) -> WireRequest | None:
    """Decode a CoAP request the lane can take, or ``None`` (leave it to aiocoap, which also
    answers malformed messages as RFC 7252 wants)."""
    size = len(data)
    if size < 4:
        return None
    first = data[0]
    tkl = first & 0x0F
    mtype = (first >> 4) & 0x03
    code = data[1]
    if first >> 6 != 1 or tkl > 8 or mtype > NON or code not in _METHODS:
        return None
    position = 4 + tkl
    if position > size:
        return None
    request = WireRequest(mtype, (data[2] << 8) | data[3], data[4:position], code, ())
    path: list[str] = []
    number = 0
    while position < size:
        byte = data[position]
        position += 1
        if byte == 0xFF:  # payload marker (§3.1): a marker with no payload is a format error
            if position == size:
                return None
            request.payload = data[position:]
            break
        delta, length = byte >> 4, byte & 0x0F
        if delta == 13:
            if position >= size:
                return None
            delta = data[position] + 13
            position += 1
        elif delta == 14:
            if position + 1 >= size:
                return None
            delta = ((data[position] << 8) | data[position + 1]) + 269
            position += 2
        elif delta == 15:
            return None
        if length == 13:
            if position >= size:
                return None
            length = data[position] + 13
            position += 1
        elif length == 14:
            if position + 1 >= size:
                return None
            length = ((data[position] << 8) | data[position + 1]) + 269
            position += 2
        elif length == 15:
            return None
        number += delta
        value = data[position : position + length]
        if len(value) != length:
            return None
        position += length
        if number == URI_PATH:
            try:
                path.append(value.decode())
            except UnicodeDecodeError:
                return None
        elif number == CONTENT_FORMAT:
            request.content_format = _uint(value)
        elif number == ACCEPT:
            request.accept = _uint(value)
        elif number == BLOCK2:
            block = _uint(value)
            request.block2 = (block >> 4, block & 0x07)
        elif number & 1 and number not in _CRITICAL_UNDERSTOOD:
            return None  # Block1, Uri-Query, Observe's partners, If-Match, ...: aiocoap's job
    request.path = tuple(path)
    return request


def _option(previous: int, number: int, value: bytes) -> bytes:
    delta = number - previous
    length = len(value)
    # Every option this lane writes has a delta and a length below 269.
    head = bytearray(1)
    if delta < 13:
        head[0] = delta << 4
    else:
        head[0] = 13 << 4
        head.append(delta - 13)
    if length < 13:
        head[0] |= length
    else:
        head[0] |= 13
        head.append(length - 13)
    return bytes(head) + value


def _uint_bytes(value: int) -> bytes:
    """Minimal unsigned encoding (§3.2: zero is the empty string)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def encode_response(
    *,
    mtype: int,
    mid: int,
    token: bytes,
    code: str,
    payload: bytes,
    content_format: int | None = None,
    max_age: int | None = None,
    block2: tuple[int, bool, int] | None = None,
    size2: int | None = None,
) -> bytes:
    """A CoAP response (§3) with the options the lane uses, in option-number order."""
    major, minor = code.split(".")
    out = bytearray((0x40 | (mtype << 4) | len(token), int(major) * 32 + int(minor), mid >> 8, mid & 0xFF))
    out += token
    previous = 0
    for number, value in (
        (CONTENT_FORMAT, content_format),
        (MAX_AGE, max_age),
        (BLOCK2, None if block2 is None else (block2[0] << 4) | (8 if block2[1] else 0) | block2[2]),
        (SIZE2, size2),
    ):
        if value is not None:
            out += _option(previous, number, _uint_bytes(value))
            previous = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class LaneRemote(Protocol):
    """What the lane needs of a DTLS session's remote (``DtlsEndpointAddress``)."""

    lane_state: LaneState | None
    hostinfo: str
    maximum_payload_size: int

    def send(self, data: bytes) -> None:
        """Encrypt and send one CoAP message on the session."""
        ...


@dataclass(slots=True)
class LaneState:
    """Per-session memory of the lane: recent answers by message ID and Block2 bodies."""

    recent: OrderedDict[int, bytes | None] = field(default_factory=OrderedDict)
    """Message ID → encoded answer (``None`` while it is being made)."""
    bodies: OrderedDict[tuple[int, tuple[str, ...], int | None], EstReply] = field(
        default_factory=OrderedDict
    )
    """(code, path, Accept) → the whole answer whose first slice was sent."""

    def remember(self, mid: int, answer: bytes | None) -> None:
        """Keep ``answer`` for duplicates of ``mid``, forgetting the oldest beyond a few."""
        self.recent[mid] = answer
        self.recent.move_to_end(mid)
        while len(self.recent) > _RECENT:
            self.recent.popitem(last=False)


def est_path(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path below an EST root, or ``None`` if ``path`` is not under one."""
    for root, depth in _EST_ROOTS:
        if path[:depth] == root and len(path) > depth:
            return path[depth:]
    return None


class DirectLane:
    """Answers the EST requests it takes from DTLS sessions (see the module docstring)."""

    def __init__(self, endpoint: EstEndpoint, next_mid: Callable[[], int]) -> None:
        self._endpoint = endpoint
        self._next_mid = next_mid
        self._tasks: set[asyncio.Task[None]] = set()
        self.taken = 0
        """Requests answered here (for tests and benchmarks)."""

    def offer(self, remote: Any, data: bytes) -> bool:
        """Take the decrypted datagram ``data`` from ``remote``'s session, or return False."""
        request = parse_request(data)
        if request is None:
            return False
        below = est_path(request.path)
        if below is None:
            return False
        state: LaneState | None = remote.lane_state
        if state is None:
            state = remote.lane_state = LaneState()
        key = (request.code, request.path, request.accept)
        if request.block2 is not None and request.block2[0] > 0 and key not in state.bodies:
            return False  # aiocoap made the first slice, so it has the body for the rest
        if request.mid in state.recent:  # a duplicate (RFC 7252 §4.5)
            answer = state.recent[request.mid]
            if answer is not None:
                remote.send(answer)
            return True
        self.taken += 1
        state.remember(request.mid, None)
        body = state.bodies.get(key) if request.block2 is not None and request.block2[0] > 0 else None
        if body is not None:
            self._answer(remote, state, request, key, body)
            return True
        task = asyncio.get_running_loop().create_task(self._handle(remote, state, request, below, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _handle(
        self,
        remote: Any,
        state: LaneState,
        request: WireRequest,
        below: tuple[str, ...],
        key: tuple[int, tuple[str, ...], int | None],
    ) -> None:
        reply = await self._endpoint.handle(
            EstRequest(
                method=_METHODS[request.code],
                path=below,
                content_format=request.content_format,
                accept=request.accept,
                payload=request.payload,
                remote=remote,
                peer=remote.hostinfo,
            )
        )
        self._answer(remote, state, request, key, reply)

    def _answer(
        self,
        remote: Any,
        state: LaneState,
        request: WireRequest,
        key: tuple[int, tuple[str, ...], int | None],
        reply: EstReply,
    ) -> None:
        block_size = min(MAX_BLOCK, int(remote.maximum_payload_size))
        number = 0
        if request.block2 is not None:
            number, szx = request.block2
            block_size = min(block_size, 1 << (min(szx, 6) + 4))
        payload = reply.payload
        block2: tuple[int, bool, int] | None = None
        size2: int | None = None
        if len(payload) > block_size or number > 0:
            start = number * block_size
            if start >= len(payload):
                state.bodies.pop(key, None)
                reply = EstReply("4.02", b"Block2 number beyond the end of the answer")
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
        answer = encode_response(
            mtype=ACK if confirmable else NON,
            mid=request.mid if confirmable else self._next_mid(),
            token=request.token,
            code=reply.code,
            payload=payload,
            content_format=reply.content_format,
            max_age=reply.max_age,
            block2=block2,
            size2=size2,
        )
        if request.mid in state.recent:
            state.remember(request.mid, answer)
        remote.send(answer)

    async def drain(self) -> None:
        """Wait for the answers being made (used on shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
