"""The signing path: policy, issuer lookup, backend call, audit — in that order, nothing skipped.

A certificate leaves this module only after its audit row is committed. Errors from backends are
translated here into :mod:`bootstrap.errors` so adapters see one hierarchy: an unavailable or
saturated CA becomes 5.03 with Max-Age (the device retries the same CSR), and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ca_backends import BackendError, BackendRejected, BackendUnavailable

from . import log_context, metrics
from . import policy as policy_core
from .errors import BootstrapError, ServiceUnavailable
from .issuer_directory import IssuerDirectory
from .store.audit import AuditWriter, IssuedCertificate

log = structlog.get_logger(__name__)


class BadGateway(BootstrapError):
    """The CA refused the request (CoAP 5.02)."""

    coap_code = "5.02"
    http_status = 502


@dataclass(frozen=True)
class Enrolled:
    """A certificate that has been issued and audited."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    issuer_name: str
    serial_hex: str
    certificate_der: bytes = b""
    """The certificate's DER encoding (empty only for hand-made values in tests)."""


@dataclass
class EnrollmentStats:
    """Counters for benchmarks and metrics."""

    issued: int = 0
    refused: int = 0
    unavailable: int = 0
    sign_seconds: float = 0.0


class Enroller:
    """Runs enrollments for one process, with bounded concurrency."""

    def __init__(
        self,
        *,
        issuers: IssuerDirectory,
        audit: AuditWriter,
        policy: policy_core.EnrollmentPolicy,
        allow_unauthenticated: bool = False,
        max_pending: int = 512,
        retry_after: int = 5,
        issued_lookup: Callable[[str], Awaitable[policy_core.IssuedRecord | None]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.issuers = issuers
        self._audit = audit
        self.policy = policy
        self.allow_unauthenticated = allow_unauthenticated
        self._max_pending = max_pending
        self._retry_after = retry_after
        self._clock = clock
        self._issued_lookup = issued_lookup
        self._random_bytes = random_bytes
        self.pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = EnrollmentStats()

    async def idle(self) -> None:
        """Return once no enrollment is in flight (used to drain on shutdown)."""
        await self._idle.wait()

    async def enroll(
        self, *, csr_der: bytes, identity: str | None, service: str, request_id: str
    ) -> Enrolled:
        """Issue a certificate for ``csr_der`` to ``identity`` through the CA active for ``service``."""
        if self.pending >= self._max_pending:
            self.stats.unavailable += 1
            raise ServiceUnavailable("enrollment is saturated; retry later", max_age=self._retry_after)
        self.pending += 1
        self._idle.clear()
        try:
            return await self._enroll(csr_der, identity, service, request_id)
        except BootstrapError:
            self.stats.refused += 1
            raise
        finally:
            self.pending -= 1
            if self.pending == 0:
                self._idle.set()

    async def reenroll(
        self, *, csr_der: bytes, requester: policy_core.Requester | None, service: str, request_id: str
    ) -> Enrolled:
        """``sren``: renew the certificate the client authenticated with, if this server issued it."""
        record = None
        if requester is not None and requester.certificate is not None and self._issued_lookup is not None:
            fingerprint = hashlib.sha256(requester.certificate.public_bytes(Encoding.DER)).hexdigest()
            record = await self._issued_lookup(fingerprint)
        identity = policy_core.check_reenrollment(requester, record, now=self._clock())
        return await self.enroll(csr_der=csr_der, identity=identity, service=service, request_id=request_id)

    async def enroll_with_generated_key(
        self,
        *,
        identity: str,
        service: str,
        request_id: str,
        client_csr_der: bytes | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, Enrolled]:
        """Server-side key generation: make a P-256 key for ``identity`` and have it certified
        through the same policy, CA and audit as a device CSR.

        For EST ``skg`` the client's CSR (``client_csr_der``) is checked like any CSR (signature,
        CN = identity) before its key is replaced by the generated one (RFC 9148 §4.8).
        """
        if client_csr_der is not None:
            policy_core.approve(
                client_csr_der,
                identity=identity,
                allow_unauthenticated=False,
                service=service,
                policy=self.policy,
                now=self._clock(),
                serial_number=1,
                request_id=request_id,
            )
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .sign(key, hashes.SHA256())
        )
        enrolled = await self.enroll(
            csr_der=csr.public_bytes(Encoding.DER), identity=identity, service=service, request_id=request_id
        )
        return key, enrolled

    async def _enroll(self, csr_der: bytes, identity: str | None, service: str, request_id: str) -> Enrolled:
        request = policy_core.approve(
            csr_der,
            identity=identity,
            allow_unauthenticated=self.allow_unauthenticated,
            service=service,
            policy=self.policy,
            now=self._clock(),
            serial_number=policy_core.new_serial_number(self._random_bytes),
            request_id=request_id,
        )
        if identity is None:
            log.warning(
                "insecure enrollment: identity taken from the CSR over plain CoAP",
                endpoint=request.common_name,
            )
        issuer = await self.issuers.resolve(service)
        log_context.bind(issuer=issuer.name, endpoint=request.common_name)
        started = time.perf_counter()
        try:
            result = await issuer.backend.sign(request)
        except BackendError as exc:
            metrics.observe_backend_error(issuer.name, exc.kind)
            metrics.observe_enrollment(service, issuer.name, exc.kind, time.perf_counter() - started)
            raise self._translate(exc) from exc
        finally:
            self.stats.sign_seconds += time.perf_counter() - started
        certificate = result.certificate
        der = result.certificate_der or certificate.public_bytes(Encoding.DER)
        audit_row = IssuedCertificate.of(
            certificate,
            der=der,
            endpoint=request.common_name,
            service_reference=service,
            issuer_id=issuer.issuer_id,
            issuer_name=issuer.name,
            issuer_type=issuer.issuer_type,
            request_id=request_id,
        )
        try:
            await self._audit.record(audit_row)
        except Exception as exc:
            # Not recorded means not handed out: the device retries the same CSR.
            raise ServiceUnavailable(
                "could not record the issuance; retry later", max_age=self._retry_after
            ) from exc
        self.stats.issued += 1
        metrics.observe_enrollment(service, issuer.name, "issued", time.perf_counter() - started)
        serial_hex = audit_row.serial_number
        log.info("certificate issued", serial=serial_hex, service=service)
        return Enrolled(
            certificate=certificate,
            chain=result.chain,
            issuer_name=issuer.name,
            serial_hex=serial_hex,
            certificate_der=der,
        )

    def _translate(self, exc: BackendError) -> BootstrapError:
        """A backend failure as the device sees it (logged once here)."""
        if isinstance(exc, BackendUnavailable):
            self.stats.unavailable += 1
            log.warning("CA unavailable", kind=exc.kind, error=exc.message)
            return ServiceUnavailable(
                f"certificate authority unavailable: {exc.message}",
                max_age=math.ceil(exc.retry_after) if exc.retry_after else self._retry_after,
            )
        if isinstance(exc, BackendRejected):
            log.warning("CA rejected the request", kind=exc.kind, error=exc.message)
            return BadGateway(f"certificate authority rejected the request: {exc.message}")
        log.error("CA backend failed", kind=exc.kind, error=exc.message)
        return ServiceUnavailable(
            "certificate authority is misconfigured; retry later", max_age=max(60, self._retry_after)
        )

    async def ca_certificates(self, service: str) -> tuple[x509.Certificate, ...]:
        """The CA chain of the issuer active for ``service`` (for EST ``crts``)."""
        issuer = await self.issuers.resolve(service)
        try:
            return await issuer.backend.ca_certificates()
        except BackendError as exc:
            raise ServiceUnavailable(
                f"certificate authority unavailable: {exc.message}",
                max_age=math.ceil(exc.retry_after) if exc.retry_after else self._retry_after,
            ) from exc
