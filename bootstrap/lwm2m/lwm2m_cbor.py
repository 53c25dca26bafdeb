"""LwM2M CBOR (Content-Format 11544), LwM2M 1.2 Core TS §7.4 "Data Formats", "LwM2M CBOR".

The payload is one CBOR map whose keys are path components, nested from the root:
``{object: {instance: {resource: value}}}``, with multiple-instance resources as one more map
``{resource instance: value}``. Paths are absolute, not relative to the request path.

A key may also be an array of consecutive components ("path compaction"), so
``{[0, 1]: {0: "coap://..."}}`` and ``{[0, 1, 0]: "coap://..."}`` both mean ``/0/1/0``. Several
keys may contribute to one instance. The encoder here writes plain nesting; the decoder accepts
both forms, mixed freely, as Anjay's reader does.

Value representation: integers, floats, booleans, text strings (String, Corelnk) and byte
strings (Opaque) are native CBOR; Objlnk is the text ``"oid:iid"``; Time is an integer (a tag 0
or 1 date is accepted on input).

This module also hosts :func:`loads_cbor`, the strict single-item CBOR reader the SenML CBOR
decoder shares.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cbor2

from .model import CodecError, DecodedInstances, Instances, ObjectDef, ObjLink, Path, ResourceType, Value
from .objects import OBJECTS
from .values import Leaf, TreeBuilder, coerce_number, coerce_value, infer_type, is_number, prepare, to_number

__all__ = ["decode", "encode", "loads_cbor"]

_MAX_DEPTH = 4  # object / instance / resource / resource instance


def loads_cbor(payload: bytes) -> Any:
    """Decode exactly one CBOR data item, rejecting trailing bytes and duplicate map keys.

    Args:
        payload: CBOR bytes.

    Returns:
        The decoded item in cbor2's representation (array map keys become tuples).

    Raises:
        CodecError: If the bytes are not exactly one well-formed CBOR item.
    """
    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(stream, max_depth=16, allow_duplicate_keys=False).decode()
    except (cbor2.CBORError, ValueError, TypeError, LookupError, OverflowError, RecursionError) as exc:
        raise CodecError(f"malformed CBOR: {exc}") from None
    if stream.tell() != len(payload):
        raise CodecError(f"{len(payload) - stream.tell()} bytes of trailing data after the CBOR item")
    return item


# -- encoding -------------------------------------------------------------------------------------


def _wire_value(leaf: Leaf) -> Any:
    return str(leaf.value) if isinstance(leaf.value, ObjLink) else leaf.value


def encode(base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS) -> bytes:
    """Encode instances as LwM2M CBOR, fully nested from the root (no path compaction).

    Args:
        base: The request path.
        instances: The data; every key must lie under ``base``.
        objects: Known object definitions (for value types).

    Returns:
        CBOR bytes.

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    tree: dict[int, Any] = {}
    for instance in prepare(base, instances, objects):
        resources: dict[int, Any] = {}
        for resource in instance.resources:
            if resource.multiple:
                resources[resource.resource_id] = {
                    leaf.path.resource_instance_id: _wire_value(leaf) for leaf in resource.leaves
                }
            else:
                resources[resource.resource_id] = _wire_value(resource.leaves[0])
        tree[instance.instance_id] = resources
    return cbor2.dumps({base.object_id: tree})


# -- decoding -------------------------------------------------------------------------------------


def decode(payload: bytes, base: Path, objects: Mapping[int, ObjectDef] = OBJECTS) -> DecodedInstances:
    """Decode an LwM2M CBOR payload with types from the model.

    Args:
        payload: CBOR bytes.
        base: The request path; every value must lie under it.
        objects: Known object definitions (for value types).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: On malformed CBOR, keys that are not path components, values outside the
            base path, or values that do not fit the model.
    """
    document = loads_cbor(payload)
    if not isinstance(document, dict):
        raise CodecError("LwM2M CBOR payload must be a map")
    builder = TreeBuilder(base, objects)
    _walk(builder, document, ())
    return builder.result()


def _key_ids(key: object) -> tuple[int, ...]:
    parts = key if isinstance(key, tuple | list) else (key,)
    if not parts:
        raise CodecError("LwM2M CBOR key is an empty array")
    for part in parts:
        if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= 0xFFFF:
            raise CodecError(f"LwM2M CBOR key {key!r} is not a path component (0..65535 or an array of them)")
    return tuple(parts)


def _walk(builder: TreeBuilder, node: dict[Any, Any], prefix: tuple[int, ...]) -> None:
    for key, value in node.items():
        ids = prefix + _key_ids(key)
        if len(ids) > _MAX_DEPTH:
            raise CodecError(f"LwM2M CBOR path {ids} is longer than 4 components")
        path = Path.from_ids(ids)
        if isinstance(value, dict):
            if len(ids) == _MAX_DEPTH:
                raise CodecError(f"{path}: a resource instance cannot hold a map")
            if len(ids) == 1 and not (builder.base.contains(path) or path.contains(builder.base)):
                raise CodecError(f"{path} lies outside the request path {builder.base}")
            if len(ids) == 2:
                builder.add_instance(ids[1])
            elif len(ids) == 3:
                builder.add_multiple(path)
            _walk(builder, value, ids)
        elif len(ids) < 3:
            raise CodecError(f"{path}: expected a map below the resource level, got {value!r}")
        else:
            builder.add_value(path, _typed_value(builder.resource_type(path), value, path))


def _typed_value(rtype: ResourceType | None, raw: object, where: Path) -> Value:
    if raw is None:
        raise CodecError(f"{where}: null is not a resource value")
    if isinstance(raw, datetime):
        if rtype not in (None, ResourceType.TIME):
            raise CodecError(f"{where}: a date is not a valid {rtype.value} value")
        return int(raw.timestamp())
    if is_number(raw):
        number = to_number(raw, where)
        if rtype is None:
            return coerce_value(infer_type(number), number, where)
        return coerce_number(rtype, number, where)
    if rtype is ResourceType.OBJLNK:
        if not isinstance(raw, str):
            raise CodecError(f"{where}: Objlnk must be a text string 'oid:iid', got {raw!r}")
        return ObjLink.parse(raw)
    if rtype is None:
        return coerce_value(infer_type(raw), raw, where)
    return coerce_value(rtype, raw, where)
