"""Value typing and coercion, and the encode/decode helpers the codecs share.

The codecs (``tlv``, ``senml``, ``lwm2m_cbor``) use :func:`prepare` to validate the Python-side
representation before encoding, and :class:`TreeBuilder` to assemble and check decoded values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from .model import (
    CodecError,
    DecodedInstance,
    DecodedInstances,
    Instances,
    ObjectDef,
    ObjLink,
    Path,
    ResourceType,
    ResourceValue,
    Value,
    check_id,
)
from .objects import OBJECTS, resource_def

__all__ = [
    "Leaf",
    "PreparedInstance",
    "PreparedResource",
    "TreeBuilder",
    "coerce_number",
    "coerce_value",
    "infer_type",
    "is_number",
    "iter_leaves",
    "prepare",
    "to_number",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def infer_type(value: object) -> ResourceType:
    """Guess the resource type of a Python value (used for resources outside the model).

    Args:
        value: A value.

    Returns:
        The matching type; integers above the signed 64-bit range count as unsigned.

    Raises:
        CodecError: If the value is not a supported value type.
    """
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.UNSIGNED if value > _INT64_MAX else ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, bytes | bytearray | memoryview):
        return ResourceType.OPAQUE
    if isinstance(value, ObjLink):
        return ResourceType.OBJLNK
    raise CodecError(f"unsupported value type {type(value).__name__}")


def coerce_value(rtype: ResourceType, value: object, where: Path | str) -> Value:
    """Check that a Python value fits a resource type and normalise it.

    Ints are accepted for Float (converted), bytes-like objects for Opaque (copied to ``bytes``).
    Integer and Time must fit a signed 64-bit integer, Unsigned Integer an unsigned one
    (Core TS Appendix C).

    Args:
        rtype: The resource type.
        value: The value.
        where: Path used in the error message.

    Returns:
        The value in its canonical Python type.

    Raises:
        CodecError: If the value does not fit the type.
    """
    if rtype is ResourceType.NONE:
        raise CodecError(f"{where}: resource has no value type (executable resource)")
    result = _coerce(rtype, value)
    if result is None:
        raise CodecError(f"{where}: {value!r} is not a valid {rtype.value} value")
    return result


def _utf8_encodable(text: str) -> bool:
    # Every format carries strings as UTF-8 (Core TS Appendix C, String); lone surrogates
    # cannot be encoded.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _coerce(rtype: ResourceType, value: object) -> Value | None:
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return value if isinstance(value, str) and _utf8_encodable(value) else None
    if rtype is ResourceType.BOOLEAN:
        return value if isinstance(value, bool) else None
    if rtype is ResourceType.OPAQUE:
        return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
    if rtype is ResourceType.OBJLNK:
        return value if isinstance(value, ObjLink) else None
    if isinstance(value, bool):
        return None
    if rtype is ResourceType.FLOAT:
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:
                return None
        return None
    if not isinstance(value, int):
        return None
    low, high = (0, _UINT64_MAX) if rtype is ResourceType.UNSIGNED else (_INT64_MIN, _INT64_MAX)
    return value if low <= value <= high else None


def is_number(value: object) -> bool:
    """Whether a decoded value is numeric (CBOR tags 4, 5 and 30 yield Decimal and Fraction).

    Args:
        value: A decoded JSON or CBOR value.

    Returns:
        True for int (not bool), float, Decimal and Fraction.
    """
    return isinstance(value, int | float | Decimal | Fraction) and not isinstance(value, bool)


def to_number(raw: object, where: Path | str) -> int | float:
    """Turn a decoded number into int (when integral) or float.

    Args:
        raw: A value for which :func:`is_number` holds.
        where: Path for error messages.

    Returns:
        The number; ints stay ints, integral Decimals and Fractions become ints.

    Raises:
        CodecError: If the value is not a number or cannot be represented.
    """
    if isinstance(raw, bool):
        raise CodecError(f"{where}: expected a number, got {raw!r}")
    if isinstance(raw, int | float):
        return raw
    try:
        if isinstance(raw, Decimal):
            # Bound the exponent before int(): 1E+4294967295 is a few bytes of CBOR.
            if raw.is_finite() and raw.adjusted() < 20 and raw == raw.to_integral_value():
                return int(raw)
            return float(raw)
        if isinstance(raw, Fraction):
            return int(raw) if raw.denominator == 1 else float(raw)
    except (OverflowError, ValueError, ArithmeticError):
        pass
    raise CodecError(f"{where}: {raw!r} is not a representable number")


def coerce_number(rtype: ResourceType, value: int | float, where: Path | str) -> Value:
    """Check a decoded number against a numeric resource type.

    Integral floats are accepted for Integer, Unsigned Integer and Time, since JSON and CBOR
    encoders may write ``3.0`` for 3.

    Args:
        rtype: The resource type.
        value: The number.
        where: Path for error messages.

    Returns:
        The value in its canonical Python type.

    Raises:
        CodecError: If the type is not numeric or the number does not fit it.
    """
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME) and isinstance(value, float):
        if not value.is_integer():
            raise CodecError(f"{where}: {rtype.value} resource got non-integral number {value!r}")
        value = int(value)
    return coerce_value(rtype, value, where)


class Leaf(NamedTuple):
    """One value to encode: a resource or resource-instance path, its type and the value."""

    path: Path
    type: ResourceType
    value: Value


class PreparedResource(NamedTuple):
    """A validated resource: ``leaves`` has one entry if single, zero or more if multiple."""

    resource_id: int
    multiple: bool
    leaves: tuple[Leaf, ...]


class PreparedInstance(NamedTuple):
    """A validated object instance with its resources in ascending ID order."""

    instance_id: int
    resources: tuple[PreparedResource, ...]


def _check_key(key: object, expected: int | None, where: str) -> int:
    key = check_id(key, where)
    if expected is not None and key != expected:
        raise CodecError(f"{where} {key} lies outside the base path (expected {expected})")
    return key


def prepare(
    base: Path, instances: Instances, objects: Mapping[int, ObjectDef] = OBJECTS
) -> list[PreparedInstance]:
    """Validate data for encoding under ``base`` and attach resource types.

    Every key must lie under ``base`` (for base ``/0/1`` the only instance key allowed is 1,
    and so on). Values are checked against the model; resources missing from the model get a
    type inferred from the Python value. Output is sorted by ID.

    Args:
        base: The request path the payload is for.
        instances: ``instance id -> {resource id -> value or {resource instance id -> value}}``.
        objects: Known object definitions.

    Returns:
        The validated instances.

    Raises:
        CodecError: If the data does not fit the base path or the model.
    """
    if not isinstance(instances, Mapping):
        raise CodecError("instances must be a mapping of instance id to instance")
    prepared: list[PreparedInstance] = []
    for iid in sorted(_check_key(k, base.instance_id, "instance id") for k in instances):
        instance = instances[iid]
        if not isinstance(instance, Mapping):
            raise CodecError(f"instance {iid} must be a mapping of resource id to value")
        resources: list[PreparedResource] = []
        for rid in sorted(_check_key(k, base.resource_id, "resource id") for k in instance):
            resources.append(_prepare_resource(base, Path(base.object_id, iid, rid), instance[rid], objects))
        prepared.append(PreparedInstance(iid, tuple(resources)))
    return prepared


def _prepare_resource(
    base: Path, path: Path, value: ResourceValue, objects: Mapping[int, ObjectDef]
) -> PreparedResource:
    assert path.resource_id is not None
    definition = resource_def(objects, path.object_id, path.resource_id)
    multiple = isinstance(value, Mapping)
    if definition is not None and definition.multiple != multiple:
        kind = "multiple" if definition.multiple else "single"
        raise CodecError(f"{path} is a {kind}-instance resource ({definition.name}), got {value!r}")
    if isinstance(value, Mapping):
        leaves = []
        for riid in sorted(_check_key(k, base.resource_instance_id, "resource instance id") for k in value):
            leaf_path = path.child(riid)
            item = value[riid]
            rtype = definition.type if definition is not None else infer_type(item)
            leaves.append(Leaf(leaf_path, rtype, coerce_value(rtype, item, leaf_path)))
        return PreparedResource(path.resource_id, True, tuple(leaves))
    if base.resource_instance_id is not None:
        raise CodecError(f"base path {base} names a resource instance but {path} is single-instance")
    rtype = definition.type if definition is not None else infer_type(value)
    return PreparedResource(path.resource_id, False, (Leaf(path, rtype, coerce_value(rtype, value, path)),))


def iter_leaves(prepared: Iterable[PreparedInstance]) -> Iterator[Leaf]:
    """All values of prepared instances in path order.

    Args:
        prepared: Output of :func:`prepare`.

    Yields:
        Each resource or resource-instance value.
    """
    for instance in prepared:
        for resource in instance.resources:
            yield from resource.leaves


class TreeBuilder:
    """Collects decoded values into :data:`DecodedInstances`, enforcing structure.

    It rejects values outside the base path, duplicates, a resource given both as single and
    multiple, and (for modelled resources) the wrong one of those two shapes.
    """

    def __init__(self, base: Path, objects: Mapping[int, ObjectDef] = OBJECTS) -> None:
        """Start an empty tree.

        Args:
            base: The request path; every decoded value must lie under it.
            objects: Known object definitions.
        """
        self.base = base
        self.objects = objects
        self._tree: DecodedInstances = {}

    def resource_type(self, path: Path) -> ResourceType | None:
        """Type of the resource ``path`` points into, or None when it is not modelled.

        Args:
            path: A resource or resource-instance path.

        Returns:
            The modelled type, if any.
        """
        if path.resource_id is None:
            return None
        definition = resource_def(self.objects, path.object_id, path.resource_id)
        return None if definition is None else definition.type

    def _check_under_base(self, path: Path, *, allow_ancestor: bool) -> None:
        # Containers (instances, multiple resources) may sit above a deeper base path; values
        # must lie at or below it.
        if self.base.contains(path) or (allow_ancestor and path.contains(self.base)):
            return
        raise CodecError(f"{path} lies outside the request path {self.base}")

    def add_instance(self, instance_id: int) -> DecodedInstance:
        """Make sure an (possibly empty) instance exists.

        Args:
            instance_id: Object instance ID.

        Returns:
            The instance's resource mapping.

        Raises:
            CodecError: If the instance lies outside the base path.
        """
        self._check_under_base(Path(self.base.object_id, instance_id), allow_ancestor=True)
        return self._tree.setdefault(instance_id, {})

    def add_multiple(self, path: Path) -> dict[int, Value]:
        """Make sure a (possibly empty) multiple-instance resource exists at a resource path.

        Args:
            path: A resource path.

        Returns:
            The resource's instance mapping.

        Raises:
            CodecError: If the path is outside the base, the resource is single-instance in the
                model, or it was already given a single value.
        """
        if path.depth != 3 or path.instance_id is None or path.resource_id is None:
            raise CodecError(f"{path} is not a resource path")
        self._check_under_base(path, allow_ancestor=True)
        definition = resource_def(self.objects, path.object_id, path.resource_id)
        if definition is not None and not definition.multiple:
            raise CodecError(f"{path} ({definition.name}) is single-instance but has resource instances")
        instance = self.add_instance(path.instance_id)
        existing = instance.setdefault(path.resource_id, {})
        if not isinstance(existing, dict):
            raise CodecError(f"{path} is given both as a single value and with resource instances")
        return existing

    def add_value(self, path: Path, value: Value) -> None:
        """Store one decoded value.

        Args:
            path: Resource path (single-instance) or resource-instance path.
            value: The typed value.

        Raises:
            CodecError: On a path outside the base, a duplicate, or a shape that contradicts the
                model.
        """
        self._check_under_base(path, allow_ancestor=False)
        if path.resource_instance_id is not None:
            multi = self.add_multiple(Path(path.object_id, path.instance_id, path.resource_id))
            if path.resource_instance_id in multi:
                raise CodecError(f"duplicate value for {path}")
            multi[path.resource_instance_id] = value
            return
        if path.depth != 3 or path.instance_id is None or path.resource_id is None:
            raise CodecError(f"{path} does not name a resource")
        definition = resource_def(self.objects, path.object_id, path.resource_id)
        if definition is not None and definition.multiple:
            raise CodecError(
                f"{path} ({definition.name}) is multiple-instance: a resource instance id is needed"
            )
        instance = self.add_instance(path.instance_id)
        if path.resource_id in instance:
            raise CodecError(f"duplicate value for {path}")
        instance[path.resource_id] = value

    def result(self) -> DecodedInstances:
        """The decoded instances.

        Returns:
            ``instance id -> {resource id -> value or {resource instance id -> value}}``.
        """
        return self._tree
