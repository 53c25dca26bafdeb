"""A simulated device's CoAP message layer on one channel (a DTLS session or a UDP socket).

A simulated device sends a few requests (Bootstrap-Request or Bootstrap-Pack-Request, EST) and
answers the bootstrap server's (Discover, Read, Delete, Write, Finish). An aiocoap client context
per device did this with far more machinery than that needs and cost the simulator more CPU per
device than the server spent on the same device: a load generator must not be the bottleneck. A
:class:`CoapLink` does just the message layer (RFC 7252 §4, §5.2), on the codec the server's
direct lane uses (:mod:`bootstrap.coap.wire`):

* its own requests go out through :class:`bootstrap.coap.outbound.Outbound`: Confirmable,
  retransmitted, separate responses acknowledged, Block2 answers fetched whole;
* the server's Confirmable requests are answered in piggybacked ACKs (§5.2.1), Non-confirmable ones
  with a NON; a duplicate (same message ID, §4.5) gets the same answer again, or nothing while the
  first copy is still being handled;
* a method other than GET, PUT, POST and DELETE gets 4.05 (§5.8);
* a Write larger than one block arrives in Block1 slices (RFC 7959 §2.5): each is acknowledged with
  2.31 Continue and the handler sees the whole payload once the last one is in; a slice out of
  order gets 4.08 Request Entity Incomplete;
* messages it cannot parse, and responses to nothing it asked, are dropped (a Confirmable one
  gets a Reset, §4.2).

Answers go out whole: a simulated client's answers (Discover, Read of /2) fit one message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from bootstrap.coap.duplicates import RecentAnswers
from bootstrap.coap.outbound import Outbound
from bootstrap.coap.wire import (
    ACK,
    CON,
    EMPTY,
    METHOD_CODES,
    METHOD_NAMES,
    NON,
    RST,
    WireMessage,
    code_from_dotted,
    encode_message,
    parse_message,
)

from .lwm2m_client import Response

__all__ = ["CONTINUE", "CoapLink", "RequestHandler", "Response"]


RequestHandler: TypeAlias = Callable[[str, str, bytes, int | None, int | None], Awaitable[Response]]
"""``(method, path as "/0/1", payload, Content-Format, Accept)`` → the answer."""

#: 2.31 Continue (RFC 7959 §2.9.1) and 4.08 Request Entity Incomplete (§2.9.2).
CONTINUE = code_from_dotted("2.31")
INCOMPLETE = code_from_dotted("4.08")
METHOD_NOT_ALLOWED = code_from_dotted("4.05")
#: Answers remembered for duplicates (§4.5).
_RECENT = 16


def _dropped(data: bytes) -> None:
    """Where a closed link's messages go."""


class CoapLink:
    """One device's CoAP endpoint: ``send`` writes one encoded message on the channel, and every
    message the channel receives goes to :meth:`datagram_received`."""

    def __init__(self, send: Callable[[bytes], None], handler: RequestHandler | None = None) -> None:
        self._send = send
        self.handler = handler
        """Answers the server's requests (``None``: 4.04 to everything)."""
        self._mid = random.randrange(0x10000)
        self.outbound = Outbound(self._next_mid)
        self._recent = RecentAnswers(_RECENT)
        self._uploads: dict[tuple[int, tuple[str, ...]], bytearray] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed: BaseException | None = None
        self.on_close: Callable[[BaseException], None] | None = None
        """Called once when the channel goes (the journey stops waiting for the server then)."""

    def _next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    async def request(
        self,
        method: str,
        path: Sequence[str],
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        limit_s: float = 30.0,
    ) -> WireMessage:
        """Send a request to the server and return its whole response (see :class:`Outbound`);
        ``TimeoutError`` if that takes longer than ``limit_s`` seconds."""
        if self.closed is not None:
            raise ConnectionError(f"the channel is closed: {self.closed}")
        async with asyncio.timeout(limit_s):
            return await self.outbound.request(
                self._send,
                METHOD_CODES[method],
                path,
                query=query,
                payload=payload,
                content_format=content_format,
                accept=accept,
            )

    def datagram_received(self, data: bytes) -> None:
        """One CoAP message from the server."""
        message = parse_message(data)
        if message is None:
            if len(data) >= 4 and (data[0] >> 4) & 0x03 == CON:  # unparseable CON: Reset (§4.2)
                self._send(encode_message(mtype=RST, mid=(data[2] << 8) | data[3], token=b"", code=EMPTY))
            return
        if message.code == EMPTY or message.is_response:
            if not self.outbound.incoming(self._send, message) and message.mtype == CON:
                self._send(encode_message(mtype=RST, mid=message.mid, token=b"", code=EMPTY))
            return
        if message.mtype not in (CON, NON):
            return
        if self._recent.replay(message.mid, self._send):  # a duplicate (§4.5)
            return
        self._recent.remember(message.mid, None)
        if message.code not in METHOD_NAMES:  # FETCH, PATCH, ...: not a bootstrap method (§5.8)
            self._answer(message, METHOD_NOT_ALLOWED, b"", None)
            return
        if message.block1 is not None:
            whole = self._assemble(message)
            if whole is None:
                return
            message.payload = whole
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _assemble(self, message: WireMessage) -> bytes | None:
        """Keep a Block1 slice (RFC 7959 §2.5); the whole payload once the last one is in."""
        assert message.block1 is not None
        number, more, szx = message.block1
        key = (message.code, message.path)
        if number == 0:
            self._uploads[key] = bytearray()
        buffer = self._uploads.get(key)
        size = 1 << (szx + 4)
        if buffer is None or len(buffer) != number * size:
            self._uploads.pop(key, None)
            self._answer(message, INCOMPLETE, b"", None)
            return None
        buffer += message.payload
        if more:
            self._answer(message, CONTINUE, b"", None, block1=message.block1)
            return None
        del self._uploads[key]
        return bytes(buffer)

    async def _handle(self, message: WireMessage) -> None:
        if self.handler is None:
            code, payload, content_format = "4.04", b"", None
        else:
            try:
                code, payload, content_format = await self.handler(
                    METHOD_NAMES[message.code],
                    "/" + "/".join(message.path),
                    message.payload,
                    message.content_format,
                    message.accept,
                )
            except Exception:  # a broken simulated client still answers, as a real one would
                code, payload, content_format = "5.00", b"", None
        block1 = None if message.block1 is None else (message.block1[0], False, message.block1[2])
        self._answer(message, code_from_dotted(code), payload, content_format, block1=block1)

    def _answer(
        self,
        request: WireMessage,
        code: int,
        payload: bytes,
        content_format: int | None,
        *,
        block1: tuple[int, bool, int] | None = None,
    ) -> None:
        confirmable = request.mtype == CON
        answer = encode_message(
            mtype=ACK if confirmable else NON,
            mid=request.mid if confirmable else self._next_mid(),
            token=request.token,
            code=code,
            content_format=content_format,
            block1=block1,
            payload=payload,
        )
        self._recent.answered(request.mid, answer)
        if self.closed is None:
            self._send(answer)

    def close(self, error: BaseException) -> None:
        """The channel is gone: fail the requests in flight, stop answering."""
        if self.closed is None:
            self.closed = error
            self._send = _dropped  # and the channel, which may refer back to this link, can go
            self.outbound.close(error)
            for task in self._tasks:
                task.cancel()
            if self.on_close is not None:
                self.on_close(error)
