"""CoAP messages on the wire (RFC 7252 §3), sans-I/O: just what the direct lane reads and writes.

aiocoap's :class:`~aiocoap.Message` does this generally (every option, every representation); the
direct lane (:mod:`bootstrap.coap.direct`) needs a handful of options on a hot path, so this module
decodes and encodes those directly. ``tests/test_direct_lane.py`` checks both directions against
aiocoap's own codec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACK",
    "CON",
    "NON",
    "RST",
    "WireMessage",
    "code_from_dotted",
    "dotted",
    "encode_message",
    "parse_message",
]

# Message types (§3).
CON, NON, ACK, RST = 0, 1, 2, 3
# Method codes (§12.1.1); 0.00 is the empty message.
EMPTY, GET, POST, PUT, DELETE = 0, 1, 2, 3, 4
METHOD_NAMES = {GET: "GET", POST: "POST", PUT: "PUT", DELETE: "DELETE"}
METHOD_CODES = {name: code for code, name in METHOD_NAMES.items()}

# Option numbers (§5.10, RFC 7959 §2.1).
URI_HOST, ETAG, URI_PORT, LOCATION_PATH, URI_PATH, CONTENT_FORMAT, MAX_AGE = 3, 4, 7, 8, 11, 12, 14
URI_QUERY, ACCEPT, BLOCK2, BLOCK1, SIZE2, SIZE1 = 15, 17, 23, 27, 28, 60
#: Critical (odd) options understood here. A message with any other critical option is left to
#: aiocoap, which answers 4.02 or rejects it as §5.4.1 says.
_CRITICAL_UNDERSTOOD = frozenset({URI_HOST, URI_PORT, URI_PATH, URI_QUERY, ACCEPT, BLOCK2})


@dataclass(slots=True)
class WireMessage:
    """The parts of a CoAP message the lane uses."""

    mtype: int
    mid: int
    token: bytes
    code: int
    """Class * 32 + detail: 1-4 are methods, 0 the empty message, 64 and up responses."""
    path: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    content_format: int | None = None
    accept: int | None = None
    max_age: int | None = None
    block1: tuple[int, bool, int] | None = None
    """``(num, more, szx)`` of a Block1 option (the lane never takes block-wise uploads; a
    simulated device assembles them)."""
    block2: tuple[int, bool, int] | None = None
    """``(num, more, szx)`` of a Block2 option."""
    size2: int | None = None
    payload: bytes = b""

    @property
    def is_request(self) -> bool:
        """A method code (GET, POST, PUT, DELETE...)."""
        return 1 <= self.code < 32

    @property
    def is_response(self) -> bool:
        """A response code (2.xx to 5.xx)."""
        return self.code >= 64


def dotted(code: int) -> str:
    """``68`` → ``"2.04"``."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def code_from_dotted(text: str) -> int:
    """``"2.04"`` → ``68``."""
    major, minor = text.split(".")
    return int(major) * 32 + int(minor)


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _block(value: bytes) -> tuple[int, bool, int]:
    """A Block1 or Block2 option's ``(num, more, szx)`` (RFC 7959 §2.2)."""
    block = _uint(value)
    return block >> 4, bool(block & 0x08), block & 0x07


def parse_message(data: bytes) -> WireMessage | None:
    """Decode a message, or ``None`` if it is malformed or carries a critical option not
    understood here (leave it to aiocoap, which answers such messages as RFC 7252 wants)."""
    size = len(data)
    if size < 4:
        return None
    first = data[0]
    tkl = first & 0x0F
    if first >> 6 != 1 or tkl > 8:
        return None
    position = 4 + tkl
    if position > size:
        return None
    message = WireMessage((first >> 4) & 0x03, (data[2] << 8) | data[3], data[4:position], data[1])
    path: list[str] = []
    query: list[str] = []
    number = 0
    while position < size:
        byte = data[position]
        position += 1
        if byte == 0xFF:  # payload marker (§3.1): a marker with no payload is a format error
            if position == size:
                return None
            message.payload = data[position:]
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
        elif number == URI_QUERY:
            try:
                query.append(value.decode())
            except UnicodeDecodeError:
                return None
        elif number == CONTENT_FORMAT:
            message.content_format = _uint(value)
        elif number == ACCEPT:
            message.accept = _uint(value)
        elif number == MAX_AGE:
            message.max_age = _uint(value)
        elif number == BLOCK2:
            message.block2 = _block(value)
        elif number == SIZE2:
            message.size2 = _uint(value)
        elif number == BLOCK1:
            message.block1 = _block(value)
        elif number & 1 and number not in _CRITICAL_UNDERSTOOD:
            return None  # If-Match, If-None-Match, Proxy-Uri, ...: aiocoap's job
    message.path = tuple(path)
    message.query = tuple(query)
    return message


def _option(previous: int, number: int, value: bytes) -> bytes:
    """One option (§3.1), with extended delta and length where needed."""
    head = bytearray(1)
    for shift, field in ((4, number - previous), (0, len(value))):
        if field < 13:
            head[0] |= field << shift
        elif field < 269:
            head[0] |= 13 << shift
            head.append(field - 13)
        else:
            head[0] |= 14 << shift
            head += (field - 269).to_bytes(2, "big")
    return bytes(head) + value


def _uint_bytes(value: int) -> bytes:
    """Minimal unsigned encoding (§3.2: zero is the empty string)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def encode_message(
    *,
    mtype: int,
    mid: int,
    token: bytes,
    code: int,
    path: Iterable[str] = (),
    content_format: int | None = None,
    query: Iterable[str] = (),
    max_age: int | None = None,
    accept: int | None = None,
    block2: tuple[int, bool, int] | None = None,
    block1: tuple[int, bool, int] | None = None,
    size2: int | None = None,
    payload: bytes = b"",
) -> bytes:
    """A message (§3) with these options, written in option-number order."""
    out = bytearray((0x40 | (mtype << 4) | len(token), code, mid >> 8, mid & 0xFF))
    out += token
    previous = 0
    for segment in path:
        out += _option(previous, URI_PATH, segment.encode())
        previous = URI_PATH
    if content_format is not None:
        out += _option(previous, CONTENT_FORMAT, _uint_bytes(content_format))
        previous = CONTENT_FORMAT
    if max_age is not None:
        out += _option(previous, MAX_AGE, _uint_bytes(max_age))
        previous = MAX_AGE
    for item in query:
        out += _option(previous, URI_QUERY, item.encode())
        previous = URI_QUERY
    for number, value in (
        (ACCEPT, accept),
        (BLOCK2, None if block2 is None else (block2[0] << 4) | (8 if block2[1] else 0) | block2[2]),
        (BLOCK1, None if block1 is None else (block1[0] << 4) | (8 if block1[1] else 0) | block1[2]),
        (SIZE2, size2),
    ):
        if value is not None:
            out += _option(previous, number, _uint_bytes(value))
            previous = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)
