"""OMA-TLV (Content-Format 11542), LwM2M Core TS §7.4 "Data Formats", "TLV" subsection.

Wire layout of one entry (Core TS, TLV table "Type field"):

* type byte: bits 7-6 identifier type (00 object instance, 01 resource instance,
  10 multiple resource, 11 resource with value); bit 5 identifier length (0: 8 bits,
  1: 16 bits); bits 4-3 length type (00: length in bits 2-0, 01/10/11: 8/16/24-bit length field);
* identifier, 1 or 2 bytes; length, 0 to 3 bytes; value.

Object-instance and multiple-resource entries hold further entries as their value.

Value encodings follow Core TS Appendix C "Data Types": integers big-endian two's complement
in 1, 2, 4 or 8 bytes; floats IEEE 754 in 4 or 8 bytes; booleans one byte 0/1; Time as an
integer; Objlnk two 16-bit unsigned integers; strings UTF-8; opaque as is.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from .model import CodecError, DecodedInstances, Instances, ObjectDef, ObjLink, Path, ResourceType, Value
from .objects import OBJECTS
from .values import PreparedResource, TreeBuilder, prepare

__all__ = ["TlvEntry", "TlvKind", "decode", "decode_raw", "encode", "encode_raw"]

_MAX_LENGTH = 0xFFFFFF  # a 24-bit length field is the largest the format has


class TlvKind(IntEnum):
    """Identifier type, bits 7-6 of the type byte."""

    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE_VALUE = 0b11


@dataclass(frozen=True, slots=True)
class TlvEntry:
    """One TLV entry, as on the wire.

    Attributes:
        kind: Identifier type.
        identifier: Object instance, resource or resource instance ID.
        value: Raw value bytes (resource value and resource instance entries).
        children: Nested entries (object instance and multiple resource entries).
    """

    kind: TlvKind
    identifier: int
    value: bytes = b""
    children: tuple[TlvEntry, ...] = ()

    @property
    def is_container(self) -> bool:
        """Whether the entry holds nested entries rather than a value."""
        return self.kind in (TlvKind.OBJECT_INSTANCE, TlvKind.MULTIPLE_RESOURCE)


# -- raw layer ------------------------------------------------------------------------------------


def _header(kind: TlvKind, identifier: int, length: int) -> bytes:
    if not 0 <= identifier <= 0xFFFF:
        raise CodecError(f"TLV identifier {identifier} does not fit 16 bits")
    if length > _MAX_LENGTH:
        raise CodecError(f"TLV value of {length} bytes exceeds the 24-bit length field")
    type_byte = kind << 6
    id_bytes = identifier.to_bytes(1 if identifier <= 0xFF else 2, "big")
    if identifier > 0xFF:
        type_byte |= 0b0010_0000
    if length <= 7:
        return bytes([type_byte | length]) + id_bytes
    size = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    return bytes([type_byte | (size << 3)]) + id_bytes + length.to_bytes(size, "big")


def encode_raw(entries: Iterable[TlvEntry]) -> bytes:
    """Serialise TLV entries.

    Args:
        entries: Entries at one level; containers are serialised recursively.

    Returns:
        The bytes.

    Raises:
        CodecError: If an identifier or a length does not fit the format.
    """
    out = bytearray()
    for entry in entries:
        body = encode_raw(entry.children) if entry.is_container else entry.value
        out += _header(entry.kind, entry.identifier, len(body))
        out += body
    return bytes(out)


def decode_raw(payload: bytes) -> list[TlvEntry]:
    """Parse TLV bytes into entries without interpreting values.

    Args:
        payload: TLV bytes.

    Returns:
        The top-level entries, containers with their children parsed.

    Raises:
        CodecError: On truncated input, or a container whose content is not TLV.
    """
    return _decode_level(memoryview(bytes(payload)), 0)


def _decode_level(data: memoryview, depth: int) -> list[TlvEntry]:
    if depth > 2:  # instance -> multiple resource -> resource instance is the deepest nesting
        raise CodecError("TLV nested deeper than object instance / multiple resource / instance")
    entries: list[TlvEntry] = []
    pos = 0
    while pos < len(data):
        type_byte = data[pos]
        pos += 1
        kind = TlvKind(type_byte >> 6)
        id_size = 2 if type_byte & 0b0010_0000 else 1
        length_size = (type_byte >> 3) & 0b11
        if pos + id_size + length_size > len(data):
            raise CodecError(f"truncated TLV header at byte {pos - 1}")
        identifier = int.from_bytes(data[pos : pos + id_size], "big")
        pos += id_size
        if length_size:
            length = int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
        else:
            length = type_byte & 0b111
        if pos + length > len(data):
            raise CodecError(f"TLV entry {identifier} claims {length} bytes, only {len(data) - pos} remain")
        body = data[pos : pos + length]
        pos += length
        if kind in (TlvKind.OBJECT_INSTANCE, TlvKind.MULTIPLE_RESOURCE):
            entries.append(TlvEntry(kind, identifier, children=tuple(_decode_level(body, depth + 1))))
        else:
            entries.append(TlvEntry(kind, identifier, value=bytes(body)))
    return entries


# -- values ---------------------------------------------------------------------------------------


def _encode_int(value: int) -> bytes:
    # Appendix C, Integer: the shortest of 1, 2, 4, 8 bytes that holds the two's complement.
    for size in (1, 2, 4, 8):
        if -(1 << (8 * size - 1)) <= value < (1 << (8 * size - 1)):
            return value.to_bytes(size, "big", signed=True)
    raise CodecError(f"integer {value} does not fit 64 bits")


def _encode_unsigned(value: int) -> bytes:
    # Values below 2**63 are written like Integer (the form Leshan and Wakaama produce and
    # read back); larger ones need all 8 bytes.
    return _encode_int(value) if value < 1 << 63 else value.to_bytes(8, "big")


def _encode_float(value: float) -> bytes:
    # Appendix C, Float: 4 or 8 bytes. Use 4 only when that loses nothing.
    single = struct.pack(">f", value) if math.isfinite(value) and abs(value) < 3.4e38 else None
    if single is not None and struct.unpack(">f", single)[0] == value:
        return single
    return struct.pack(">d", value)


def encode_value(rtype: ResourceType, value: Value) -> bytes:
    """Encode one value of a given type as TLV value bytes.

    Args:
        rtype: The resource type.
        value: A value already checked by :func:`~bootstrap.lwm2m.values.coerce_value`.

    Returns:
        The value bytes.

    Raises:
        CodecError: If the value does not match the type.
    """
    if rtype in (ResourceType.STRING, ResourceType.CORELNK) and isinstance(value, str):
        return value.encode("utf-8")
    if rtype is ResourceType.BOOLEAN and isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if rtype is ResourceType.OPAQUE and isinstance(value, bytes):
        return value
    if rtype is ResourceType.OBJLNK and isinstance(value, ObjLink):
        return struct.pack(">HH", value.object_id, value.instance_id)
    if rtype is ResourceType.FLOAT and isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if rtype in (ResourceType.INTEGER, ResourceType.TIME):
            return _encode_int(value)
        if rtype is ResourceType.UNSIGNED:
            return _encode_unsigned(value)
    raise CodecError(f"cannot encode {value!r} as TLV {rtype.value}")


def decode_value(rtype: ResourceType | None, data: bytes, where: Path) -> Value:
    """Decode TLV value bytes as a given type.

    Args:
        rtype: The resource type, or None for a resource outside the model (returned as bytes).
        data: The value bytes.
        where: Path for error messages.

    Returns:
        The typed value.

    Raises:
        CodecError: If the bytes are not a valid value of that type.
    """
    if rtype is None or rtype is ResourceType.OPAQUE:
        return data
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"{where}: string is not valid UTF-8 ({exc.reason})") from None
    if rtype in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED):
        # Lengths other than 1/2/4/8 are tolerated, as Leshan does; 0 or >8 bytes are not.
        if not 1 <= len(data) <= 8:
            raise CodecError(f"{where}: integer of {len(data)} bytes (expected 1, 2, 4 or 8)")
        return int.from_bytes(data, "big", signed=rtype is not ResourceType.UNSIGNED)
    if rtype is ResourceType.FLOAT:
        if len(data) == 4:
            return float(struct.unpack(">f", data)[0])
        if len(data) == 8:
            return float(struct.unpack(">d", data)[0])
        raise CodecError(f"{where}: float of {len(data)} bytes (expected 4 or 8)")
    if rtype is ResourceType.BOOLEAN:
        if data not in (b"\x00", b"\x01"):
            raise CodecError(f"{where}: boolean must be one byte 0 or 1, got {data.hex()}")
        return data == b"\x01"
    if rtype is ResourceType.OBJLNK:
        if len(data) != 4:
            raise CodecError(f"{where}: Objlnk must be 4 bytes, got {len(data)}")
        object_id, instance_id = struct.unpack(">HH", data)
        return ObjLink(object_id, instance_id)
    raise CodecError(f"{where}: resource has no value type (executable resource)")


# -- typed layer ----------------------------------------------------------------------------------


def _riid(path: Path) -> int:
    assert path.resource_instance_id is not None  # prepare() builds these paths
    return path.resource_instance_id


def _resource_entry(resource: PreparedResource) -> TlvEntry:
    if not resource.multiple:
        leaf = resource.leaves[0]
        return TlvEntry(TlvKind.RESOURCE_VALUE, resource.resource_id, encode_value(leaf.type, leaf.value))
    children = tuple(
        TlvEntry(
            TlvKind.RESOURCE_INSTANCE,
            _riid(leaf.path),
            encode_value(leaf.type, leaf.value),
        )
        for leaf in resource.leaves
    )
    return TlvEntry(TlvKind.MULTIPLE_RESOURCE, resource.resource_id, children=children)


def encode(base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS) -> bytes:
    """Encode instances of ``base.object_id`` as TLV for a request on ``base``.

    The payload's top level depends on the base path's depth, as the Core TS examples show:
    object instance entries for ``/O``, resource entries for ``/O/I``, one resource entry for
    ``/O/I/R`` and one resource instance entry for ``/O/I/R/RI``.

    Args:
        base: The request path.
        instances: The data; every key must lie under ``base``.
        objects: Known object definitions (for value types).

    Returns:
        TLV bytes.

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    prepared = prepare(base, instances, objects)
    if base.depth == 1:
        entries = [
            TlvEntry(
                TlvKind.OBJECT_INSTANCE,
                inst.instance_id,
                children=tuple(_resource_entry(r) for r in inst.resources),
            )
            for inst in prepared
        ]
    elif base.depth in (2, 3):
        entries = [_resource_entry(r) for inst in prepared for r in inst.resources]
    else:
        entries = [
            TlvEntry(
                TlvKind.RESOURCE_INSTANCE,
                _riid(leaf.path),
                encode_value(leaf.type, leaf.value),
            )
            for inst in prepared
            for r in inst.resources
            for leaf in r.leaves
        ]
    return encode_raw(entries)


def decode(payload: bytes, base: Path, objects: Mapping[int, ObjectDef] = OBJECTS) -> DecodedInstances:
    """Decode a TLV payload received for (or sent to) ``base``, with types from the model.

    Tolerated like Leshan does: resource entries at the top level of an object-level payload
    for a single-instance (or unknown) object, which then go to instance 0; and a single object
    instance entry wrapping the resources of an instance- or resource-level payload when its ID
    matches the path. Resources outside the model decode to raw ``bytes``.

    Args:
        payload: TLV bytes.
        base: The request path.
        objects: Known object definitions (for value types).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: On malformed TLV, values that do not fit their type, or structure that does
            not match the base path.
    """
    entries: Sequence[TlvEntry] = decode_raw(payload)
    builder = TreeBuilder(base, objects)
    oid = base.object_id
    if base.depth == 1:
        if entries and entries[0].kind is not TlvKind.OBJECT_INSTANCE:
            obj = objects.get(oid)
            if obj is not None and obj.multiple:
                raise CodecError(f"TLV for /{oid} must hold object instance entries")
            _decode_resources(builder, Path(oid, 0), entries)
        else:
            for entry in entries:
                if entry.kind is not TlvKind.OBJECT_INSTANCE:
                    raise CodecError(
                        f"TLV for /{oid}: expected object instance entries, got {entry.kind.name}"
                    )
                builder.add_instance(entry.identifier)
                _decode_resources(builder, Path(oid, entry.identifier), entry.children)
        return builder.result()
    assert base.instance_id is not None
    instance_path = Path(oid, base.instance_id)
    entries = _unwrap_instance(entries, instance_path)
    if base.depth == 2:
        builder.add_instance(base.instance_id)
        _decode_resources(builder, instance_path, entries)
    elif base.depth == 3:
        if len(entries) == 1 and entries[0].kind in (TlvKind.RESOURCE_VALUE, TlvKind.MULTIPLE_RESOURCE):
            _decode_resources(builder, instance_path, entries)
        elif not entries and builder.resource_type(base) is not None and not _is_multiple(builder, base):
            raise CodecError(f"empty TLV payload for single-instance resource {base}")
        else:
            # A bare list of resource instances for a multiple resource (Leshan accepts it too).
            builder.add_multiple(base)
            _decode_resource_instances(builder, base, entries)
    else:
        if len(entries) != 1:
            raise CodecError(f"TLV for {base} must hold exactly one resource instance entry")
        _decode_resource_instances(builder, Path.from_ids(base.ids[:3]), entries)
    return builder.result()


def _is_multiple(builder: TreeBuilder, path: Path) -> bool:
    obj = builder.objects.get(path.object_id)
    definition = None if obj is None or path.resource_id is None else obj.resources.get(path.resource_id)
    return definition is not None and definition.multiple


def _unwrap_instance(entries: Sequence[TlvEntry], instance_path: Path) -> Sequence[TlvEntry]:
    if len(entries) == 1 and entries[0].kind is TlvKind.OBJECT_INSTANCE:
        if entries[0].identifier != instance_path.instance_id:
            raise CodecError(f"object instance entry {entries[0].identifier} does not match {instance_path}")
        return entries[0].children
    return entries


def _decode_resources(builder: TreeBuilder, instance_path: Path, entries: Sequence[TlvEntry]) -> None:
    for entry in entries:
        path = instance_path.child(entry.identifier)
        if entry.kind is TlvKind.RESOURCE_VALUE:
            builder.add_value(path, decode_value(builder.resource_type(path), entry.value, path))
        elif entry.kind is TlvKind.MULTIPLE_RESOURCE:
            builder.add_multiple(path)
            _decode_resource_instances(builder, path, entry.children)
        else:
            raise CodecError(f"expected a resource entry under {instance_path}, got {entry.kind.name}")


def _decode_resource_instances(
    builder: TreeBuilder, resource_path: Path, entries: Sequence[TlvEntry]
) -> None:
    for entry in entries:
        path = resource_path.child(entry.identifier)
        if entry.kind is not TlvKind.RESOURCE_INSTANCE:
            raise CodecError(
                f"expected resource instance entries under {resource_path}, got {entry.kind.name}"
            )
        builder.add_value(path, decode_value(builder.resource_type(path), entry.value, path))
