"""Confirmable requests to one peer and their responses, without aiocoap (RFC 7252 §4.2, §5.2).

Both ends of the product send requests this way: the server's direct lane carries its Bootstrap
Discover, Delete, Write and Finish to a device (:mod:`.direct`), and the simulated device sends its
Bootstrap-Request, pack request and EST requests (:mod:`device_sim.coap_link`). What it does:

* every request is Confirmable, with a message ID from ``next_mid`` and a fresh random token;
* it is retransmitted with exponential back-off from a random initial timeout until acknowledged,
  at most MAX_RETRANSMIT times (§4.2, §4.8);
* a piggybacked response completes it (§5.2.1); an empty ACK stops the retransmissions and a
  separate response follows, which is acknowledged in turn, again if it comes twice (§5.2.2);
* a Reset fails it with :class:`PeerReset`;
* an answer in Block2 slices is fetched whole by repeating the request for the next slice
  (RFC 7959 §2.4), the payload of the first request not sent again.

The caller owns the channel: ``send`` writes one encoded message (on a DTLS session: one record),
and every decoded response, ACK or Reset from the peer is offered to :meth:`Outbound.incoming`.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .wire import ACK, CON, EMPTY, RST, WireMessage, encode_message

__all__ = ["ACK_RANDOM_FACTOR", "ACK_TIMEOUT", "MAX_RETRANSMIT", "Outbound", "PeerReset"]

# Transmission parameters (RFC 7252 §4.8).
ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
#: Tokens of requests answered by a separate response, for re-acknowledging its duplicates.
_ANSWERED = 8

Send = Callable[[bytes], None]


class PeerReset(ConnectionError):
    """The peer answered a request with a Reset (RFC 7252 §4.2)."""


@dataclass(slots=True)
class _Outstanding:
    """A Confirmable request waiting for its response."""

    mid: int
    token: bytes
    data: bytes
    send: Send
    future: asyncio.Future[WireMessage]
    timeout: float
    attempts: int = 0
    timer: asyncio.TimerHandle | None = None


class Outbound:
    """The requests in flight to one peer (a DTLS session, a device's server)."""

    __slots__ = ("_next_mid", "answered", "by_mid", "by_token")

    def __init__(self, next_mid: Callable[[], int]) -> None:
        self._next_mid = next_mid
        self.by_mid: dict[int, _Outstanding] = {}
        """Requests not yet acknowledged, by message ID."""
        self.by_token: dict[bytes, _Outstanding] = {}
        """Requests not yet answered, by token."""
        self.answered: OrderedDict[bytes, None] = OrderedDict()

    async def request(
        self,
        send: Send,
        code: int,
        path: Sequence[str],
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
    ) -> WireMessage:
        """Send a request and return its (whole) response.

        Raises :class:`TimeoutError` after MAX_RETRANSMIT unanswered retransmissions,
        :class:`PeerReset` on a Reset, or what :meth:`close` was given.
        """
        response = await self._exchange(send, code, path, query, payload, content_format, accept, None)
        if response.block2 is None or not response.block2[1]:
            return response
        body = bytearray(response.payload)
        while response.block2 is not None and response.block2[1]:
            number, _, szx = response.block2
            following = (number + 1, False, szx)
            response = await self._exchange(send, code, path, query, b"", None, accept, following)
            if response.code >> 5 != 2:
                return response
            body += response.payload
        response.payload = bytes(body)
        response.block2 = None
        return response

    async def _exchange(
        self,
        send: Send,
        code: int,
        path: Sequence[str],
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        accept: int | None,
        block2: tuple[int, bool, int] | None,
    ) -> WireMessage:
        token = os.urandom(4)
        while token in self.by_token:
            token = os.urandom(4)
        mid = self._next_mid()
        outstanding = _Outstanding(
            mid=mid,
            token=token,
            data=encode_message(
                mtype=CON,
                mid=mid,
                token=token,
                code=code,
                path=path,
                query=query,
                content_format=content_format,
                accept=accept,
                block2=block2,
                payload=payload,
            ),
            send=send,
            future=asyncio.get_running_loop().create_future(),
            timeout=ACK_TIMEOUT * random.uniform(1.0, ACK_RANDOM_FACTOR),
        )
        self.by_mid[mid] = outstanding
        self.by_token[token] = outstanding
        self._transmit(outstanding)
        try:
            return await outstanding.future
        finally:
            self._finish(outstanding)

    def _transmit(self, outstanding: _Outstanding) -> None:
        if outstanding.future.done():
            return
        if outstanding.attempts > MAX_RETRANSMIT:
            self._finish(outstanding)
            outstanding.future.set_exception(TimeoutError("no answer from the peer"))
            return
        outstanding.send(outstanding.data)
        delay = outstanding.timeout * (2**outstanding.attempts)
        outstanding.attempts += 1
        outstanding.timer = asyncio.get_running_loop().call_later(delay, self._transmit, outstanding)

    def _finish(self, outstanding: _Outstanding) -> None:
        if outstanding.timer is not None:
            outstanding.timer.cancel()
            outstanding.timer = None
        self.by_mid.pop(outstanding.mid, None)
        self.by_token.pop(outstanding.token, None)

    def incoming(self, send: Send, message: WireMessage) -> bool:
        """Take a response, ACK or Reset that belongs to one of these requests; False otherwise."""
        if message.mtype in (ACK, RST):
            outstanding = self.by_mid.get(message.mid)
            if outstanding is None:
                return False
            if message.mtype == RST:
                self._finish(outstanding)
                outstanding.future.set_exception(PeerReset(f"reset of message {message.mid}"))
            elif message.code == EMPTY:  # acknowledged; the response follows separately (§5.2.2)
                if outstanding.timer is not None:
                    outstanding.timer.cancel()
                    outstanding.timer = None
                self.by_mid.pop(message.mid, None)
            elif message.token == outstanding.token:  # piggybacked response (§5.2.1)
                self._finish(outstanding)
                outstanding.future.set_result(message)
            return True
        if not message.is_response:
            return False
        outstanding = self.by_token.get(message.token)
        if outstanding is None:
            if message.mtype == CON and message.token in self.answered:  # our ACK was lost
                send(encode_message(mtype=ACK, mid=message.mid, token=b"", code=EMPTY))
                return True
            return False
        if message.mtype == CON:  # a separate response wants its ACK
            send(encode_message(mtype=ACK, mid=message.mid, token=b"", code=EMPTY))
            self.answered[message.token] = None
            while len(self.answered) > _ANSWERED:
                self.answered.popitem(last=False)
        self._finish(outstanding)
        outstanding.future.set_result(message)
        return True

    def close(self, error: BaseException) -> None:
        """The channel is gone: fail every request still waiting with ``error``."""
        for outstanding in list(self.by_token.values()):
            self._finish(outstanding)
            if not outstanding.future.done():
                outstanding.future.set_exception(error)
