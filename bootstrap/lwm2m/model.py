"""LwM2M object model core: content formats, identifiers, paths, resource types and definitions.

Everything here is pure data. The object tables live in :mod:`.objects`, value typing and the
helpers the codecs share in :mod:`.values`.

The representation of data is deliberately plain:

* an *instance* is a mapping ``resource id -> value``;
* a multiple-instance resource is a mapping ``resource instance id -> value``;
* a value is ``str | int | float | bool | bytes | ObjLink``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeAlias

from ..errors import BadRequest

__all__ = [
    "MAX_ID",
    "CodecError",
    "ContentFormat",
    "DecodedInstance",
    "DecodedInstances",
    "Instance",
    "Instances",
    "ObjLink",
    "ObjectDef",
    "ObjectId",
    "OscoreResource",
    "Path",
    "ResourceDef",
    "ResourceType",
    "ResourceValue",
    "SecurityMode",
    "SecurityResource",
    "ServerResource",
    "Value",
    "check_id",
]

#: Largest identifier a path component can hold (16-bit, Core TS "Identifiers").
MAX_ID = 65535


class CodecError(BadRequest, ValueError):
    """A payload or value cannot be encoded or decoded.

    This is the only exception type the codecs raise for bad input. It is a
    :class:`~bootstrap.errors.BadRequest` (CoAP 4.00, HTTP 400), so adapters translate it like any
    other :class:`~bootstrap.errors.BootstrapError`, and a ``ValueError`` for plain callers.
    """


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers used by LwM2M (IANA CoAP Content-Formats registry)."""

    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    LWM2M_JSON = 11543
    LWM2M_CBOR = 11544


class ResourceType(Enum):
    """Resource data types (Core TS Appendix C "Data Types"); ``NONE`` marks executables."""

    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"


class SecurityMode(IntEnum):
    """Values of Security object resource 2 "Security Mode" (registry ``0.xml``)."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NOSEC = 3
    EST = 4


class ObjectId(IntEnum):
    """Object IDs a bootstrap server writes."""

    SECURITY = 0
    SERVER = 1
    ACCESS_CONTROL = 2
    OSCORE = 21


class SecurityResource(IntEnum):
    """Resource IDs of the LwM2M Security object /0 (registry ``0.xml`` v1.2)."""

    SERVER_URI = 0
    BOOTSTRAP_SERVER = 1
    SECURITY_MODE = 2
    PUBLIC_KEY_OR_IDENTITY = 3
    SERVER_PUBLIC_KEY = 4
    SECRET_KEY = 5
    SMS_SECURITY_MODE = 6
    SMS_BINDING_KEY_PARAMETERS = 7
    SMS_BINDING_SECRET_KEYS = 8
    SERVER_SMS_NUMBER = 9
    SHORT_SERVER_ID = 10
    CLIENT_HOLD_OFF_TIME = 11
    BOOTSTRAP_SERVER_ACCOUNT_TIMEOUT = 12
    MATCHING_TYPE = 13
    SNI = 14
    CERTIFICATE_USAGE = 15
    CIPHERSUITE = 16
    OSCORE_SECURITY_MODE = 17
    GROUPS_TO_USE = 18
    SIGNATURE_ALGORITHMS_SUPPORTED = 19
    SIGNATURE_ALGORITHMS_TO_USE = 20
    SIGNATURE_ALGORITHM_CERTS_SUPPORTED = 21
    TLS13_FEATURES_TO_USE = 22
    TLS_EXTENSIONS_SUPPORTED = 23
    TLS_EXTENSIONS_TO_USE = 24
    SECONDARY_SERVER_URI = 25
    MQTT_SERVER = 26
    COSE_SECURITY = 27
    RDS_DESTINATION_PORT = 28
    RDS_SOURCE_PORT = 29
    RDS_APPLICATION_ID = 30


class ServerResource(IntEnum):
    """Resource IDs of the LwM2M Server object /1 (registry ``1.xml`` v1.2)."""

    SHORT_SERVER_ID = 0
    LIFETIME = 1
    DEFAULT_PMIN = 2
    DEFAULT_PMAX = 3
    DISABLE = 4
    DISABLE_TIMEOUT = 5
    NOTIFICATION_STORING = 6
    BINDING = 7
    REGISTRATION_UPDATE_TRIGGER = 8
    BOOTSTRAP_REQUEST_TRIGGER = 9
    APN_LINK = 10
    TLS_DTLS_ALERT_CODE = 11
    LAST_BOOTSTRAPPED = 12
    REGISTRATION_PRIORITY_ORDER = 13
    INITIAL_REGISTRATION_DELAY = 14
    REGISTRATION_FAILURE_BLOCK = 15
    BOOTSTRAP_ON_REGISTRATION_FAILURE = 16
    COMMUNICATION_RETRY_COUNT = 17
    COMMUNICATION_RETRY_TIMER = 18
    COMMUNICATION_SEQUENCE_DELAY_TIMER = 19
    COMMUNICATION_SEQUENCE_RETRY_COUNT = 20
    TRIGGER = 21
    PREFERRED_TRANSPORT = 22
    MUTE_SEND = 23
    ALTERNATE_APN_LINKS = 24
    SUPPORTED_SERVER_VERSIONS = 25
    DEFAULT_NOTIFICATION_MODE = 26
    PROFILE_ID_HASH_ALGORITHM = 27


class OscoreResource(IntEnum):
    """Resource IDs of the LwM2M OSCORE object /21 (registry ``21.xml`` v2.0)."""

    MASTER_SECRET = 0
    SENDER_ID = 1
    RECIPIENT_ID = 2
    AEAD_ALGORITHM = 3
    HMAC_ALGORITHM = 4
    MASTER_SALT = 5
    ID_CONTEXT = 6


def check_id(value: object, what: str) -> int:
    """Check that ``value`` is a path component id (an int in ``0..MAX_ID``, not a bool).

    Args:
        value: The candidate id.
        what: What the id is, for the error message.

    Returns:
        The id.

    Raises:
        CodecError: If it is not an id.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise CodecError(f"{what} must be an integer in 0..{MAX_ID}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ObjLink:
    """An Objlnk value: a reference to object instance ``object_id:instance_id``.

    ``ObjLink(65535, 65535)`` is the "null" link (Core TS Appendix C, Objlnk).
    """

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        check_id(self.object_id, "Objlnk object id")
        check_id(self.instance_id, "Objlnk instance id")

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"

    @classmethod
    def parse(cls, text: str) -> ObjLink:
        """Parse the textual form ``"3:0"`` used by SenML ``vlo`` and LwM2M CBOR.

        Args:
            text: Two decimal IDs separated by a colon.

        Returns:
            The link.

        Raises:
            CodecError: If the text is not of that form or an ID is out of range.
        """
        match = _OBJLNK_RE.fullmatch(text)
        if match is None:
            raise CodecError(f"invalid Objlnk {text!r}, expected 'object:instance'")
        return cls(int(match[1]), int(match[2]))


_OBJLNK_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_PATH_SEGMENT_RE = re.compile(r"[0-9]{1,5}")

Value: TypeAlias = str | int | float | bool | bytes | ObjLink
"""One resource (or resource instance) value."""

ResourceValue: TypeAlias = Value | Mapping[int, Value]
"""A single-instance value, or ``resource instance id -> value`` for a multiple resource."""

Instance: TypeAlias = Mapping[int, ResourceValue]
"""An object instance: ``resource id -> value``."""

Instances: TypeAlias = Mapping[int, Instance]
"""Object instances of one object: ``instance id -> instance``."""

DecodedInstance: TypeAlias = dict[int, Value | dict[int, Value]]
"""What the decoders return for one instance (concrete dicts, same shape as :data:`Instance`)."""

DecodedInstances: TypeAlias = dict[int, DecodedInstance]
"""What the decoders return: ``instance id -> instance``."""


@dataclass(frozen=True, slots=True, order=True)
class Path:
    """An LwM2M path ``/object[/instance[/resource[/resource-instance]]]`` (Core TS "Identifiers").

    Attributes:
        object_id: Object ID.
        instance_id: Object instance ID, if the path goes that deep.
        resource_id: Resource ID, if the path goes that deep.
        resource_instance_id: Resource instance ID, if the path goes that deep.
    """

    object_id: int
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None

    def __post_init__(self) -> None:
        check_id(self.object_id, "object id")
        deeper_missing = False
        for name in ("instance_id", "resource_id", "resource_instance_id"):
            component = getattr(self, name)
            if component is None:
                deeper_missing = True
            elif deeper_missing:
                raise CodecError(f"path has {name.replace('_', ' ')} without the levels above it")
            else:
                check_id(component, name.replace("_", " "))

    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse ``"/0/1/3"`` (a leading slash, then one to four decimal IDs); the same text gives
        the same (immutable) object, since a device's payloads name the same few paths over and over.

        Args:
            text: The path as written in URIs, SenML names and CoRE links.

        Returns:
            The path.

        Raises:
            CodecError: If the text is not an LwM2M path.
        """
        return _parse_path(text) if cls is Path else _parse_path.__wrapped__(text, cls)

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> Path:
        """Build a path from its components, outermost first.

        Args:
            ids: One to four IDs.

        Returns:
            The path.

        Raises:
            CodecError: If there are not one to four IDs or one is out of range.
        """
        parts = list(ids)
        if not 1 <= len(parts) <= 4:
            raise CodecError(f"an LwM2M path has 1 to 4 components, got {len(parts)}")
        padded: list[int | None] = [*parts[1:], None, None, None]
        return cls(parts[0], padded[0], padded[1], padded[2])

    @property
    def ids(self) -> tuple[int, ...]:
        """The components that are present, outermost first."""
        if self.instance_id is None:
            return (self.object_id,)
        if self.resource_id is None:
            return (self.object_id, self.instance_id)
        if self.resource_instance_id is None:
            return (self.object_id, self.instance_id, self.resource_id)
        return (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)

    @property
    def depth(self) -> int:
        """Number of components: 1 (object) to 4 (resource instance)."""
        return len(self.ids)

    def child(self, component: int) -> Path:
        """The path one level deeper.

        Args:
            component: ID of the next level.

        Returns:
            The extended path.

        Raises:
            CodecError: If this path is already a resource-instance path.
        """
        return Path.from_ids([*self.ids, component])

    def contains(self, other: Path) -> bool:
        """Whether ``other`` is this path or lies below it.

        Args:
            other: The path to test.

        Returns:
            True if this path is a prefix of ``other``.
        """
        mine = self.ids
        return other.ids[: len(mine)] == mine

    def __str__(self) -> str:
        return "/" + "/".join(str(i) for i in self.ids)


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """Definition of one resource of an object.

    Attributes:
        id: Resource ID.
        name: Name as in the OMA registry.
        type: Data type.
        multiple: Whether the resource has resource instances.
    """

    id: int
    name: str
    type: ResourceType
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class ObjectDef:
    """Definition of an object: its ID, name and resources.

    Attributes:
        id: Object ID.
        name: Name as in the OMA registry.
        resources: Resource definitions by resource ID.
        multiple: Whether the object may have several instances.
    """

    id: int
    name: str
    resources: Mapping[int, ResourceDef]
    multiple: bool = True


@functools.lru_cache(maxsize=4096)
def _parse_path(text: str, cls: type[Path] = Path) -> Path:
    if not text.startswith("/"):
        raise CodecError(f"invalid LwM2M path {text!r}: must start with '/'")
    segments = text[1:].split("/")
    if not 1 <= len(segments) <= 4 or not all(_PATH_SEGMENT_RE.fullmatch(s) for s in segments):
        raise CodecError(f"invalid LwM2M path {text!r}")
    return cls.from_ids([int(s) for s in segments])
