"""One entry point for the LwM2M data formats, dispatched on the Content-Format number.

The encoders and decoders live in tables keyed by :class:`ContentFormat`, in the style of
aioquic's frame-type dispatch tables; :func:`encode` and :func:`decode` look the format up and
make sure nothing but :class:`CodecError` escapes for bad input.

:func:`choose_format` picks the format for Bootstrap-Write payloads from what the client said in
its Bootstrap-Request.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from typing import TypeAlias

from . import lwm2m_cbor, senml, tlv
from .model import CodecError, ContentFormat, DecodedInstances, Instances, ObjectDef, Path
from .objects import OBJECTS

__all__ = ["SUPPORTED_FORMATS", "CodecError", "choose_format", "decode", "encode"]

Encoder: TypeAlias = Callable[[Path, Instances, Mapping[int, ObjectDef]], bytes]
Decoder: TypeAlias = Callable[[bytes, Path, Mapping[int, ObjectDef]], DecodedInstances]

_ENCODERS: dict[ContentFormat, Encoder] = {
    ContentFormat.TLV: tlv.encode,
    ContentFormat.SENML_JSON: senml.encode_json,
    ContentFormat.SENML_CBOR: senml.encode_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor.encode,
}

_DECODERS: dict[ContentFormat, Decoder] = {
    ContentFormat.TLV: tlv.decode,
    ContentFormat.SENML_JSON: senml.decode_json,
    ContentFormat.SENML_CBOR: senml.decode_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor.decode,
}

#: Formats :func:`encode` and :func:`decode` handle for object, instance and resource data.
SUPPORTED_FORMATS: frozenset[ContentFormat] = frozenset(_ENCODERS)

# Errors a codec bug could still let through; converted so callers only ever see CodecError.
_LEAKS = (
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    RecursionError,
    struct.error,
)


def _format(fmt: ContentFormat | int) -> ContentFormat:
    try:
        return ContentFormat(fmt)
    except ValueError:
        raise CodecError(f"unknown content format {fmt}") from None


def _path(base_path: Path | str) -> Path:
    return base_path if isinstance(base_path, Path) else Path.parse(base_path)


def encode(
    fmt: ContentFormat | int,
    base_path: Path | str,
    instances: Instances,
    *,
    objects: Mapping[int, ObjectDef] = OBJECTS,
) -> bytes:
    """Encode object instances in a given format for a request on ``base_path``.

    Args:
        fmt: Content-Format (one of :data:`SUPPORTED_FORMATS`).
        base_path: The request path, as :class:`Path` or text like ``"/0/1"``.
        instances: ``instance id -> {resource id -> value or {resource instance id -> value}}``;
            every key must lie under ``base_path``.
        objects: Known object definitions (for value types).

    Returns:
        The payload.

    Raises:
        CodecError: For an unsupported format, a bad path, or data that does not fit the path
            or the model.
    """
    content_format = _format(fmt)
    encoder = _ENCODERS.get(content_format)
    if encoder is None:
        raise CodecError(f"cannot encode object data as {content_format.name} ({int(content_format)})")
    path = _path(base_path)
    try:
        return encoder(path, instances, objects)
    except CodecError:
        raise
    except _LEAKS as exc:
        raise CodecError(f"cannot encode {content_format.name} for {path}: {exc}") from exc


def decode(
    fmt: ContentFormat | int,
    payload: bytes,
    base_path: Path | str,
    *,
    objects: Mapping[int, ObjectDef] = OBJECTS,
) -> DecodedInstances:
    """Decode a payload in a given format received for ``base_path``.

    Args:
        fmt: Content-Format (one of :data:`SUPPORTED_FORMATS`).
        payload: The payload bytes.
        base_path: The request path, as :class:`Path` or text like ``"/1"``.
        objects: Known object definitions (for value types).

    Returns:
        ``instance id -> {resource id -> value or {resource instance id -> value}}``.

    Raises:
        CodecError: For an unsupported format, a bad path, or a malformed payload.
    """
    content_format = _format(fmt)
    decoder = _DECODERS.get(content_format)
    if decoder is None:
        raise CodecError(f"cannot decode object data from {content_format.name} ({int(content_format)})")
    path = _path(base_path)
    try:
        return decoder(bytes(payload), path, objects)
    except CodecError:
        raise
    except _LEAKS as exc:
        raise CodecError(f"malformed {content_format.name} payload for {path}: {exc}") from exc


_VERSION_RE = re.compile(r"\s*\"?(\d+)\.(\d+)")


def choose_format(pct: int | None, lwm2m_version: str | None) -> ContentFormat:
    """Pick the Content-Format for Bootstrap-Write payloads.

    LwM2M 1.0 has no ``pct`` and TLV is the format every client supports, so TLV is the answer
    for 1.0 clients and when no ``pct`` was sent. Otherwise the client's Preferred Content
    Format (Transport TS, Bootstrap-Request ``pct`` parameter) is used when we can produce it,
    with TLV as the fallback. This matches Leshan (``pct`` else TLV).

    Args:
        pct: The ``pct`` query parameter of the Bootstrap-Request, if any.
        lwm2m_version: The client's LwM2M version (e.g. from ``lwm2m=`` or Discover), if known.

    Returns:
        The format to encode with.
    """
    if lwm2m_version is not None:
        match = _VERSION_RE.match(lwm2m_version)
        if match is not None and (int(match[1]), int(match[2])) < (1, 1):
            return ContentFormat.TLV
    if pct is None:
        return ContentFormat.TLV
    try:
        preferred = ContentFormat(pct)
    except ValueError:
        return ContentFormat.TLV
    return preferred if preferred in SUPPORTED_FORMATS else ContentFormat.TLV
