"""A CoAP request and its answer as the transport-neutral handlers see them.

The EST and bootstrap handlers take a :class:`CoapRequest` and return a :class:`CoapReply`; the
aiocoap resources and the DTLS direct lane (:mod:`bootstrap.coap.direct`) are the adapters that
decode requests into these and encode replies from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BootstrapError

__all__ = ["INTERNAL_ERROR", "CoapReply", "CoapRequest", "error_reply"]


@dataclass(frozen=True, slots=True)
class CoapRequest:
    """A decoded request."""

    method: str
    """``GET``, ``POST``, ``PUT`` or ``DELETE``."""
    path: tuple[str, ...]
    """Uri-Path below the handler's root (for EST: ``("sen",)`` or ``("<label>", "sen")``)."""
    content_format: int | None
    accept: int | None
    payload: bytes
    remote: Any
    """The transport's remote; its ``authenticated_claims`` name the client."""
    peer: str
    """``host:port`` for log lines."""
    query: tuple[str, ...] = ()
    """Uri-Query options, each ``name=value``."""


@dataclass(frozen=True, slots=True)
class CoapReply:
    """What to answer: a dotted CoAP code (``"2.04"``), the payload and its options."""

    code: str
    payload: bytes = b""
    content_format: int | None = None
    max_age: int | None = None
    after: Callable[[], None] | None = None
    """Run once the answer is on its way (the Bootstrap-Request starts its session then)."""


def error_reply(error: BootstrapError) -> CoapReply:
    """A diagnostic answer (RFC 7252 §5.5.2: the payload is a short UTF-8 message)."""
    return CoapReply(error.coap_code, error.message.encode()[:200], max_age=error.max_age)


INTERNAL_ERROR = CoapReply("5.00", b"internal error")
