"""The direct EST lane (bootstrap.coap.direct): its CoAP codec against aiocoap's, and its message
layer (piggybacked answers, duplicates, Block2) in memory with a scripted endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiocoap import CON, NON, Code, Message
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import BlockOption
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.coap import direct, outbound, wire
from bootstrap.coap.exchange import CoapReply, CoapRequest

BlockwiseTuple = BlockOption.BlockwiseTuple


def request_bytes(
    *,
    path: tuple[str, ...] = (".well-known", "est", "sen"),
    mtype: Any = CON,
    mid: int = 0x1234,
    token: bytes = b"\x01\x02",
    code: Code = Code.POST,
    payload: bytes = b"csr",
    content_format: int | None = 286,
    accept: int | None = None,
    block2: tuple[int, int] | None = None,
    extra: tuple[tuple[int, bytes], ...] = (),
    query: tuple[str, ...] = (),
) -> bytes:
    message = Message(code=code, payload=payload, uri_path=path, uri_query=query)
    message.mtype = mtype
    message.mid = mid
    message.token = token
    if content_format is not None:
        message.opt.content_format = content_format
    if accept is not None:
        message.opt.accept = accept
    if block2 is not None:
        message.opt.block2 = BlockwiseTuple(block2[0], False, block2[1])
    for number, value in extra:
        option = OptionNumber(number).create_option(decode=value)
        message.opt.add_option(option)
    return bytes(message.encode())


segments = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    path=st.lists(segments, max_size=5).map(tuple),
    query=st.lists(segments, max_size=3).map(tuple),
    mtype=st.sampled_from([CON, NON]),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    code=st.sampled_from([Code.GET, Code.POST]),
    payload=st.binary(max_size=2000),
    content_format=st.none() | st.integers(0, 0xFFFF),
    accept=st.none() | st.integers(0, 0xFFFF),
    block2=st.none() | st.tuples(st.integers(0, 2**20 - 1), st.integers(0, 6)),
)
def test_parse_request_agrees_with_aiocoap(**fields: Any) -> None:
    data = request_bytes(**fields)
    parsed = direct.parse_request(data)
    reference = Message.decode(data)
    assert parsed is not None
    assert parsed.mtype == reference.mtype
    assert parsed.mid == reference.mid
    assert parsed.token == reference.token
    assert parsed.code == reference.code
    assert parsed.path == tuple(reference.opt.uri_path)
    assert parsed.query == tuple(reference.opt.uri_query)
    assert parsed.content_format == reference.opt.content_format
    assert parsed.accept == reference.opt.accept
    assert parsed.payload == reference.payload
    if reference.opt.block2 is None:
        assert parsed.block2 is None
    else:
        block = reference.opt.block2
        assert parsed.block2 == (block.block_number, block.more, block.size_exponent)


@pytest.mark.parametrize(
    ("description", "data"),
    [
        ("a response", request_bytes(code=Code.CHANGED)),
        ("DELETE", request_bytes(code=Code.DELETE)),
        ("an ACK", bytes([0x60, 0x00, 0x12, 0x34])),
        ("Block1", request_bytes(extra=((27, b"\x0e"),))),
        ("Proxy-Uri (critical, not understood here)", request_bytes(extra=((35, b"coap://x/"),))),
        ("If-Match", request_bytes(extra=((1, b"\x01"),))),
        ("truncated header", b"\x40\x02"),
        ("token longer than the datagram", bytes([0x48, 0x02, 0, 1, 1, 2])),
        ("payload marker without payload", request_bytes(payload=b"") + b"\xff"),
        ("reserved option delta 15", bytes([0x40, 0x02, 0, 1, 0xF0])),
        ("option running past the end", bytes([0x40, 0x02, 0, 1, 0xB5, 0x61])),
        ("path that is not UTF-8", bytes([0x40, 0x02, 0, 1, 0xB1, 0xFF])),
        ("version 2", bytes([0x80, 0x02, 0, 1])),
    ],
)
def test_what_the_lane_leaves_to_aiocoap(description: str, data: bytes) -> None:
    assert direct.parse_request(data) is None, description


def test_elective_options_it_does_not_know_are_ignored() -> None:
    # Size1 (60) and Size2 (28) are elective (even): RFC 7252 §5.4.1 says ignore them.
    parsed = direct.parse_request(request_bytes(extra=((60, b"\x01\x00"), (28, b""))))
    assert parsed is not None and parsed.path == (".well-known", "est", "sen")


@settings(max_examples=200, deadline=None)
@given(
    mtype=st.sampled_from([wire.ACK, wire.NON, wire.CON]),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    code=st.sampled_from(["0.01", "0.02", "0.03", "0.04", "2.04", "2.05", "4.00", "4.03", "4.15", "5.03"]),
    path=st.lists(segments, max_size=4).map(tuple),
    query=st.lists(segments, max_size=3).map(tuple),
    accept=st.none() | st.integers(0, 0xFFFF),
    payload=st.binary(max_size=1500),
    content_format=st.none() | st.integers(0, 0xFFFF),
    max_age=st.none() | st.integers(0, 2**32 - 1),
    block2=st.none() | st.tuples(st.integers(0, 2**20 - 1), st.booleans(), st.integers(0, 6)),
    block1=st.none() | st.tuples(st.integers(0, 2**20 - 1), st.booleans(), st.integers(0, 6)),
    size2=st.none() | st.integers(0, 2**32 - 1),
)
def test_encode_message_decodes_with_aiocoap(**fields: Any) -> None:
    encoded = wire.encode_message(**{**fields, "code": wire.code_from_dotted(fields["code"])})
    message = Message.decode(encoded)
    parsed = wire.parse_message(encoded)
    assert parsed is not None
    assert tuple(message.opt.uri_path) == fields["path"]
    assert tuple(message.opt.uri_query) == fields["query"]
    assert message.opt.accept == fields["accept"]
    assert message.mtype == fields["mtype"]
    assert message.mid == fields["mid"]
    assert message.token == fields["token"]
    assert message.code.dotted == fields["code"]
    assert message.payload == fields["payload"]
    assert message.opt.content_format == fields["content_format"]
    assert message.opt.max_age == fields["max_age"]
    assert message.opt.size2 == fields["size2"]
    for name in ("block1", "block2"):
        block = getattr(message.opt, name)
        as_tuple = None if block is None else (block.block_number, block.more, block.size_exponent)
        assert as_tuple == fields[name]
        assert getattr(parsed, name) == fields[name]


# --- the message layer, in memory ---------------------------------------------------------------


class FakeRemote:
    """The lane's view of a DTLS session: records what is sent."""

    def __init__(self, maximum_payload_size: int = 1024) -> None:
        self.lane_state: direct.LaneState | None = None
        self.hostinfo = "192.0.2.1:5684"
        self.maximum_payload_size = maximum_payload_size
        self.authenticated_claims: list[Any] = []
        self.sent: list[Message] = []

    def send(self, data: bytes) -> None:
        self.sent.append(Message.decode(data))


class ScriptedEndpoint:
    """An EstEndpoint stand-in: answers with ``reply`` once ``release`` is set, counting calls."""

    def __init__(self, reply: CoapReply) -> None:
        self.reply = reply
        self.calls: list[CoapRequest] = []
        self.release = asyncio.Event()
        self.release.set()

    async def handle(self, request: CoapRequest) -> CoapReply:
        self.calls.append(request)
        await self.release.wait()
        return self.reply


def lane_with(reply: CoapReply) -> tuple[direct.DirectLane, ScriptedEndpoint]:
    endpoint = ScriptedEndpoint(reply)
    mids = iter(range(40000, 50000))
    return direct.DirectLane(direct.LaneRoutes(est=endpoint.handle), lambda: next(mids)), endpoint


async def settle(lane: direct.DirectLane) -> None:
    await lane.drain()
    await asyncio.sleep(0)


async def test_confirmable_request_gets_a_piggybacked_answer() -> None:
    lane, endpoint = lane_with(CoapReply("2.04", b"pkcs7", 281))
    remote = FakeRemote()
    assert lane.offer(remote, request_bytes(path=("est", "LWM2M", "sen"), accept=281))
    await settle(lane)
    [answer] = remote.sent
    assert (answer.mtype, answer.mid, answer.token) == (wire.ACK, 0x1234, b"\x01\x02")
    assert answer.code == Code.CHANGED and answer.payload == b"pkcs7" and answer.opt.content_format == 281
    [call] = endpoint.calls
    assert (call.method, call.path, call.content_format, call.accept, call.payload, call.peer) == (
        "POST",
        ("LWM2M", "sen"),
        286,
        281,
        b"csr",
        remote.hostinfo,
    )
    assert call.remote is remote


async def test_non_confirmable_request_gets_a_non_answer_with_a_fresh_message_id() -> None:
    lane, _ = lane_with(CoapReply("2.05", b"certs", 281))
    remote = FakeRemote()
    assert lane.offer(remote, request_bytes(mtype=NON, code=Code.GET, path=("est", "crts"), payload=b""))
    await settle(lane)
    [answer] = remote.sent
    assert answer.mtype == NON and answer.mid == 40000 and answer.token == b"\x01\x02"


async def test_errors_carry_max_age() -> None:
    lane, _ = lane_with(CoapReply("5.03", b"saturated", max_age=7))
    remote = FakeRemote()
    lane.offer(remote, request_bytes())
    await settle(lane)
    assert remote.sent[0].code == Code.SERVICE_UNAVAILABLE and remote.sent[0].opt.max_age == 7


async def test_duplicates_are_answered_again_without_enrolling_again() -> None:
    lane, endpoint = lane_with(CoapReply("2.04", b"pkcs7", 281))
    endpoint.release.clear()
    remote = FakeRemote()
    data = request_bytes()
    assert lane.offer(remote, data)
    await asyncio.sleep(0)
    assert lane.offer(remote, data), "a retransmission while signing is absorbed"
    assert remote.sent == []
    endpoint.release.set()
    await settle(lane)
    assert lane.offer(remote, data), "a retransmission after the answer gets it again"
    assert len(endpoint.calls) == 1
    assert [m.mid for m in remote.sent] == [0x1234, 0x1234]
    assert remote.sent[0].payload == remote.sent[1].payload
    lane.offer(remote, request_bytes(mid=0x1235))
    await settle(lane)
    assert len(endpoint.calls) == 2, "a new message id is a new request"


async def test_large_answers_go_in_block2_slices_served_from_the_session() -> None:
    body = bytes(range(256)) * 10  # 2560 bytes: three 1024-byte blocks
    lane, endpoint = lane_with(CoapReply("2.04", body, 281))
    remote = FakeRemote()
    lane.offer(remote, request_bytes(mid=1))
    await settle(lane)
    first = remote.sent[-1]
    assert first.opt.block2 == BlockwiseTuple(0, True, 6) and first.opt.size2 == len(body)
    received = first.payload
    for number, mid in ((1, 2), (2, 3)):
        assert lane.offer(remote, request_bytes(mid=mid, payload=b"", block2=(number, 6)))
        await settle(lane)
        received += remote.sent[-1].payload
    assert remote.sent[-1].opt.block2 == BlockwiseTuple(2, False, 6)
    assert received == body
    assert len(endpoint.calls) == 1, "follow-ups are slices of the same answer"
    assert not lane.offer(remote, request_bytes(mid=4, payload=b"", block2=(1, 6))), (
        "after the last slice the body is gone; a late follow-up goes to aiocoap"
    )


async def test_the_clients_smaller_block_size_is_used() -> None:
    body = b"x" * 300
    lane, _ = lane_with(CoapReply("2.04", body, 281))
    remote = FakeRemote()
    lane.offer(remote, request_bytes(block2=(0, 3)))  # 128-byte blocks
    await settle(lane)
    assert remote.sent[-1].opt.block2 == BlockwiseTuple(0, True, 3)
    assert len(remote.sent[-1].payload) == 128


async def test_block2_beyond_the_end_is_a_bad_option() -> None:
    lane, _ = lane_with(CoapReply("2.04", b"y" * 2000, 281))
    remote = FakeRemote()
    lane.offer(remote, request_bytes(mid=1))
    await settle(lane)
    lane.offer(remote, request_bytes(mid=2, payload=b"", block2=(9, 6)))
    await settle(lane)
    assert remote.sent[-1].code == Code.BAD_OPTION


async def test_requests_outside_est_or_continuing_aiocoap_transfers_are_not_taken() -> None:
    lane, endpoint = lane_with(CoapReply("2.04", b"", None))
    remote = FakeRemote()
    assert not lane.offer(remote, request_bytes(path=("bs",)))
    assert not lane.offer(remote, request_bytes(path=("est",)))
    assert not lane.offer(remote, request_bytes(path=(".well-known", "core"), code=Code.GET))
    assert not lane.offer(remote, request_bytes(payload=b"", block2=(1, 6)))
    assert not lane.offer(remote, request_bytes(extra=((27, b"\x0e"),)))
    await settle(lane)
    assert endpoint.calls == [] and remote.sent == []


# --- the server's own requests (role reversal), in memory ----------------------------------------


def response_bytes(
    *, mtype: int, mid: int, token: bytes, code: str = "2.05", payload: bytes = b"", **options: Any
) -> bytes:
    return wire.encode_message(
        mtype=mtype, mid=mid, token=token, code=wire.code_from_dotted(code), payload=payload, **options
    )


def sent_request(remote: FakeRemote, index: int = -1) -> Message:
    message = remote.sent[index]
    assert message.code.is_request()
    return message


async def test_a_piggybacked_answer_completes_the_request() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    pending = asyncio.ensure_future(lane.request(remote, method="GET", path=("1",), accept=40))
    await asyncio.sleep(0)
    request = sent_request(remote)
    assert request.mtype == CON and tuple(request.opt.uri_path) == ("1",) and request.opt.accept == 40
    answer = response_bytes(
        mtype=wire.ACK, mid=request.mid, token=request.token, payload=b"</1/0>", content_format=40
    )
    assert lane.offer(remote, answer)
    response = await pending
    assert wire.dotted(response.code) == "2.05" and response.payload == b"</1/0>"
    assert response.content_format == 40
    assert not lane.offer(remote, answer), "the exchange is over: a late copy is aiocoap's business"


async def test_an_empty_ack_then_a_separate_response() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    pending = asyncio.ensure_future(lane.request(remote, method="POST", path=("bs",)))
    await asyncio.sleep(0)
    request = sent_request(remote)
    assert lane.offer(remote, response_bytes(mtype=wire.ACK, mid=request.mid, token=b"", code="0.00"))
    assert not pending.done()
    separate = response_bytes(mtype=CON, mid=777, token=request.token, code="2.04")
    assert lane.offer(remote, separate)
    assert (await pending).code == wire.code_from_dotted("2.04")
    ack = remote.sent[-1]
    assert (ack.mtype, ack.mid, ack.code) == (wire.ACK, 777, Code.EMPTY)
    assert lane.offer(remote, separate), "a repeated separate response is acknowledged again"
    assert remote.sent[-1].mid == 777 and len([m for m in remote.sent if m.mtype == wire.ACK]) == 2


async def test_a_reset_fails_the_request() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    pending = asyncio.ensure_future(lane.request(remote, method="DELETE", path=("0", "1")))
    await asyncio.sleep(0)
    request = sent_request(remote)
    assert lane.offer(remote, response_bytes(mtype=wire.RST, mid=request.mid, token=b"", code="0.00"))
    with pytest.raises(outbound.PeerReset):
        await pending


async def test_unanswered_requests_are_retransmitted_then_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "ACK_TIMEOUT", 0.01)
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(lane.request(remote, method="PUT", path=("1", "0"), payload=b"x"), 5)
    assert len(remote.sent) == 1 + outbound.MAX_RETRANSMIT
    assert len({m.mid for m in remote.sent}) == 1, "retransmissions repeat the message id"
    assert remote.lane_state is not None and not remote.lane_state.outbound.by_token


async def test_the_end_of_the_session_fails_requests_in_flight() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    pending = asyncio.ensure_future(lane.request(remote, method="GET", path=("0",)))
    await asyncio.sleep(0)
    assert remote.lane_state is not None
    remote.lane_state.close(ConnectionAbortedError("session closed"))
    with pytest.raises(ConnectionAbortedError):
        await pending


async def test_a_block_wise_answer_is_fetched_whole() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    body = bytes(range(256)) * 5  # 1280 bytes in 512-byte blocks: 3 exchanges
    pending = asyncio.ensure_future(lane.request(remote, method="GET", path=("",), accept=40))
    for number in range(3):
        await asyncio.sleep(0)
        request = sent_request(remote)
        if number:
            assert request.opt.block2.block_number == number and request.opt.block2.size_exponent == 5
        chunk = body[number * 512 : (number + 1) * 512]
        more = (number + 1) * 512 < len(body)
        assert lane.offer(
            remote,
            response_bytes(
                mtype=wire.ACK,
                mid=request.mid,
                token=request.token,
                payload=chunk,
                content_format=40,
                block2=(number, more, 5),
            ),
        )
    response = await pending
    assert response.payload == body and response.block2 is None


async def test_larger_payloads_are_left_to_aiocoap() -> None:
    lane, _ = lane_with(CoapReply("2.04", b""))
    remote = FakeRemote()
    assert lane.can_carry(remote, b"x" * 1024)
    assert not lane.can_carry(remote, b"x" * 1025)
    with pytest.raises(ValueError):
        await lane.request(remote, method="PUT", path=("0", "1"), payload=b"x" * 1025)
    assert not lane.offer(remote, response_bytes(mtype=wire.ACK, mid=5, token=b"t")), "not ours"


async def test_a_failing_handler_still_gets_an_answer_out() -> None:
    """Handlers translate their own errors; if one raises anyway the device gets 5.00, not silence
    (a pending duplicate entry would otherwise swallow every retransmission)."""

    async def broken(request: CoapRequest) -> CoapReply:
        raise RuntimeError("bug")

    lane = direct.DirectLane(direct.LaneRoutes(est=broken), lambda: 1)
    remote = FakeRemote()
    assert lane.offer(remote, request_bytes())
    await settle(lane)
    assert remote.sent[-1].code == Code.INTERNAL_SERVER_ERROR
    assert lane.offer(remote, request_bytes()), "the retransmission gets the same answer"
    assert len(remote.sent) == 2 and remote.sent[-1].code == Code.INTERNAL_SERVER_ERROR
