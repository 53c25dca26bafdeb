"""SenML JSON (110) and SenML CBOR (112): vectors, RFC 8428 resolution rules, errors, fuzzing."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.lwm2m import (
    OBJECTS,
    CodecError,
    Instance,
    Instances,
    ObjectDef,
    ObjLink,
    Path,
    ResourceDef,
    ResourceType,
)
from bootstrap.lwm2m.senml import decode_cbor, decode_json, encode_cbor, encode_json

T = ResourceType

SECURITY_INSTANCE: Instance = {
    0: "coaps://lwm2m.example:5684",
    1: False,
    2: 0,
    3: b"\xfb\xff",
    10: 101,
    16: {0: 49320},
    17: ObjLink(21, 0),
}
# bn is the base path plus "/", names are relative; b"\xfb\xff" is "+/8=" in standard base64
# and "-_8" in base64url without padding (RFC 8428 §5).
SECURITY_JSON = (
    '[{"bn":"/0/1/","n":"0","vs":"coaps://lwm2m.example:5684"},'
    '{"n":"1","vb":false},'
    '{"n":"2","v":0},'
    '{"n":"3","vd":"-_8"},'
    '{"n":"10","v":101},'
    '{"n":"16/0","v":49320},'
    '{"n":"17","vlo":"21:0"}]'
)


def test_json_vector() -> None:
    """A Security instance encodes to the expected SenML JSON text and decodes back."""
    assert encode_json(Path(0, 1), {1: SECURITY_INSTANCE}).decode() == SECURITY_JSON
    assert decode_json(SECURITY_JSON.encode(), Path(0, 1)) == {1: SECURITY_INSTANCE}


def test_json_object_level_names() -> None:
    """On an object path the names carry the instance: bn "/0/", n "1/0"."""
    text = encode_json(Path(0), {1: {0: "coap://a"}, 2: {0: "coap://b"}}).decode()
    assert text == '[{"bn":"/0/","n":"1/0","vs":"coap://a"},{"n":"2/0","vs":"coap://b"}]'


def test_json_single_value_at_base() -> None:
    """A single value on a resource path is written with bn only, like the TS single-resource read."""
    assert encode_json(Path(0, 1, 0), {1: {0: "coap://x"}}) == b'[{"bn":"/0/1/0","vs":"coap://x"}]'
    assert encode_json(Path(0, 1, 16), {1: {16: {0: 1, 1: 2}}}) == (
        b'[{"bn":"/0/1/16/","n":"0","v":1},{"n":"1","v":2}]'
    )


# SenML CBOR for /0/1: array(4) of maps with integer labels (RFC 8428 §6) and the text label
# "vlo" for the object link.
SECURITY_CBOR = bytes.fromhex(
    "84"
    "A3 21 65 2F302F312F 00 61 30 03 68 636F61703A2F2F78"  # {-2:"/0/1/", 0:"0", 3:"coap://x"}
    "A2 00 61 31 04 F5"  # {0:"1", 4:true}
    "A2 00 61 33 08 42 0102"  # {0:"3", 8:h'0102'}
    "A2 00 62 3137 63 766C6F 64 32313A30"  # {0:"17", "vlo":"21:0"}
)


def test_cbor_vector() -> None:
    """A Security instance encodes to the hand-checked SenML CBOR bytes and decodes back."""
    data: Instances = {1: {0: "coap://x", 1: True, 3: b"\x01\x02", 17: ObjLink(21, 0)}}
    assert encode_cbor(Path(0, 1), data) == SECURITY_CBOR
    assert decode_cbor(SECURITY_CBOR, Path(0, 1)) == data


DEVICE = ObjectDef(
    3,
    "Device",
    {
        0: ResourceDef(0, "Manufacturer", T.STRING),
        6: ResourceDef(6, "Available Power Sources", T.INTEGER, multiple=True),
        9: ResourceDef(9, "Battery Level", T.INTEGER),
        13: ResourceDef(13, "Current Time", T.TIME),
        16: ResourceDef(16, "Supported Binding and Modes", T.STRING),
    },
    multiple=False,
)


def test_json_device_example() -> None:
    """A Device read in the TS SenML JSON style resolves bn + n into typed values."""
    text = (
        '[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},'
        '{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"9","v":100},'
        '{"n":"13","v":1367491215},{"n":"16","vs":"U"}]'
    )
    assert decode_json(text.encode(), Path(3, 0), {**OBJECTS, 3: DEVICE}) == {
        0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}, 9: 100, 13: 1367491215, 16: "U"}
    }


def test_base_name_persists_and_changes() -> None:
    """bn applies to later records until replaced (RFC 8428 §4.5.1); n alone may be absolute."""
    text = (
        '[{"bn":"/0/1/","n":"0","vs":"a"},{"n":"10","v":1},'
        '{"bn":"/0/2/","n":"0","vs":"b"},{"bn":"","n":"/0/3/0","vs":"c"}]'
    )
    assert decode_json(text.encode(), Path(0)) == {1: {0: "a", 10: 1}, 2: {0: "b"}, 3: {0: "c"}}


def test_base_value_and_lenient_inputs() -> None:
    """bv is added to later v values, integral floats fit Integer, padded standard base64 is accepted."""
    text = (
        '[{"bn":"/0/1/","n":"11","v":30.0},{"bv":100,"n":"10","v":1},{"n":"12","v":5},{"n":"3","vd":"+/8="}]'
    )
    assert decode_json(text.encode(), Path(0, 1)) == {1: {11: 30, 10: 101, 12: 105, 3: b"\xfb\xff"}}


def test_unknown_resources_keep_json_types() -> None:
    """Resources outside the model decode by SenML field: ints stay ints, floats floats."""
    text = '[{"bn":"/3/0/","n":"1","v":3},{"n":"2","v":2.5},{"n":"3","vlo":"1:2"},{"n":"4","vd":"AQ"}]'
    assert decode_json(text.encode(), Path(3)) == {0: {1: 3, 2: 2.5, 3: ObjLink(1, 2), 4: b"\x01"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"bn":"/0/2/","n":"0","vs":"x"}]', "outside"),
        ('[{"bn":"/0/1/","n":"0","vs":"x","foo_":1}]', "must-understand"),
        ('[{"bn":"/0/1/","n":"0","vs":"x","v":1}]', "exactly one value field"),
        ('[{"bn":"/0/1/","n":"0"}]', "exactly one value field"),
        ('[{"bn":"/0/1/","n":"2","vs":"0"}]', "needs SenML field v"),
        ('[{"bn":"/0/1/","n":"2","v":1.5}]', "non-integral"),
        ('[{"bn":"/0/1/","n":"2","v":9223372036854775808}]', "not a valid"),
        ('[{"bn":"/0/1/","n":"2","v":NaN}]', "NaN"),
        ('[{"bn":"/0/1/","n":"2","v":true}]', "invalid SenML v"),
        ('[{"bn":"/0/1/","n":"1","vb":1}]', "invalid SenML vb"),
        ('[{"bn":1,"n":"2","v":1}]', "bn must be a string"),
        ('[{"bn":"/0/1/","n":2,"v":1}]', "n must be a string"),
        ('[{"bn":"/0/1/","bv":"x","n":"2","v":1}]', "bv must be a number"),
        ('{"bn":"/0/1/"}', "array"),
        ("[1]", "array"),
        ('[{"bn":"/0/1/","n":"2","v":1},{"n":"2","v":1}]', "duplicate"),
        ('[{"bn":"/0/1/","n":"16","v":1}]', "multiple-instance"),
        ('[{"bn":"/0/1/","n":"0/1","vs":"x"}]', "single-instance"),
        ('[{"bn":"/0/1/","n":"17","vlo":"21"}]', "Objlnk"),
        ('[{"bn":"/0/1/","n":"3","vd":"@@"}]', "base64url"),
        ('[{"bn":"/0/1/","n":"3","vd":"A"}]', "base64url"),
        ('[{"n":"temperature","v":1}]', "invalid LwM2M path"),
        ('[{"bn":"/0/1","vs":"x"}]', "does not name a resource"),
        ('[{"bn":"/0/1/","n":"0","vs":"x"', "malformed"),
        ("[" + "9" * 5000 + "]", "malformed"),
        ("[" * 100000, "malformed"),
    ],
)
def test_json_errors(text: str, message: str) -> None:
    """Malformed or model-inconsistent SenML JSON raises CodecError with a helpful message."""
    with pytest.raises(CodecError, match=message):
        decode_json(text.encode(), Path(0, 1))


def test_json_invalid_utf8() -> None:
    """Non-UTF-8 input is a CodecError."""
    with pytest.raises(CodecError, match="UTF-8"):
        decode_json(b'[{"bn":"/0/1/","n":"0","vs":"\xff"}]', Path(0, 1))


def test_json_rejects_non_finite_floats_on_encode() -> None:
    """JSON has no NaN or infinity, so encoding one is a CodecError."""
    objects = {**OBJECTS, 7: ObjectDef(7, "t", {0: ResourceDef(0, "f", T.FLOAT)})}
    with pytest.raises(CodecError, match="non-finite"):
        encode_json(Path(7), {0: {0: float("inf")}}, objects)


def test_cbor_extras() -> None:
    """CBOR dates, decimal fractions and unknown labels are handled; labels must be ints or text."""
    server = cbor2.dumps(
        [
            {-2: "/1/0/", 0: "12", 2: cbor2.CBORTag(1, 1367491215)},
            {0: "1", 2: cbor2.CBORTag(4, [0, 86400]), 99: "ignored", -1: 10},
        ]
    )
    assert decode_cbor(server, Path(1, 0)) == {0: {12: 1367491215, 1: 86400}}
    with pytest.raises(CodecError, match="neither"):
        decode_cbor(cbor2.dumps([{-2: "/1/0/", 0: "1", 2: 1, 1.5: 0}]), Path(1, 0))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({-2: "/0/1/", 0: "0", 3: "x"}, "array of maps"),
        ([1], "array of maps"),
        ([{-2: "/0/1/", 0: "3", 8: "AQ"}], "invalid SenML vd"),
        ([{-2: "/0/1/", 0: "0", 3: "x", 2: 1}], "exactly one value field"),
        ([{-2: "/0/1/", 0: "2", 2: cbor2.CBORTag(4, [2**40, 1])}], "Integer resource"),
        ([{-2: "/0/1/", 0: "0", 2: cbor2.CBORTag(1, 0)}], "needs SenML field vs"),
    ],
)
def test_cbor_errors(item: Any, message: str) -> None:
    """Malformed or model-inconsistent SenML CBOR raises CodecError."""
    with pytest.raises(CodecError, match=message):
        decode_cbor(cbor2.dumps(item), Path(0, 1))


def test_cbor_trailing_bytes_and_duplicate_labels() -> None:
    """Exactly one CBOR item is allowed, and a map may not repeat a label."""
    with pytest.raises(CodecError, match="trailing"):
        decode_cbor(SECURITY_CBOR + b"\x00", Path(0, 1))
    with pytest.raises(CodecError, match="malformed CBOR"):
        decode_cbor(bytes.fromhex("81 A2 00 61 30 00 61 31"), Path(0, 1))


# -- fuzzing -------------------------------------------------------------------------------------

FIELDS = ["bn", "n", "v", "vs", "vb", "vd", "vlo", "bv", "bt", "t", "u", "x_"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["/0/1/", "/0/1/0", "0", "16/0", "17", "21:0", "/1/0/", "AQ", "-_8"]),
)
records = st.lists(st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=5), max_size=6)


@settings(max_examples=400)
@given(document=st.one_of(records, scalars))
def test_fuzz_structured_json(document: Any) -> None:
    """SenML-shaped JSON with arbitrary field values raises nothing but CodecError."""
    try:
        decode_json(json.dumps(document).encode(), Path(0, 1))
    except CodecError:
        pass


@settings(max_examples=400)
@given(document=records)
def test_fuzz_structured_cbor(document: list[dict[str, Any]]) -> None:
    """SenML-shaped CBOR with arbitrary field values raises nothing but CodecError."""
    labels = {"bn": -2, "n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8, "bv": -5, "bt": -3, "t": 6, "u": 1}
    items = [{labels.get(k, k): v for k, v in record.items()} for record in document]
    try:
        decode_cbor(cbor2.dumps(items), Path(0))
    except CodecError:
        pass


@settings(max_examples=400)
@given(payload=st.binary(max_size=150))
def test_fuzz_random_bytes(payload: bytes) -> None:
    """Random bytes fed to both SenML decoders raise nothing but CodecError."""
    for decoder in (decode_json, decode_cbor):
        try:
            decoder(payload, Path(0))
        except CodecError:
            pass
