"""Enrollment policy: may this identity get a certificate for this CSR, and what exactly is issued.

Pure code (sans-I/O): it takes the CSR bytes, the identity the transport authenticated, the time
and a serial number, and returns a finished :class:`~ca_backends.SignRequest` or raises an error that
carries its CoAP code. Backends are only called with requests this module approved (step-ca's split
between provisioner policy and CAS).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from ca_backends import SignRequest

from .errors import BadRequest, Forbidden, Unauthorized

# cryptography warns when it parses an over-long CN; we refuse those with a 4.00 instead. A filter
# installed once costs nothing per request, unlike warnings.catch_warnings().
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)

#: X.520 upper bound for a common name (RFC 5280 Appendix A, ub-common-name).
MAX_CN_LENGTH = 64
#: Curve names (as ``cryptography`` spells them) and the labels used in messages.
CURVE_LABELS = {"secp256r1": "EC P-256", "secp384r1": "EC P-384"}


@dataclass(frozen=True, kw_only=True)
class Requester:
    """Who is asking, as the transport authenticated them."""

    endpoint: str
    """The endpoint name: the certificate CN, or the endpoint a PSK identity belongs to."""
    kind: str
    """``x509`` or ``psk``."""
    certificate: x509.Certificate | None = None
    """The client certificate (x509 only)."""


@dataclass(frozen=True, kw_only=True)
class IssuedRecord:
    """What the audit knows about a certificate presented for re-enrollment."""

    endpoint: str
    not_after: dt.datetime
    revoked: bool


class BadCsr(BadRequest):
    """The CSR does not parse, does not verify, or asks for something the policy refuses."""


class IdentityMismatch(Forbidden):
    """The CSR's CN is not the authenticated identity."""


@dataclass(frozen=True, kw_only=True)
class EnrollmentPolicy:
    """What the server is willing to issue."""

    validity: dt.timedelta = dt.timedelta(days=365)
    """Lifetime of issued certificates."""
    backdate: dt.timedelta = dt.timedelta(minutes=5)
    """``notBefore`` is set this far in the past, for devices whose clocks run slightly behind."""
    allowed_curves: frozenset[str] = frozenset({"secp256r1"})
    """Key types accepted in CSRs (LwM2M mandates P-256)."""
    organization: str | None = None
    """O added to issued subjects."""
    organizational_unit: str | None = None
    """OU added to issued subjects."""
    max_csr_bytes: int = 4096
    """Larger payloads are refused before parsing."""


def new_serial_number(random_bytes: Callable[[int], bytes]) -> int:
    """A positive serial of 127 random bits (RFC 5280 §4.1.2.2: positive, at most 20 octets)."""
    return (int.from_bytes(random_bytes(16), "big") >> 1) | 1


#: CSR signature algorithms accepted, with their hash (RFC 5758 §3.2: ecdsa-with-SHA256/384/512).
#: The keys allowed are EC keys, so their proof of possession is an ECDSA signature.
_ECDSA_SIGNATURES = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}


def parse_csr(
    der: bytes, policy: EnrollmentPolicy
) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePublicKey]:
    """Parse and verify a DER PKCS#10 request (RFC 2986), enforcing the key policy; return it
    with its public key (parsed once here, for the backend too).

    The key is checked against the policy before the signature: refusing a key type costs nothing,
    while the ECDSA verification is the most expensive step of issuing a certificate, and
    ``is_signature_valid`` would parse the key a second time."""
    if not der:
        raise BadCsr("empty payload: expected a DER PKCS#10 CSR")
    if len(der) > policy.max_csr_bytes:
        raise BadCsr(f"CSR of {len(der)} bytes exceeds the {policy.max_csr_bytes}-byte limit")
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise BadCsr("payload is not a DER PKCS#10 CSR") from None
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise BadCsr("CSR public key does not parse or is of an unsupported type") from None
    allowed = ", ".join(sorted(CURVE_LABELS.get(c, c) for c in policy.allowed_curves))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadCsr(
            f"key type {type(key).__name__.removesuffix('PublicKey')} not allowed; allowed: {allowed}"
        )
    if key.curve.name not in policy.allowed_curves:
        raise BadCsr(f"key curve {key.curve.name} not allowed; allowed: {allowed}")
    algorithm = _ECDSA_SIGNATURES.get(csr.signature_algorithm_oid)
    if algorithm is None:
        raise BadCsr("CSR must be signed with ECDSA and SHA-256, SHA-384 or SHA-512")
    try:
        key.verify(csr.signature, csr.tbs_certrequest_bytes, algorithm)
    except InvalidSignature:
        raise BadCsr("CSR signature does not verify (proof of possession failed)") from None
    return csr, key


def common_name(csr: x509.CertificateSigningRequest) -> str:
    """The single CN of the CSR subject."""
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise BadCsr("CSR subject must contain exactly one CN (the endpoint name)")
    value = names[0].value
    cn = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if not cn or len(cn) > MAX_CN_LENGTH or not cn.isprintable():
        raise BadCsr(f"CSR CN must be 1-{MAX_CN_LENGTH} printable characters")
    return cn


def subject_for(identity: str, policy: EnrollmentPolicy) -> x509.Name:
    """The issued subject: configured O/OU, then CN = identity. Nothing is copied from the CSR."""
    attributes = []
    if policy.organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, policy.organization))
    if policy.organizational_unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, policy.organizational_unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, identity))
    return x509.Name(attributes)


def check_reenrollment(requester: Requester | None, record: IssuedRecord | None, *, now: dt.datetime) -> str:
    """``sren`` (RFC 7030 §4.2.2 via RFC 9148) is for a device holding a certificate this server
    issued, still valid and not revoked; it renews that identity. Returns the identity."""
    if requester is None:
        raise Unauthorized("re-enrollment needs a DTLS/TLS client certificate")
    if requester.kind != "x509" or requester.certificate is None:
        raise Forbidden("re-enrollment needs a client certificate issued by this server, not a PSK")
    if record is None:
        raise Forbidden("the client certificate was not issued by this server; enroll with sen")
    if record.revoked:
        raise Forbidden("the client certificate has been revoked")
    if record.not_after <= now:
        raise Forbidden("the client certificate has expired; enroll with sen")
    if record.endpoint != requester.endpoint:
        raise Forbidden("the client certificate was issued to another endpoint")
    return requester.endpoint


def approve(
    csr_der: bytes,
    *,
    identity: str | None,
    allow_unauthenticated: bool,
    service: str,
    policy: EnrollmentPolicy,
    now: dt.datetime,
    serial_number: int,
    request_id: str,
) -> SignRequest:
    """Check a CSR against the identity and policy; return what the CA must sign.

    ``identity`` is the name the (D)TLS handshake authenticated, or ``None`` on plain CoAP, where
    enrollment is refused unless ``allow_unauthenticated`` (development only) makes the CSR's CN
    the identity.
    """
    if identity is None and not allow_unauthenticated:
        raise Unauthorized(
            "enrollment needs a DTLS/TLS-authenticated client; plain CoAP enrollment is disabled"
        )
    csr, public_key = parse_csr(csr_der, policy)
    cn = common_name(csr)
    if identity is None:
        identity = cn
    elif cn != identity:
        raise IdentityMismatch(f"CSR CN {cn!r} does not match the authenticated identity {identity!r}")
    not_before = now - policy.backdate
    return SignRequest(
        csr=csr,
        public_key=public_key,
        subject=subject_for(identity, policy),
        common_name=identity,
        not_before=not_before,
        not_after=now + policy.validity,
        serial_number=serial_number,
        service=service,
        request_id=request_id,
    )
