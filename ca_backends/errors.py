"""Errors a CA backend raises, each carrying its wire meaning.

Backends never talk CoAP or HTTP to devices or operators; they raise one of these and the adapters
(CoAP resources, admin API handlers) translate the attributes once. The split mirrors step-ca's
``apiv1`` errors: the CA is *unavailable* (retry later), it *rejected* this request, or the issuer is
*misconfigured* (an operator must act).
"""

from __future__ import annotations

from typing import ClassVar


class BackendError(Exception):
    """Base class: something went wrong while asking a CA to sign.

    ``coap_code`` is the dotted CoAP response code a device receives, ``http_status`` what the admin
    API answers, ``kind`` a short label used in logs, metrics and ``verify`` results.
    """

    coap_code: ClassVar[str] = "5.00"
    http_status: ClassVar[int] = 500
    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds after which a retry may succeed (becomes CoAP Max-Age on 5.03).
        self.retry_after = retry_after


class BackendUnavailable(BackendError):
    """The CA cannot be reached or is overloaded (timeouts, 429, 503, open circuit).

    Retryable: the device gets 5.03 with Max-Age and sends the same CSR again (RFC 9148 §4.5).
    """

    coap_code = "5.03"
    http_status = 424
    kind = "unavailable"
    retryable = True


class BackendRejected(BackendError):
    """The CA refused this particular request (for example HTTP 422 from GlobalSign)."""

    coap_code = "5.02"
    http_status = 424
    kind = "rejected"


class BackendMisconfigured(BackendError):
    """The issuer's configuration or credentials are wrong (bad HMAC key, login refused, quota gone).

    Distinct from :class:`BackendUnavailable` so operators see that waiting will not help.
    """

    coap_code = "5.00"
    http_status = 424
    kind = "misconfigured"


class InvalidIssuerConfig(BackendError):
    """An issuer's attributes or credentials fail validation when the issuer is created or updated."""

    coap_code = "5.00"
    http_status = 400
    kind = "invalid_config"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        #: The offending field, named as in the admin API (``issuer_attributes.host_url`` ...).
        self.field = field
        self.reason = message


class UnknownIssuerType(InvalidIssuerConfig):
    """No backend is registered for the ``issuer_type`` string."""

    def __init__(self, issuer_type: str, known: list[str]) -> None:
        super().__init__("issuer_type", f"unknown issuer type {issuer_type!r}; known: {', '.join(known)}")
