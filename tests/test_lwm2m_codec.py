"""Codec facade, object model, and round-trip properties of every LwM2M data format."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.errors import BadRequest
from bootstrap.lwm2m import (
    OBJECTS,
    SUPPORTED_FORMATS,
    CodecError,
    ContentFormat,
    Instances,
    ObjectDef,
    ObjLink,
    Path,
    ResourceDef,
    ResourceType,
    SecurityMode,
    choose_format,
    decode,
    encode,
    lwm2m_cbor,
    senml,
    tlv,
)
from bootstrap.lwm2m.values import coerce_value

T = ResourceType

# An object with every value type, single and multiple, to exercise what /0, /1 and /21 lack.
ALL_TYPES = ObjectDef(
    9999,
    "Test All Types",
    {
        i: ResourceDef(i, f"r{i}", rtype, multiple=multiple)
        for i, (rtype, multiple) in enumerate(
            (rtype, multiple)
            for multiple in (False, True)
            for rtype in (
                T.STRING,
                T.INTEGER,
                T.UNSIGNED,
                T.FLOAT,
                T.BOOLEAN,
                T.OPAQUE,
                T.TIME,
                T.OBJLNK,
                T.CORELNK,
            )
        )
    },
)
OBJECTS_WITH_TEST = {**OBJECTS, ALL_TYPES.id: ALL_TYPES}

CODECS: dict[str, tuple[Callable[..., bytes], Callable[..., Any]]] = {
    "tlv": (tlv.encode, tlv.decode),
    "senml-json": (senml.encode_json, senml.decode_json),
    "senml-cbor": (senml.encode_cbor, senml.decode_cbor),
    "lwm2m-cbor": (lwm2m_cbor.encode, lwm2m_cbor.decode),
}

ids16 = st.integers(0, 65535)


def values_of(rtype: ResourceType) -> st.SearchStrategy[Any]:
    """Hypothesis strategy for Python values valid for a resource type."""
    return {
        T.STRING: st.text(max_size=30),
        T.CORELNK: st.text(max_size=30),
        T.INTEGER: st.integers(-(2**63), 2**63 - 1),
        T.TIME: st.integers(-(2**63), 2**63 - 1),
        T.UNSIGNED: st.integers(0, 2**64 - 1),
        T.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
        T.BOOLEAN: st.booleans(),
        T.OPAQUE: st.binary(max_size=40),
        T.OBJLNK: st.builds(ObjLink, ids16, ids16),
    }[rtype]


@st.composite
def instance_of(draw: st.DrawFn, obj: ObjectDef) -> dict[int, Any]:
    """One non-empty instance of ``obj`` with model-consistent values."""
    writable = [d for d in obj.resources.values() if d.type is not T.NONE]
    chosen = draw(st.lists(st.sampled_from(writable), min_size=1, max_size=8, unique_by=lambda d: d.id))
    instance: dict[int, Any] = {}
    for definition in chosen:
        if definition.multiple:
            instance[definition.id] = draw(
                st.dictionaries(ids16, values_of(definition.type), min_size=1, max_size=3)
            )
        else:
            instance[definition.id] = draw(values_of(definition.type))
    return instance


@st.composite
def object_data(draw: st.DrawFn, objects: tuple[ObjectDef, ...]) -> tuple[ObjectDef, dict[int, Any]]:
    """An object definition and 1-3 generated instances of it."""
    obj = draw(st.sampled_from(objects))
    ids = draw(st.lists(ids16, min_size=1, max_size=3, unique=True))
    return obj, {iid: draw(instance_of(obj)) for iid in ids}


BOOTSTRAP_OBJECTS = (OBJECTS[0], OBJECTS[1], OBJECTS[21])


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", sorted(CODECS))
@given(data=object_data(BOOTSTRAP_OBJECTS))
def test_object_level_round_trip(codec: str, data: tuple[ObjectDef, dict[int, Any]]) -> None:
    """Security/Server/OSCORE instances survive encode+decode on the object path in every codec."""
    obj, instances = data
    enc, dec = CODECS[codec]
    base = Path(obj.id)
    assert dec(enc(base, instances), base) == instances


@pytest.mark.parametrize("codec", sorted(CODECS))
@given(data=object_data(BOOTSTRAP_OBJECTS))
def test_instance_level_round_trip(codec: str, data: tuple[ObjectDef, dict[int, Any]]) -> None:
    """A single instance survives encode+decode on its instance path in every codec."""
    obj, instances = data
    iid = min(instances)
    enc, dec = CODECS[codec]
    base = Path(obj.id, iid)
    assert dec(enc(base, {iid: instances[iid]}), base) == {iid: instances[iid]}


@pytest.mark.parametrize("codec", sorted(CODECS))
@given(data=object_data(BOOTSTRAP_OBJECTS), pick=st.integers(0, 100))
def test_resource_level_round_trip(codec: str, data: tuple[ObjectDef, dict[int, Any]], pick: int) -> None:
    """A single resource survives encode+decode on its resource path in every codec."""
    obj, instances = data
    iid = min(instances)
    rid = sorted(instances[iid])[pick % len(instances[iid])]
    enc, dec = CODECS[codec]
    base = Path(obj.id, iid, rid)
    payload = {iid: {rid: instances[iid][rid]}}
    assert dec(enc(base, payload), base) == payload


@pytest.mark.parametrize("codec", sorted(CODECS))
@given(data=object_data((ALL_TYPES,)))
def test_all_value_types_round_trip(codec: str, data: tuple[ObjectDef, dict[int, Any]]) -> None:
    """Every resource type (Float, Time, Corelnk, ... single and multiple) round-trips in every codec."""
    _, instances = data
    enc, dec = CODECS[codec]
    base = Path(ALL_TYPES.id)
    assert dec(enc(base, instances, OBJECTS_WITH_TEST), base, OBJECTS_WITH_TEST) == instances


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
@given(data=object_data(BOOTSTRAP_OBJECTS))
def test_facade_round_trip(fmt: ContentFormat, data: tuple[ObjectDef, dict[int, Any]]) -> None:
    """encode()/decode() dispatch to the right codec and round-trip, with the path given as text."""
    obj, instances = data
    assert decode(fmt, encode(fmt, f"/{obj.id}", instances), f"/{obj.id}") == instances


@given(data=object_data(BOOTSTRAP_OBJECTS))
def test_all_formats_agree(data: tuple[ObjectDef, dict[int, Any]]) -> None:
    """Decoding each format's encoding gives the same data, so formats are interchangeable."""
    obj, instances = data
    decoded = [decode(fmt, encode(fmt, Path(obj.id), instances), Path(obj.id)) for fmt in SUPPORTED_FORMATS]
    assert all(d == decoded[0] for d in decoded)


# -- fuzzing -------------------------------------------------------------------------------------

BASES = [Path(0), Path(1), Path(0, 1), Path(1, 0, 16), Path(0, 2, 16), Path(0, 3, 16, 1), Path(3, 0)]


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=200), base=st.sampled_from(BASES))
def test_random_bytes_only_raise_codec_error(fmt: ContentFormat, payload: bytes, base: Path) -> None:
    """Arbitrary bytes either decode or raise CodecError, never another exception."""
    try:
        decode(fmt, payload, base)
    except CodecError:
        pass


# -- facade behaviour ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pct", "version", "expected"),
    [
        (None, None, ContentFormat.TLV),
        (None, "1.1", ContentFormat.TLV),
        (110, None, ContentFormat.SENML_JSON),
        (112, "1.1", ContentFormat.SENML_CBOR),
        (11542, "1.2", ContentFormat.TLV),
        (11544, "1.2", ContentFormat.LWM2M_CBOR),
        (112, "1.0", ContentFormat.TLV),
        (110, '"1.0"', ContentFormat.TLV),
        (112, "1.0.2", ContentFormat.TLV),
        (11543, "1.1", ContentFormat.TLV),
        (0, "1.1", ContentFormat.TLV),
        (60, "1.2", ContentFormat.TLV),
        (4242, "1.1", ContentFormat.TLV),
        (112, "garbage", ContentFormat.SENML_CBOR),
    ],
)
def test_choose_format(pct: int | None, version: str | None, expected: ContentFormat) -> None:
    """TLV for 1.0 clients or no pct; a supported pct is honoured; anything else falls back to TLV."""
    assert choose_format(pct, version) is expected


@pytest.mark.parametrize("fmt", [0, 40, 42, 60, 11543, 9999])
def test_unsupported_formats_raise(fmt: int) -> None:
    """Formats outside the object-data set are refused with CodecError on both sides."""
    with pytest.raises(CodecError):
        encode(fmt, "/0", {})
    with pytest.raises(CodecError):
        decode(fmt, b"", "/0")


@pytest.mark.parametrize("path", ["0", "/", "/0/", "/a", "/0//1", "/0/1/2/3/4", "/65536", "/-1", "/0 "])
def test_bad_base_path_raises(path: str) -> None:
    """A malformed base path is a CodecError, not a crash."""
    with pytest.raises(CodecError):
        encode(ContentFormat.TLV, path, {})


def test_codec_error_carries_its_wire_meaning() -> None:
    """CodecError is a BadRequest (CoAP 4.00 / HTTP 400) and still a ValueError."""
    error = CodecError("x")
    assert error.coap_code == "4.00"
    assert error.http_status == 400
    assert isinstance(error, ValueError)
    assert isinstance(error, BadRequest)
    assert error.message == "x" and str(error) == "x"
    with pytest.raises(BadRequest, match="invalid LwM2M path"):
        encode(ContentFormat.TLV, "0", {})


def test_supported_formats() -> None:
    """The facade dispatches exactly the four object-data formats."""
    assert {int(f) for f in SUPPORTED_FORMATS} == {110, 112, 11542, 11544}


@pytest.mark.parametrize(
    ("base", "instances"),
    [
        (Path(0), {1: {0: 5}}),  # Server URI is a String
        (Path(0), {1: {1: 1}}),  # Bootstrap-Server is a Boolean, not an int
        (Path(0), {1: {2: True}}),  # Security Mode is an Integer, not a bool
        (Path(0), {1: {10: 2**63}}),  # outside signed 64-bit
        (Path(0), {1: {13: -1}}),  # Matching Type is Unsigned
        (Path(0), {1: {16: 49320}}),  # Ciphersuite is multiple
        (Path(0), {1: {0: {0: "coap://x"}}}),  # Server URI is single
        (Path(0), {1: {17: "21:0"}}),  # Objlnk wants ObjLink
        (Path(1), {0: {8: b""}}),  # Registration Update Trigger is executable
        (Path(0), {1: {3: "text"}}),  # Opaque wants bytes
        (Path(0), {1: {0: "\ud800"}}),  # not encodable as UTF-8
        (Path(0, 1), {2: {0: "coap://x"}}),  # instance outside the base path
        (Path(0, 1, 0), {1: {1: True}}),  # resource outside the base path
        (Path(0, 1, 16, 0), {1: {16: {1: 5}}}),  # resource instance outside the base path
        (Path(0), {"1": {0: "coap://x"}}),  # keys must be ints
        (Path(0), {1: {0: object()}}),
        (Path(0), {1: [0, 1]}),
    ],
)
@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
def test_encode_rejects_data_that_does_not_fit(fmt: ContentFormat, base: Path, instances: Any) -> None:
    """Values of the wrong type or shape, or outside the base path, raise CodecError."""
    with pytest.raises(CodecError):
        encode(fmt, base, instances)


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
def test_unknown_resources_encode_with_inferred_types(fmt: ContentFormat) -> None:
    """Resources outside the model are encoded by Python type (TLV gives them back as bytes)."""
    data: Instances = {0: {1: "text", 2: 7, 3: True, 4: {0: b"\x01"}}}
    decoded = decode(fmt, encode(fmt, Path(3), data), Path(3))
    if fmt is ContentFormat.TLV:
        assert decoded == {0: {1: b"text", 2: b"\x07", 3: b"\x01", 4: {0: b"\x01"}}}
    else:
        assert decoded == data


# -- model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["/0", "/0/1", "/0/1/3", "/1/0/16/2", "/65535/65535/65535/65535"])
def test_path_parse_and_format(text: str) -> None:
    """Path.parse and str() are inverse."""
    assert str(Path.parse(text)) == text


def test_path_structure() -> None:
    """Paths expose depth, ids, children and containment; missing levels above are rejected."""
    path = Path.parse("/0/1/3")
    assert (path.object_id, path.instance_id, path.resource_id, path.resource_instance_id) == (0, 1, 3, None)
    assert path.depth == 3 and path.ids == (0, 1, 3)
    assert path.child(7) == Path(0, 1, 3, 7)
    assert Path(0).contains(path) and path.contains(path) and not path.contains(Path(0, 1))
    with pytest.raises(CodecError):
        Path(0, None, 3)
    with pytest.raises(CodecError):
        Path(0, 1, 3, 7).child(1)


def test_objlink_text_form() -> None:
    """ObjLink prints and parses as 'oid:iid' and checks its range."""
    assert str(ObjLink(21, 0)) == "21:0"
    assert ObjLink.parse("65535:65535") == ObjLink(65535, 65535)
    for bad in ("21", "21:", ":0", "a:b", "70000:0", " 1:0"):
        with pytest.raises(CodecError):
            ObjLink.parse(bad)


def test_content_format_and_security_mode_numbers() -> None:
    """IANA Content-Format numbers and Security Mode values match the specification."""
    assert {f.name: int(f) for f in ContentFormat} == {
        "TEXT": 0,
        "LINK_FORMAT": 40,
        "OPAQUE": 42,
        "CBOR": 60,
        "SENML_JSON": 110,
        "SENML_CBOR": 112,
        "TLV": 11542,
        "LWM2M_JSON": 11543,
        "LWM2M_CBOR": 11544,
    }
    assert [(m.name, int(m)) for m in SecurityMode] == [
        ("PSK", 0),
        ("RPK", 1),
        ("CERTIFICATE", 2),
        ("NOSEC", 3),
        ("EST", 4),
    ]


def _types(obj: Mapping[int, ResourceDef]) -> dict[int, tuple[ResourceType, bool]]:
    return {rid: (d.type, d.multiple) for rid, d in obj.items()}


def test_security_object_table() -> None:
    """Security /0 lists resources 0-30 with the registry's types."""
    types = _types(OBJECTS[0].resources)
    assert sorted(types) == list(range(31))
    expected = {
        0: (T.STRING, False),
        1: (T.BOOLEAN, False),
        2: (T.INTEGER, False),
        3: (T.OPAQUE, False),
        4: (T.OPAQUE, False),
        5: (T.OPAQUE, False),
        6: (T.INTEGER, False),
        7: (T.OPAQUE, False),
        8: (T.OPAQUE, False),
        9: (T.STRING, False),
        10: (T.INTEGER, False),
        11: (T.INTEGER, False),
        12: (T.INTEGER, False),
        13: (T.UNSIGNED, False),
        14: (T.STRING, False),
        15: (T.UNSIGNED, False),
        16: (T.UNSIGNED, True),
        17: (T.OBJLNK, False),
        25: (T.STRING, True),
        27: (T.OBJLNK, True),
    }
    assert {rid: types[rid] for rid in expected} == expected


def test_server_and_oscore_tables() -> None:
    """Server /1 lists 0-27 (executables typed NONE) and OSCORE /21 lists 0-6."""
    server = _types(OBJECTS[1].resources)
    assert sorted(server) == list(range(28))
    assert server[0] == (T.INTEGER, False) and server[7] == (T.STRING, False)
    assert {server[4][0], server[8][0], server[9][0]} == {T.NONE}
    assert server[12] == (T.TIME, False) and server[24] == (T.OBJLNK, True)
    oscore = _types(OBJECTS[21].resources)
    assert sorted(oscore) == list(range(7))
    assert oscore[0] == (T.OPAQUE, False) and oscore[3] == (T.INTEGER, False)


def test_coerce_value_normalises() -> None:
    """Ints become floats for Float resources and bytearrays become bytes for Opaque."""
    assert coerce_value(T.FLOAT, 3, "/x") == 3.0 and isinstance(coerce_value(T.FLOAT, 3, "/x"), float)
    assert coerce_value(T.OPAQUE, bytearray(b"ab"), "/x") == b"ab"
    with pytest.raises(CodecError):
        coerce_value(T.FLOAT, 10**400, "/x")
