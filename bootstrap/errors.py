"""Errors that carry their wire meaning.

Cores raise these; only the adapters (CoAP resources, admin handlers, the CLI) translate them,
reading ``coap_code`` / ``http_status`` (aiocoap ``ConstructionRenderableError`` and aioquic's
``ProtocolError.error_code`` follow the same idea).
"""

from __future__ import annotations

from typing import ClassVar


class BootstrapError(Exception):
    """Base class for errors a device or operator should see, with a short diagnostic message."""

    coap_code: ClassVar[str] = "5.00"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, max_age: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds for CoAP Max-Age on 5.03 answers (the client retries after it).
        self.max_age = max_age
        #: The request field at fault, when there is one (admin API error objects name it).
        self.field = field


class BadRequest(BootstrapError):
    """Malformed request: a CSR that does not parse or fails policy, a bad query."""

    coap_code = "4.00"
    http_status = 400


class Unauthorized(BootstrapError):
    """No authenticated identity where one is required."""

    coap_code = "4.01"
    http_status = 401


class Forbidden(BootstrapError):
    """The authenticated client may not do this (identity does not match the CSR, ...)."""

    coap_code = "4.03"
    http_status = 403


class NotFound(BootstrapError):
    """Unknown resource, service reference or object."""

    coap_code = "4.04"
    http_status = 404


class NotAcceptable(BootstrapError):
    """The Accept option asks for a representation we do not produce."""

    coap_code = "4.06"
    http_status = 406


class Conflict(BootstrapError):
    """The change conflicts with current state (duplicate name, issuer in use)."""

    coap_code = "4.09"
    http_status = 409


class PreconditionFailed(BootstrapError):
    """``If-Match`` names another version of the resource."""

    coap_code = "4.12"
    http_status = 412


class FailedDependency(BootstrapError):
    """A third-party service (a CA) failed while doing what was asked."""

    coap_code = "5.02"
    http_status = 424


class UnsupportedContentFormat(BootstrapError):
    """The request payload has the wrong Content-Format."""

    coap_code = "4.15"
    http_status = 415


class ServiceUnavailable(BootstrapError):
    """Temporarily unable to serve (CA down or saturated); retry after ``max_age`` seconds."""

    coap_code = "5.03"
    http_status = 503


class ConfigError(Exception):
    """A setting is invalid; the message is one line meant for the operator."""
