"""LwM2M CBOR (11544): vectors, path compaction, errors, fuzzing."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.lwm2m import CodecError, Instances, ObjLink, Path
from bootstrap.lwm2m.lwm2m_cbor import decode, encode, loads_cbor

# {0: {1: {0: "coap://x", 10: 101, 16: {0: 49320}, 17: "21:0"}}}: plain nesting from the root.
SECURITY_CBOR = bytes.fromhex(
    "A1 00"  # map(1), object 0
    "A1 01"  # map(1), instance 1
    "A4"  # map(4) of resources
    "00 68 636F61703A2F2F78"  # 0: "coap://x"
    "0A 18 65"  # 10: 101
    "10 A1 00 19 C0A8"  # 16: {0: 49320}
    "11 64 32313A30"  # 17: "21:0" (Objlnk as text)
)
SECURITY_DATA: Instances = {1: {0: "coap://x", 10: 101, 16: {0: 49320}, 17: ObjLink(21, 0)}}


def test_security_vector() -> None:
    """A Security instance encodes to the hand-checked nested map and decodes back."""
    assert encode(Path(0, 1), SECURITY_DATA) == SECURITY_CBOR
    assert decode(SECURITY_CBOR, Path(0, 1)) == SECURITY_DATA
    assert decode(SECURITY_CBOR, Path(0)) == SECURITY_DATA


# Vectors from Anjay's LwM2M CBOR reader tests (object 13 is not modelled: types are inferred).
@pytest.mark.parametrize(
    ("hex_payload", "base", "expected"),
    [
        ("A1 83 0D 18 1A 01 18 2A", Path(13, 26, 1), {26: {1: 42}}),  # {[13, 26, 1]: 42}
        ("A1 83 0D 18 1A 01 F5", Path(13, 26, 1), {26: {1: True}}),
        ("BF 9F 0D 18 1A 01 FF 18 2A FF", Path(13, 26, 1), {26: {1: 42}}),  # indefinite lengths
        ("A1 0D A1 18 1A A1 01 18 2A", Path(13, 26, 1), {26: {1: 42}}),  # {13: {26: {1: 42}}}
        ("A1 81 0D A1 81 18 1A A1 81 01 18 2A", Path(13, 26, 1), {26: {1: 42}}),  # {[13]: {[26]: ...}}
        ("A1 81 0D A1 81 18 1A A1 81 01 A1 81 02 C4 82 20 18 2D", Path(13, 26, 1, 2), {26: {1: {2: 4.5}}}),
        ("A1 82 0D 18 1A A2 01 18 2A 02 15", Path(13, 26), {26: {1: 42, 2: 21}}),
        ("A2 83 0D 18 1A 01 18 2A 83 0D 18 1A 02 15", Path(13, 26), {26: {1: 42, 2: 21}}),
        ("A2 82 0D 18 1A A1 01 18 2A 83 0D 18 1A 02 15", Path(13, 26), {26: {1: 42, 2: 21}}),
        ("A2 83 0D 18 1A 01 18 2A 82 0D 18 1A A1 81 02 15", Path(13, 26), {26: {1: 42, 2: 21}}),
        (
            "A1 83 0D 18 1A 01 50 00112233445566778899AABBCCDDEEFF",
            Path(13, 26, 1),
            {26: {1: bytes(range(0, 256, 17))}},
        ),
        ("A1 83 0D 18 1A 01 70 632D2D636F7373697A65707375756C6F", Path(13), {26: {1: "c--cossizepsuulo"}}),
    ],
)
def test_anjay_vectors(hex_payload: str, base: Path, expected: dict[int, Any]) -> None:
    """Plain, compacted, mixed and indefinite-length encodings all decode to the same data."""
    assert decode(bytes.fromhex(hex_payload), base) == expected


def test_compacted_security_forms() -> None:
    """Compacted keys for Security data decode to the same instance as plain nesting."""
    forms = [
        {(0, 1): {0: "coap://x", 10: 101, 16: {0: 49320}, 17: "21:0"}},
        {(0, 1, 0): "coap://x", (0, 1, 10): 101, (0, 1, 16, 0): 49320, (0, 1, 17): "21:0"},
        {0: {(1, 0): "coap://x", 1: {10: 101, (16, 0): 49320}}, (0, 1): {17: "21:0"}},
    ]
    for form in forms:
        assert decode(cbor2.dumps(form), Path(0, 1)) == SECURITY_DATA


def test_empty_containers_and_time_tags() -> None:
    """Empty instance and multiple-resource maps survive; a CBOR date is accepted for Time."""
    data: Instances = {4: {}, 5: {16: {}}}
    assert decode(encode(Path(0), data), Path(0)) == data
    payload = cbor2.dumps({1: {0: {12: cbor2.CBORTag(1, 1367491215), 1: 86400}}})
    assert decode(payload, Path(1)) == {0: {12: 1367491215, 1: 86400}}


@pytest.mark.parametrize(
    ("document", "base", "message"),
    [
        ([1, 2], Path(0), "must be a map"),
        ({-1: {}}, Path(0), "not a path component"),
        ({"0": {}}, Path(0), "not a path component"),
        ({True: {}}, Path(0), "not a path component"),
        ({70000: {}}, Path(0), "not a path component"),
        ({(): {}}, Path(0), "empty array"),
        ({((0, 1),): {}}, Path(0), "not a path component"),
        ({(0, 1, 0, 0, 0): 1}, Path(0), "longer than 4"),
        ({(0, 1, 16, 0): {0: 1}}, Path(0), "cannot hold a map"),
        ({(0, 1): 5}, Path(0), "expected a map"),
        ({1: {0: {0: 60}}}, Path(0), "outside"),
        ({(0, 2): {0: "coap://x"}}, Path(0, 1), "outside"),
        ({(0, 1, 0): "coap://x"}, Path(0, 1, 1), "outside"),
        ({(0, 1, 0): None}, Path(0), "null"),
        ({(0, 1, 0): 5}, Path(0), "not a valid String"),
        ({(0, 1, 17): "21"}, Path(0), "Objlnk"),
        ({(0, 1, 17): 21}, Path(0), "Objlnk"),
        ({(0, 1, 0): {0: "x"}}, Path(0), "single-instance"),
        ({(0, 1, 16): 49320}, Path(0), "multiple-instance"),
        ({(0, 1, 0): "x", 0: {1: {0: "y"}}}, Path(0), "duplicate"),
        ({(0, 1, 2): cbor2.CBORTag(1, 0)}, Path(0), "date"),
        ({(0, 1, 2): [1]}, Path(0), "not a valid Integer"),
        ({(3, 0, 1): [1]}, Path(3), "unsupported value type"),
        ({(1, 0, 4): 1}, Path(1), "executable"),
    ],
)
def test_malformed_documents(document: Any, base: Path, message: str) -> None:
    """Keys that are not path components, misplaced values and type mismatches raise CodecError."""
    with pytest.raises(CodecError, match=message):
        decode(cbor2.dumps(document), base)


def test_strict_cbor_reader() -> None:
    """Trailing bytes, duplicate keys, truncation and excessive nesting are rejected."""
    with pytest.raises(CodecError, match="trailing"):
        loads_cbor(SECURITY_CBOR + b"\xa0")
    with pytest.raises(CodecError, match="malformed"):
        loads_cbor(bytes.fromhex("A2 00 01 00 02"))
    with pytest.raises(CodecError, match="malformed"):
        loads_cbor(SECURITY_CBOR[:-1])
    with pytest.raises(CodecError, match="malformed"):
        loads_cbor(b"\x81" * 100 + b"\x00")


@settings(max_examples=500)
@given(payload=st.binary(max_size=150), base=st.sampled_from([Path(0), Path(0, 1), Path(13, 26, 1)]))
def test_fuzz_random_bytes(payload: bytes, base: Path) -> None:
    """Random bytes raise nothing but CodecError."""
    try:
        decode(payload, base)
    except CodecError:
        pass


keys = st.one_of(
    st.integers(-2, 40),
    st.lists(st.integers(0, 30), max_size=5).map(tuple),
    st.text(max_size=2),
    st.booleans(),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from(["21:0", "1:2", "coap://x"]),
)
documents = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=20)


@settings(max_examples=500)
@given(document=documents)
def test_fuzz_structured(document: Any) -> None:
    """Arbitrary nested maps with path-like keys raise nothing but CodecError."""
    try:
        decode(cbor2.dumps(document), Path(0))
    except CodecError:
        pass
