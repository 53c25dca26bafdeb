"""Sans-I/O LwM2M data layer: object model, data formats and CoRE link parsing.

Nothing here does I/O or imports a network library. Typical use by the bootstrap session::

    fmt = choose_format(pct, version)
    payload = encode(fmt, Path(0), {1: {0: "coaps://lwm2m.example:5684", 1: False, 2: 0, 10: 101}})
    result = parse_discover(discover_body)
    bs_instance = bootstrap_account_instance(result.links)

All bad input raises :class:`CodecError`, a :class:`~bootstrap.errors.BadRequest` (CoAP 4.00)
that is also a ``ValueError``.
"""

from __future__ import annotations

from .codec import SUPPORTED_FORMATS, choose_format, decode, encode
from .links import DiscoverResult, Link, bootstrap_account_instance, parse_discover, parse_link_format
from .model import (
    CodecError,
    ContentFormat,
    DecodedInstance,
    DecodedInstances,
    Instance,
    Instances,
    ObjectDef,
    ObjectId,
    ObjLink,
    OscoreResource,
    Path,
    ResourceDef,
    ResourceType,
    ResourceValue,
    SecurityMode,
    SecurityResource,
    ServerResource,
    Value,
)
from .objects import OBJECTS

__all__ = [
    "OBJECTS",
    "SUPPORTED_FORMATS",
    "CodecError",
    "ContentFormat",
    "DecodedInstance",
    "DecodedInstances",
    "DiscoverResult",
    "Instance",
    "Instances",
    "Link",
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
    "bootstrap_account_instance",
    "choose_format",
    "decode",
    "encode",
    "parse_discover",
    "parse_link_format",
]
