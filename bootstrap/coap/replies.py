"""aiocoap messages to and from the transport-neutral :mod:`bootstrap.coap.exchange` types."""

from __future__ import annotations

from typing import Any

from aiocoap import Code, Message

from .exchange import CoapReply, CoapRequest

__all__ = ["coap_request", "reply_message"]


def coap_request(request: Any) -> CoapRequest:
    """The :class:`CoapRequest` of an aiocoap request (path relative to the resource)."""
    return CoapRequest(
        method=str(request.code),
        path=tuple(request.opt.uri_path),
        content_format=None if request.opt.content_format is None else int(request.opt.content_format),
        accept=None if request.opt.accept is None else int(request.opt.accept),
        payload=request.payload,
        remote=request.remote,
        peer=str(getattr(request.remote, "hostinfo", "?")),
        query=tuple(request.opt.uri_query),
    )


def reply_message(reply: CoapReply) -> Message:
    """The aiocoap response for a :class:`CoapReply` (``"4.15"`` → class * 32 + detail, RFC 7252 §3)."""
    major, minor = reply.code.split(".")
    message = Message(code=Code(int(major) * 32 + int(minor)), payload=reply.payload)
    if reply.content_format is not None:
        message.opt.content_format = reply.content_format
    if reply.max_age is not None:
        message.opt.max_age = reply.max_age
    return message
