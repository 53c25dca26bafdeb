"""The narrow interface every CA backend implements.

Backends only sign (step-ca's CAS split): who may ask, which key types are allowed, the subject,
the validity and the serial are all decided by the enrollment policy in ``bootstrap`` before a
backend is called. A backend receives a finished :class:`SignRequest` and returns the leaf plus the
issuing chain as a :class:`SignResult`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True, kw_only=True)
class SignRequest:
    """A policy-approved request to sign one device certificate."""

    csr: x509.CertificateSigningRequest
    """The device's CSR; its signature has already been verified."""
    public_key: ec.EllipticCurvePublicKey
    """The CSR's public key, as the policy parsed and admitted it (an allowed curve)."""
    subject: x509.Name
    """Subject the certificate must carry (CN from the authenticated identity, plus configured O/OU)."""
    common_name: str
    """The identity (endpoint name) the certificate is issued to."""
    not_before: dt.datetime
    """Start of validity (timezone-aware UTC). Backends whose CA picks its own window may ignore it."""
    not_after: dt.datetime
    """End of validity (timezone-aware UTC)."""
    serial_number: int
    """Random positive serial of at least 64 bits, for backends that let the caller choose."""
    service: str
    """Certificate issuer configuration reference the request is for (``LWM2M`` or a custom one)."""
    request_id: str
    """Correlates logs and the audit row with the device request."""


@dataclass(frozen=True, kw_only=True)
class SignResult:
    """What a backend returns: the issued leaf and the CA chain that issued it."""

    certificate: x509.Certificate
    """The device certificate."""
    chain: tuple[x509.Certificate, ...] = field(default=())
    """Issuing CA first, towards the root; the root may be included."""
    certificate_der: bytes = b""
    """The certificate's DER, when the backend has it at hand (the enroller encodes
    ``certificate`` otherwise)."""


@dataclass(frozen=True, kw_only=True)
class IssuerConfig:
    """An issuer as stored in Postgres, with its credentials already decrypted."""

    issuer_id: str | None
    """Row id in ``certificate_issuers``; ``None`` for the built-in CA."""
    name: str
    attributes: Mapping[str, str]
    """Non-secret settings (``issuer_attributes``), e.g. CFSSL's ``host_url``."""
    credentials: Mapping[str, str]
    """Secrets (``issuer_credentials``); never logged or returned."""


@runtime_checkable
class CaBackend(Protocol):
    """A certificate signer for one issuer."""

    issuer_type: ClassVar[str]

    async def sign(self, request: SignRequest) -> SignResult:
        """Sign one certificate; raise a :class:`~ca_backends.errors.BackendError` on failure."""
        ...

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """The CA chain devices should trust for this issuer (issuing CA first), for EST ``crts``."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...


@runtime_checkable
class Revoker(Protocol):
    """Optional capability: the CA can revoke certificates it issued."""

    async def revoke(self, serial_number: int, reason: str) -> None:
        """Revoke the certificate with this serial at the CA."""
        ...


class BackendFactory(Protocol):
    """Builds a backend from a stored issuer; validates the configuration first."""

    issuer_type: ClassVar[str]

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Raise :class:`~ca_backends.errors.InvalidIssuerConfig` naming the first bad field."""
        ...

    @classmethod
    def from_config(cls, config: IssuerConfig) -> CaBackend:
        """Create a ready-to-use backend (validation included)."""
        ...
