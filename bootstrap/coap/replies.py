"""Translating core results and errors into CoAP messages, in one place."""

from __future__ import annotations

import structlog
from aiocoap import Code, Message

from ..errors import BootstrapError

log = structlog.get_logger(__name__)


def code_from_dotted(dotted: str) -> Code:
    """``"4.15"`` → :class:`aiocoap.Code` (class * 32 + detail, RFC 7252 §3)."""
    major, minor = dotted.split(".")
    return Code(int(major) * 32 + int(minor))


def error_reply(error: BootstrapError) -> Message:
    """A diagnostic response (RFC 7252 §5.5.2: the payload is a short UTF-8 message)."""
    message = Message(code=code_from_dotted(error.coap_code), payload=error.message.encode()[:200])
    if error.max_age is not None:
        message.opt.max_age = error.max_age
    return message


def internal_error() -> Message:
    """5.00 without details (the log line carries them)."""
    return Message(code=Code.INTERNAL_SERVER_ERROR, payload=b"internal error")
