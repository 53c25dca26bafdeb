"""SenML JSON (110) and SenML CBOR (112): RFC 8428 as profiled by LwM2M Core TS §7.4.

A payload is an array of records. The full name of a record is the current base name ``bn``
(which persists until a later record sets another, RFC 8428 §4.5.1) followed by its name ``n``,
and must be an absolute LwM2M path such as ``/0/1/3`` or ``/0/1/16/0``.

Value fields per LwM2M resource type (Core TS, SenML JSON subsection, type table):
``v`` numbers (Integer, Unsigned Integer, Float, Time), ``vs`` strings (String, Corelnk),
``vb`` booleans, ``vd`` opaque data, ``vlo`` object links written ``"3:0"`` (a LwM2M extension).

In JSON, ``vd`` is base64url without padding (RFC 8428 §5, "vd"). In CBOR, labels are integers
(RFC 8428 §6, Table 6: bn -2, n 0, v 2, vs 3, vb 4, vd 8, which is a byte string) except
``vlo``, which keeps its text label.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cbor2

from .lwm2m_cbor import loads_cbor
from .model import CodecError, DecodedInstances, Instances, ObjectDef, ObjLink, Path, ResourceType, Value
from .objects import OBJECTS
from .values import Leaf, TreeBuilder, coerce_number, coerce_value, is_number, iter_leaves, prepare, to_number

__all__ = [
    "decode_cbor",
    "decode_json",
    "decode_records",
    "encode_cbor",
    "encode_json",
    "encode_records",
]

# RFC 8428 §6, Table 6: CBOR labels of the SenML fields.
_CBOR_LABELS: Mapping[int, str] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
_CBOR_KEYS: Mapping[str, int] = {name: label for label, name in _CBOR_LABELS.items()}
_VALUE_FIELDS = ("v", "vs", "vb", "vd", "vlo")
_FIELD_FOR_TYPE: Mapping[ResourceType, str] = {
    ResourceType.STRING: "vs",
    ResourceType.CORELNK: "vs",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "vb",
    ResourceType.OPAQUE: "vd",
    ResourceType.OBJLNK: "vlo",
}


# -- encoding -------------------------------------------------------------------------------------


def encode_records(
    base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS
) -> list[dict[str, Any]]:
    """Build SenML records (JSON field names, Python values) for a payload on ``base``.

    The first record carries ``bn`` = the base path plus ``/``; names are relative to it. When
    the payload is a single value at the base path itself, ``bn`` is that path and no ``n`` is
    written (the form of the Core TS single-resource examples).

    Args:
        base: The request path.
        instances: The data; every key must lie under ``base``.
        objects: Known object definitions (for value types).

    Returns:
        Records in path order; ``vd`` values are ``bytes`` and ``vlo`` values ``ObjLink``.

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    leaves = list(iter_leaves(prepare(base, instances, objects)))
    records: list[dict[str, Any]] = []
    prefix = str(base) + "/"
    for leaf in leaves:
        record: dict[str, Any] = {}
        if leaf.path == base:
            record["bn"] = str(base)
        else:
            if not records:
                record["bn"] = prefix
            record["n"] = str(leaf.path)[len(prefix) :]
        record[_FIELD_FOR_TYPE[leaf.type]] = _record_value(leaf)
        records.append(record)
    return records


def _record_value(leaf: Leaf) -> Value:
    if isinstance(leaf.value, float) and not math.isfinite(leaf.value):
        # RFC 8428 §4.3 numbers are JSON numbers; NaN and infinities have no representation.
        raise CodecError(f"{leaf.path}: SenML cannot carry the non-finite float {leaf.value}")
    return leaf.value


def encode_json(base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS) -> bytes:
    """Encode instances as SenML JSON (Content-Format 110).

    Args:
        base: The request path.
        instances: The data; every key must lie under ``base``.
        objects: Known object definitions (for value types).

    Returns:
        UTF-8 JSON bytes.

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    records = encode_records(base, instances, objects)
    for record in records:
        if isinstance(record.get("vd"), bytes):
            record["vd"] = base64.urlsafe_b64encode(record["vd"]).rstrip(b"=").decode("ascii")
        if isinstance(record.get("vlo"), ObjLink):
            record["vlo"] = str(record["vlo"])
    return json.dumps(records, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_cbor(base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS) -> bytes:
    """Encode instances as SenML CBOR (Content-Format 112).

    Args:
        base: The request path.
        instances: The data; every key must lie under ``base``.
        objects: Known object definitions (for value types).

    Returns:
        CBOR bytes: an array of maps with integer labels (``vlo`` keeps its text label).

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    out: list[dict[int | str, Any]] = []
    for record in encode_records(base, instances, objects):
        item: dict[int | str, Any] = {}
        for key, value in record.items():
            if key == "vlo":
                item["vlo"] = str(value)
            else:
                item[_CBOR_KEYS[key]] = value
        out.append(item)
    return cbor2.dumps(out)


# -- decoding -------------------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise CodecError(f"SenML JSON number {name} is not allowed")


def decode_json(payload: bytes, base: Path, objects: Mapping[int, ObjectDef] = OBJECTS) -> DecodedInstances:
    """Decode a SenML JSON payload with types from the model.

    Args:
        payload: UTF-8 JSON bytes.
        base: The request path; every record must lie under it.
        objects: Known object definitions (for value types).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: On malformed JSON or SenML, or values that do not fit the model.
    """
    try:
        document = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except CodecError:
        raise
    except UnicodeDecodeError as exc:
        raise CodecError(f"SenML JSON is not valid UTF-8 ({exc.reason})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an over-long integer literal
        raise CodecError(f"malformed SenML JSON: {exc}") from None
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        raise CodecError("SenML JSON must be an array of objects")
    return decode_records(document, base, objects, binary=False)


def decode_cbor(payload: bytes, base: Path, objects: Mapping[int, ObjectDef] = OBJECTS) -> DecodedInstances:
    """Decode a SenML CBOR payload with types from the model.

    Args:
        payload: CBOR bytes.
        base: The request path; every record must lie under it.
        objects: Known object definitions (for value types).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: On malformed CBOR or SenML, or values that do not fit the model.
    """
    document = loads_cbor(payload)
    if not isinstance(document, list):
        raise CodecError("SenML CBOR must be an array of maps")
    records: list[dict[str, Any]] = []
    for item in document:
        if not isinstance(item, dict):
            raise CodecError("SenML CBOR must be an array of maps")
        record: dict[str, Any] = {}
        for label, value in item.items():
            if isinstance(label, int) and not isinstance(label, bool):
                name = _CBOR_LABELS.get(label)
                if name is not None:
                    record[name] = value
            elif isinstance(label, str):
                record[label] = value
            else:
                raise CodecError(f"SenML CBOR label {label!r} is neither an integer nor a string")
        records.append(record)
    return decode_records(records, base, objects, binary=True)


def decode_records(
    records: list[dict[str, Any]], base: Path, objects: Mapping[int, ObjectDef], *, binary: bool
) -> DecodedInstances:
    """Resolve SenML records (JSON field names) into typed instances.

    Args:
        records: The records, keyed by JSON field names.
        base: The request path; every record must lie under it.
        objects: Known object definitions (for value types).
        binary: True for CBOR (``vd`` is a byte string), False for JSON (``vd`` is base64url).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: On malformed records or values that do not fit the model.
    """
    builder = TreeBuilder(base, objects)
    base_name = ""
    base_value: int | float = 0
    for index, record in enumerate(records):
        for key in record:
            # RFC 8428 §4.4: fields ending in "_" must be understood, so reject them.
            if isinstance(key, str) and key.endswith("_"):
                raise CodecError(f"SenML record {index}: unsupported must-understand field {key!r}")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise CodecError(f"SenML record {index}: bn must be a string")
            base_name = record["bn"]
        if "bv" in record:
            if not is_number(record["bv"]):
                raise CodecError(f"SenML record {index}: bv must be a number")
            base_value = to_number(record["bv"], f"SenML record {index}")
        name = record.get("n", "")
        if not isinstance(name, str):
            raise CodecError(f"SenML record {index}: n must be a string")
        path = Path.parse(base_name + name)
        present = [f for f in _VALUE_FIELDS if f in record]
        if len(present) != 1:
            raise CodecError(f"SenML record for {path} must have exactly one value field, has {present}")
        field = present[0]
        raw = record[field]
        if field == "v" and is_number(raw) and base_value:
            raw = to_number(raw, path) + base_value  # RFC 8428 §4.1/§4.6: resolved v = bv + v
        builder.add_value(path, _typed_value(builder.resource_type(path), field, raw, path, binary))
    return builder.result()


def _decode_base64url(text: str, where: Path) -> bytes:
    # RFC 8428 §5 asks for base64url without padding; accept padding and the standard
    # alphabet too, since some clients send those.
    cleaned = text.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise CodecError(f"{where}: vd is not valid base64url") from None


def _field_value(field: str, raw: object, where: Path, binary: bool) -> Value:
    """Interpret a value field without a model type."""
    if field == "vs" and isinstance(raw, str):
        return raw
    if field == "vb" and isinstance(raw, bool):
        return raw
    if field == "vlo" and isinstance(raw, str):
        return ObjLink.parse(raw)
    if field == "vd":
        if binary and isinstance(raw, bytes):
            return raw
        if not binary and isinstance(raw, str):
            return _decode_base64url(raw, where)
    if field == "v" and is_number(raw):
        return to_number(raw, where)
    raise CodecError(f"{where}: invalid SenML {field} value {raw!r}")


def _typed_value(rtype: ResourceType | None, field: str, raw: object, where: Path, binary: bool) -> Value:
    if field == "v" and isinstance(raw, datetime):
        raw = int(raw.timestamp())  # a CBOR tag 0/1 date in a numeric field
    value = _field_value(field, raw, where, binary)
    if rtype is None:
        return value
    expected = _FIELD_FOR_TYPE.get(rtype)
    if expected is None:
        raise CodecError(f"{where}: resource has no value type (executable resource)")
    if field != expected:
        raise CodecError(f"{where}: {rtype.value} resource needs SenML field {expected}, got {field}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return coerce_number(rtype, value, where)
    return coerce_value(rtype, value, where)
