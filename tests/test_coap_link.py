"""The simulated device's CoAP message layer (device_sim.coap_link), in memory: its requests and
the server's, duplicates, Block1 uploads and Block2 answers, Resets, the end of the channel."""

from __future__ import annotations

import asyncio

import pytest
from aiocoap import CON, NON, Code, Message
from aiocoap.optiontypes import BlockOption

from bootstrap.coap import wire
from device_sim.coap_link import CoapLink, Response

BlockwiseTuple = BlockOption.BlockwiseTuple


class Channel:
    """Records what the link sends, decoded by aiocoap (an independent codec)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, data: bytes) -> None:
        self.sent.append(Message.decode(data))


class Device:
    """A handler that records the requests it answers."""

    def __init__(self, answer: Response = ("2.04", b"", None)) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, bytes, int | None, int | None]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def handle(
        self, method: str, path: str, payload: bytes, content_format: int | None, accept: int | None
    ) -> Response:
        self.calls.append((method, path, payload, content_format, accept))
        await self.release.wait()
        return self.answer


def message(code: Code, mtype: int, mid: int, token: bytes, **fields: object) -> Message:
    """A message with its message-layer fields set (aiocoap leaves those to its own stack)."""
    built = Message(code=code, **fields)
    built.mtype, built.mid, built.token = mtype, mid, token
    return built


def from_server(
    *,
    code: Code = Code.PUT,
    mtype: int = CON,
    mid: int = 100,
    token: bytes = b"\x07",
    path: tuple[str, ...] = ("0", "1"),
    payload: bytes = b"",
    content_format: int | None = None,
    block1: tuple[int, bool, int] | None = None,
    block2: tuple[int, bool, int] | None = None,
) -> bytes:
    request = message(code, mtype, mid, token, uri_path=path, payload=payload)
    if content_format is not None:
        request.opt.content_format = content_format
    if block1 is not None:
        request.opt.block1 = BlockwiseTuple(*block1)
    if block2 is not None:
        request.opt.block2 = BlockwiseTuple(*block2)
    return bytes(request.encode())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_request_and_its_piggybacked_answer() -> None:
    channel = Channel()
    link = CoapLink(channel.send)
    pending = asyncio.ensure_future(
        link.request("POST", ("bs",), query=("ep=dev-1", "pct=112"), payload=b"", accept=None)
    )
    await settle()
    [request] = channel.sent
    assert request.mtype == CON and request.code == Code.POST
    assert tuple(request.opt.uri_path) == ("bs",) and tuple(request.opt.uri_query) == ("ep=dev-1", "pct=112")
    answer = message(Code.CHANGED, 2, request.mid, request.token)
    link.datagram_received(bytes(answer.encode()))
    response = await pending
    assert response.code == Code.CHANGED


async def test_a_block_wise_answer_to_a_post_is_fetched_whole() -> None:
    """An EST answer larger than one block comes in Block2 slices; the follow-ups repeat the POST
    without its payload (RFC 7959 §2.4)."""
    channel = Channel()
    link = CoapLink(channel.send)
    body = bytes(range(256)) * 5
    pending = asyncio.ensure_future(
        link.request("POST", ("est", "sen"), payload=b"csr", content_format=286, accept=281)
    )
    for number in range(3):
        await settle()
        request = channel.sent[-1]
        assert request.code == Code.POST and request.opt.accept == 281
        assert request.payload == (b"csr" if number == 0 else b"")
        slice_ = body[number * 512 : (number + 1) * 512]
        answer = message(Code.CHANGED, 2, request.mid, request.token, payload=slice_)
        answer.opt.content_format = 281
        answer.opt.block2 = BlockwiseTuple(number, (number + 1) * 512 < len(body), 5)
        link.datagram_received(bytes(answer.encode()))
    response = await pending
    assert response.payload == body and response.content_format == 281


async def test_the_servers_requests_are_answered_piggybacked_and_duplicates_once() -> None:
    channel, device = Channel(), Device(("2.05", b"</0/1>", 40))
    link = CoapLink(channel.send, device.handle)
    link.datagram_received(from_server(code=Code.GET, path=(), mid=7))
    await settle()
    [answer] = channel.sent
    assert (answer.mtype, answer.mid, answer.token, answer.code) == (2, 7, b"\x07", Code.CONTENT)
    assert answer.payload == b"</0/1>" and answer.opt.content_format == 40
    assert device.calls == [("GET", "/", b"", None, None)]
    link.datagram_received(from_server(code=Code.GET, path=(), mid=7))
    await settle()
    assert len(device.calls) == 1, "a duplicate is not handled twice (RFC 7252 §4.5)"
    assert len(channel.sent) == 2 and channel.sent[1].payload == b"</0/1>"


async def test_a_duplicate_while_the_first_copy_is_handled_is_absorbed() -> None:
    channel, device = Channel(), Device()
    device.release.clear()
    link = CoapLink(channel.send, device.handle)
    link.datagram_received(from_server(mid=8))
    await settle()
    link.datagram_received(from_server(mid=8))
    await settle()
    assert channel.sent == [] and len(device.calls) == 1
    device.release.set()
    await settle()
    assert [m.mid for m in channel.sent] == [8]


async def test_non_confirmable_requests_get_a_non_answer() -> None:
    channel = Channel()
    link = CoapLink(channel.send, Device().handle)
    link.datagram_received(from_server(mtype=NON, mid=9))
    await settle()
    [answer] = channel.sent
    assert answer.mtype == NON and answer.mid != 9 and answer.token == b"\x07"


async def test_a_method_a_client_does_not_know_is_not_allowed() -> None:
    channel, device = Channel(), Device()
    link = CoapLink(channel.send, device.handle)
    link.datagram_received(from_server(code=Code.FETCH, mid=12))
    await settle()
    assert channel.sent[-1].code == Code.METHOD_NOT_ALLOWED and channel.sent[-1].mid == 12
    assert device.calls == []


async def test_a_block_wise_write_is_assembled_before_it_is_handled() -> None:
    channel, device = Channel(), Device()
    link = CoapLink(channel.send, device.handle)
    payload = bytes(range(200)) * 7  # 1400 bytes: two 1024-byte blocks
    first, second = payload[:1024], payload[1024:]
    link.datagram_received(from_server(mid=20, payload=first, content_format=112, block1=(0, True, 6)))
    await settle()
    assert device.calls == []
    assert channel.sent[-1].code == Code.CONTINUE
    assert channel.sent[-1].opt.block1 == BlockwiseTuple(0, True, 6)
    link.datagram_received(from_server(mid=21, payload=second, content_format=112, block1=(1, False, 6)))
    await settle()
    assert device.calls == [("PUT", "/0/1", payload, 112, None)]
    assert channel.sent[-1].code == Code.CHANGED
    assert channel.sent[-1].opt.block1 == BlockwiseTuple(1, False, 6)


async def test_a_block1_slice_out_of_order_is_incomplete() -> None:
    channel, device = Channel(), Device()
    link = CoapLink(channel.send, device.handle)
    link.datagram_received(from_server(mid=30, payload=b"x" * 64, block1=(1, True, 2)))
    await settle()
    assert channel.sent[-1].code == Code.REQUEST_ENTITY_INCOMPLETE and device.calls == []


async def test_what_it_cannot_use_gets_a_reset() -> None:
    channel = Channel()
    link = CoapLink(channel.send)
    stray = message(Code.CHANGED, CON, 41, b"\x99")
    link.datagram_received(bytes(stray.encode()))
    assert channel.sent[-1].mtype == 3 and channel.sent[-1].mid == 41, "a response to nothing we asked"
    link.datagram_received(bytes([0x40, 0x01, 0x00, 0x2A, 0xF0]))  # reserved option delta 15
    assert channel.sent[-1].mtype == 3 and channel.sent[-1].mid == 42, "a message that does not parse"
    link.datagram_received(bytes([0x50, 0x01, 0x00, 0x2B, 0xF0]))
    assert len(channel.sent) == 2, "a NON that does not parse is dropped silently"


async def test_no_handler_and_a_failing_handler_still_answer() -> None:
    channel = Channel()
    link = CoapLink(channel.send)
    link.datagram_received(from_server(mid=50))
    await settle()
    assert channel.sent[-1].code == Code.NOT_FOUND

    async def broken(*args: object) -> Response:
        raise RuntimeError("bug")

    link.handler = broken
    link.datagram_received(from_server(mid=51))
    await settle()
    assert channel.sent[-1].code == Code.INTERNAL_SERVER_ERROR


async def test_closing_fails_requests_in_flight_and_sends_nothing_more() -> None:
    channel = Channel()
    link = CoapLink(channel.send, Device().handle)
    told: list[BaseException] = []
    link.on_close = told.append
    pending = asyncio.ensure_future(link.request("GET", ("est", "crts")))
    await settle()
    link.close(ConnectionAbortedError("session ended"))
    link.close(ConnectionAbortedError("again"))
    assert [str(e) for e in told] == ["session ended"], "told once, with the first reason"
    with pytest.raises(ConnectionAbortedError):
        await pending
    with pytest.raises(ConnectionError):
        await link.request("GET", ("est", "crts"))
    sent = len(channel.sent)
    link.datagram_received(from_server(mid=60))
    await settle()
    assert len(channel.sent) == sent


def test_block1_round_trips_through_the_wire_codec() -> None:
    data = wire.encode_message(
        mtype=wire.ACK, mid=1, token=b"t", code=wire.code_from_dotted("2.31"), block1=(3, True, 6)
    )
    parsed = wire.parse_message(data)
    assert parsed is not None and parsed.block1 == (3, True, 6)
