"""OMA-TLV (11542): hand-checked vectors, edge cases, and fuzzing."""

from __future__ import annotations

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
from bootstrap.lwm2m.tlv import TlvEntry, TlvKind, decode, decode_raw, encode, encode_raw

T = ResourceType

# Device object /3, only as far as the Core TS TLV example needs it.
DEVICE = ObjectDef(
    3,
    "Device",
    {
        0: ResourceDef(0, "Manufacturer", T.STRING),
        1: ResourceDef(1, "Model Number", T.STRING),
        2: ResourceDef(2, "Serial Number", T.STRING),
        3: ResourceDef(3, "Firmware Version", T.STRING),
        6: ResourceDef(6, "Available Power Sources", T.INTEGER, multiple=True),
        7: ResourceDef(7, "Power Source Voltage", T.INTEGER, multiple=True),
        8: ResourceDef(8, "Power Source Current", T.INTEGER, multiple=True),
        9: ResourceDef(9, "Battery Level", T.INTEGER),
        10: ResourceDef(10, "Memory Free", T.INTEGER),
        11: ResourceDef(11, "Error Code", T.INTEGER, multiple=True),
        13: ResourceDef(13, "Current Time", T.TIME),
        14: ResourceDef(14, "UTC Offset", T.STRING),
        16: ResourceDef(16, "Supported Binding and Modes", T.STRING),
    },
    multiple=False,
)
WITH_DEVICE = {**OBJECTS, 3: DEVICE}

# Core TS, TLV subsection, example "Single Object Instance Request": Read /3/0 returns the
# resources directly (no object instance entry). Byte by byte, as the TS tabulates it.
DEVICE_EXAMPLE = bytes.fromhex(
    "C8 00 14 4F70656E204D6F62696C6520416C6C69616E6365"  # res 0, 20 bytes "Open Mobile Alliance"
    "C8 01 16 4C69676874776569676874204D324D20436C69656E74"  # res 1, 22 bytes
    "C8 02 09 333435303030313233"  # res 2 "345000123"
    "C3 03 312E30"  # res 3, length 3 in the type byte: "1.0"
    "86 06 41 00 01 41 01 05"  # multiple res 6, 6 bytes: [0]=1, [1]=5
    "88 07 08 42 00 0ED8 42 01 1388"  # multiple res 7, 8-bit length 8: [0]=3800, [1]=5000
    "87 08 41 00 7D 42 01 0384"  # multiple res 8, 7 bytes: [0]=125, [1]=900
    "C1 09 64"  # res 9 = 100
    "C1 0A 0F"  # res 10 = 15
    "83 0B 41 00 00"  # multiple res 11: [0]=0
    "C4 0D 5182428F"  # res 13 = 1367491215
    "C6 0E 2B30323A3030"  # res 14 "+02:00"
    "C1 10 55"  # res 16 "U"
)
DEVICE_VALUES: Instance = {
    0: "Open Mobile Alliance",
    1: "Lightweight M2M Client",
    2: "345000123",
    3: "1.0",
    6: {0: 1, 1: 5},
    7: {0: 3800, 1: 5000},
    8: {0: 125, 1: 900},
    9: 100,
    10: 15,
    11: {0: 0},
    13: 1367491215,
    14: "+02:00",
    16: "U",
}


def test_device_example_raw_structure() -> None:
    """The TS Device example parses into the entry kinds, ids and lengths the TS describes."""
    entries = decode_raw(DEVICE_EXAMPLE)
    assert [(e.kind, e.identifier) for e in entries] == [
        (TlvKind.RESOURCE_VALUE, 0),
        (TlvKind.RESOURCE_VALUE, 1),
        (TlvKind.RESOURCE_VALUE, 2),
        (TlvKind.RESOURCE_VALUE, 3),
        (TlvKind.MULTIPLE_RESOURCE, 6),
        (TlvKind.MULTIPLE_RESOURCE, 7),
        (TlvKind.MULTIPLE_RESOURCE, 8),
        (TlvKind.RESOURCE_VALUE, 9),
        (TlvKind.RESOURCE_VALUE, 10),
        (TlvKind.MULTIPLE_RESOURCE, 11),
        (TlvKind.RESOURCE_VALUE, 13),
        (TlvKind.RESOURCE_VALUE, 14),
        (TlvKind.RESOURCE_VALUE, 16),
    ]
    assert entries[5].children == (
        TlvEntry(TlvKind.RESOURCE_INSTANCE, 0, b"\x0e\xd8"),
        TlvEntry(TlvKind.RESOURCE_INSTANCE, 1, b"\x13\x88"),
    )


def test_device_example_typed_decode() -> None:
    """With a Device model the TS example decodes to the values the TS lists."""
    assert decode(DEVICE_EXAMPLE, Path(3, 0), WITH_DEVICE) == {0: DEVICE_VALUES}


def test_device_example_encodes_byte_for_byte() -> None:
    """Encoding the TS example values reproduces the TS bytes exactly (minimal integer widths)."""
    assert encode(Path(3, 0), {0: DEVICE_VALUES}, WITH_DEVICE) == DEVICE_EXAMPLE


def test_device_example_object_level() -> None:
    """On /3 the same resources are wrapped in one object instance entry with a 8-bit length."""
    wrapped = bytes([0x08, 0x00, len(DEVICE_EXAMPLE)]) + DEVICE_EXAMPLE
    assert encode(Path(3), {0: DEVICE_VALUES}, WITH_DEVICE) == wrapped
    assert decode(wrapped, Path(3), WITH_DEVICE) == {0: DEVICE_VALUES}
    # Device is single-instance, so bare resources on /3 go to instance 0 (as Leshan does).
    assert decode(DEVICE_EXAMPLE, Path(3), WITH_DEVICE) == {0: DEVICE_VALUES}


# A Security instance /0/1, checked by hand against the TLV rules.
SECURITY_INSTANCE: Instance = {
    0: "coaps://bs.example:5684",
    1: True,
    2: 0,
    3: b"id\xff",
    5: b"key",
    16: {0: 49320},
    17: ObjLink(21, 0),
}
SECURITY_TLV = bytes.fromhex(
    "08 01 38"  # object instance (00), 8-bit id 1, 8-bit length 0x38 = 56
    "C8 00 17 636F6170733A2F2F62732E6578616D706C653A35363834"  # res 0, 8-bit length 23, UTF-8
    "C1 01 01"  # res 1 Boolean true: length 1 in the type byte
    "C1 02 00"  # res 2 Security Mode 0 (PSK), one byte
    "C3 03 6964FF"  # res 3 Opaque, 3 bytes
    "C3 05 6B6579"  # res 5 Opaque "key"
    "86 10 44 00 0000C0A8"  # multiple res 16 (6 bytes): instance 0 = 49320 needs 4 bytes signed
    "C4 11 0015 0000"  # res 17 Objlnk 21:0 as two 16-bit integers
)


def test_security_instance_vector() -> None:
    """A Security instance encodes to the hand-checked bytes and decodes back."""
    assert len(SECURITY_TLV) == 3 + 0x38
    assert encode(Path(0), {1: SECURITY_INSTANCE}) == SECURITY_TLV
    assert decode(SECURITY_TLV, Path(0)) == {1: SECURITY_INSTANCE}


def test_instance_path_payload_and_wrapper() -> None:
    """On /0/1 resources sit at the top level; a matching object instance wrapper is tolerated."""
    bare = SECURITY_TLV[3:]
    assert encode(Path(0, 1), {1: SECURITY_INSTANCE}) == bare
    assert decode(bare, Path(0, 1)) == {1: SECURITY_INSTANCE}
    assert decode(SECURITY_TLV, Path(0, 1)) == {1: SECURITY_INSTANCE}
    with pytest.raises(CodecError, match="does not match"):
        decode(SECURITY_TLV, Path(0, 2))


def test_resource_and_resource_instance_paths() -> None:
    """Resource paths carry one resource entry; bare resource instances are accepted for multiples."""
    assert encode(Path(0, 1, 0), {1: {0: "coap://x"}}) == bytes.fromhex("C8 00 08") + b"coap://x"
    multiple = bytes.fromhex("86 10 44 00 0000C0A8")
    assert encode(Path(0, 1, 16), {1: {16: {0: 49320}}}) == multiple
    assert decode(multiple, Path(0, 1, 16)) == {1: {16: {0: 49320}}}
    assert decode(bytes.fromhex("44 00 0000C0A8"), Path(0, 1, 16)) == {1: {16: {0: 49320}}}
    assert encode(Path(0, 1, 16, 0), {1: {16: {0: 49320}}}) == bytes.fromhex("44 00 0000C0A8")
    assert decode(bytes.fromhex("44 00 0000C0A8"), Path(0, 1, 16, 0)) == {1: {16: {0: 49320}}}


def test_empty_containers() -> None:
    """Empty object instances and empty multiple resources are representable in TLV."""
    data: Instances = {4: {}, 5: {16: {}}}
    payload = encode(Path(0), data)
    assert payload == bytes.fromhex("00 04 02 05 80 10")  # empty instance 4; instance 5 with empty res 16
    assert decode(payload, Path(0)) == data
    assert decode(b"", Path(0)) == {}
    assert decode(b"", Path(0, 3)) == {3: {}}


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (0, "00"),
        (127, "7F"),
        (128, "0080"),
        (-128, "80"),
        (-129, "FF7F"),
        (32767, "7FFF"),
        (32768, "00008000"),
        (-(2**31), "80000000"),
        (2**31, "0000000080000000"),
        (-(2**63), "8000000000000000"),
        (2**63 - 1, "7FFFFFFFFFFFFFFF"),
    ],
)
def test_integer_minimal_width(value: int, hex_bytes: str) -> None:
    """Integers use the shortest of 1, 2, 4 or 8 bytes of two's complement (Appendix C)."""
    data = bytes.fromhex(hex_bytes)
    header = bytes([0xC0 | len(data)]) if len(data) <= 7 else bytes([0xC8])
    expected = header[:1] + b"\x02" + (bytes([len(data)]) if len(data) > 7 else b"") + data
    assert encode(Path(0, 0, 2), {0: {2: value}}) == expected
    assert decode(expected, Path(0, 0, 2)) == {0: {2: value}}


def test_unsigned_integers() -> None:
    """Unsigned values below 2**63 are written like Integer; larger ones take all 8 bytes."""
    assert encode(Path(0, 0, 13), {0: {13: 255}}) == bytes.fromhex("C2 0D 00FF")
    top = bytes.fromhex("C8 0D 08 FFFFFFFFFFFFFFFF")
    assert encode(Path(0, 0, 13), {0: {13: 2**64 - 1}}) == top
    assert decode(top, Path(0, 0, 13)) == {0: {13: 2**64 - 1}}
    # A client writing 255 in one byte still means 255 for an unsigned resource.
    assert decode(bytes.fromhex("C1 0D FF"), Path(0, 0, 13)) == {0: {13: 255}}


def test_floats_booleans_objlnk() -> None:
    """Floats use 4 bytes when exact, else 8; booleans are one byte 0/1; Objlnk is 4 bytes."""
    objects = {**OBJECTS, 7: ObjectDef(7, "t", {0: ResourceDef(0, "f", T.FLOAT)})}
    assert encode(Path(7, 0), {0: {0: 1.5}}, objects) == bytes.fromhex("C4 00 3FC00000")
    assert encode(Path(7, 0), {0: {0: 0.1}}, objects) == bytes.fromhex("C8 00 08 3FB999999999999A")
    assert decode(bytes.fromhex("C4 00 3FC00000"), Path(7, 0), objects) == {0: {0: 1.5}}
    assert decode(bytes.fromhex("C1 01 00"), Path(0, 0)) == {0: {1: False}}
    assert decode(bytes.fromhex("C4 11 FFFF FFFF"), Path(0, 0)) == {0: {17: ObjLink(65535, 65535)}}


def test_header_forms() -> None:
    """16-bit identifiers and 8/16/24-bit length fields are produced and parsed."""
    cases = [
        (TlvEntry(TlvKind.RESOURCE_VALUE, 300, b"x"), "E1 012C 78"),
        (TlvEntry(TlvKind.RESOURCE_VALUE, 1, b"y" * 8), "C8 01 08" + "79" * 8),
        (TlvEntry(TlvKind.RESOURCE_VALUE, 1, b"z" * 256), "D0 01 0100" + "7A" * 256),
        (TlvEntry(TlvKind.RESOURCE_VALUE, 1, b"w" * 65536), "D8 01 010000" + "77" * 65536),
    ]
    for entry, hex_bytes in cases:
        data = bytes.fromhex(hex_bytes)
        assert encode_raw([entry]) == data
        assert decode_raw(data) == [entry]
    with pytest.raises(CodecError):
        encode_raw([TlvEntry(TlvKind.RESOURCE_VALUE, 70000, b"")])


@pytest.mark.parametrize(
    ("payload", "base", "message"),
    [
        ("C8", Path(0, 0), "truncated"),
        ("C8 00", Path(0, 0), "truncated"),
        ("E1 00", Path(0, 0), "truncated"),
        ("C8 00 05 41", Path(0, 0), "claims 5 bytes"),
        ("C1 01 02", Path(0, 0), "boolean"),
        ("C3 11 000000", Path(0, 0), "Objlnk"),
        ("C2 00 C328", Path(0, 0), "UTF-8"),
        ("C0 02", Path(0, 0), "integer of 0 bytes"),
        ("C1 01 01 C1 01 01", Path(0, 0), "duplicate"),
        ("C1 01 01", Path(0), "object instance entries"),
        ("C1 10 01", Path(0, 0), "multiple-instance"),
        ("80 00", Path(0, 0), "single-instance"),
        ("41 00 01", Path(0, 0), "resource entry"),
        ("04 00 82 10 00 00", Path(0), "nested deeper"),
        ("C1 00 01 C1 01 01", Path(0, 0, 1), "resource instance"),
        ("", Path(0, 0, 0), "empty TLV payload"),
        ("41 00 01 41 01 01", Path(0, 0, 16, 0), "exactly one"),
        ("C1 04 00", Path(1, 0), "executable"),
    ],
)
def test_malformed_payloads(payload: str, base: Path, message: str) -> None:
    """Malformed or model-inconsistent TLV raises CodecError with a helpful message."""
    with pytest.raises(CodecError, match=message):
        decode(bytes.fromhex(payload), base)


tlv_leaf = st.builds(
    TlvEntry, st.just(TlvKind.RESOURCE_VALUE), st.integers(0, 65535), st.binary(max_size=300)
)
tlv_instance_leaf = st.builds(
    TlvEntry, st.just(TlvKind.RESOURCE_INSTANCE), st.integers(0, 65535), st.binary(max_size=20)
)
tlv_multiple = st.builds(
    TlvEntry,
    st.just(TlvKind.MULTIPLE_RESOURCE),
    st.integers(0, 65535),
    st.just(b""),
    st.lists(tlv_instance_leaf, max_size=4).map(tuple),
)
tlv_object_instance = st.builds(
    TlvEntry,
    st.just(TlvKind.OBJECT_INSTANCE),
    st.integers(0, 65535),
    st.just(b""),
    st.lists(st.one_of(tlv_leaf, tlv_multiple), max_size=4).map(tuple),
)


@given(entries=st.lists(st.one_of(tlv_object_instance, tlv_multiple, tlv_leaf), max_size=5))
def test_raw_round_trip(entries: list[TlvEntry]) -> None:
    """Any well-formed entry tree survives encode_raw + decode_raw."""
    assert decode_raw(encode_raw(entries)) == entries


@settings(max_examples=500)
@given(payload=st.binary(max_size=120), base=st.sampled_from([Path(0), Path(1, 0), Path(0, 1, 16), Path(3)]))
def test_fuzz_only_codec_error(payload: bytes, base: Path) -> None:
    """Random bytes fed to the TLV decoder raise nothing but CodecError."""
    try:
        decode(payload, base)
    except CodecError:
        pass
