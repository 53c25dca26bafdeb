"""A simulated device, sans-I/O: its key, its CSR, and the checks it makes on what it receives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca_backends import der

PKCS7_CERTS_ONLY = 281
PKIX_CERT = 287


class VerificationError(Exception):
    """What the device received is not a valid certificate chain for it; ``reason`` is short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SimDevice:
    """One device: an endpoint name and a P-256 key."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey

    def csr_der(self) -> bytes:
        """A PKCS#10 request with CN = endpoint name, as LwM2M clients send (DER)."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.endpoint)]))
            .sign(self.key, hashes.SHA256())
        )
        return csr.public_bytes(Encoding.DER)

    def check_enrolled(
        self,
        payload: bytes,
        content_format: int | None,
        trust_anchors: Sequence[x509.Certificate],
        *,
        now: dt.datetime,
    ) -> x509.Certificate:
        """Verify an EST answer: our key and name, client-auth usage, a chain up to a trust anchor."""
        certificates = parse_certificates(payload, content_format)
        # PKCS#7 holds a SET OF certificates: find ours by its key, not by position.
        mine = self.key.public_key()
        leaf = next((c for c in certificates if c.public_key() == mine), None)
        if leaf is None:
            raise VerificationError("no certificate for our key in the answer")
        intermediates = [c for c in certificates if c is not leaf]
        cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns or cns[0].value != self.endpoint:
            raise VerificationError("certificate CN is not our endpoint name")
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise VerificationError("certificate has no extended key usage") from None
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise VerificationError("certificate is not for client authentication")
        verify_chain(leaf, intermediates, trust_anchors, now=now)
        return leaf


#: The DER of the signedData content type, 1.2.840.113549.1.7.2 (RFC 5652 §5.1).
_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")


def _certs_only_members(payload: bytes) -> list[bytes] | None:
    """The certificates of a DER certs-only SignedData (RFC 5652 §5.1, RFC 8551 §3.2.2), as DER,
    or ``None`` when the bytes are anything else (BER, other certificate choices, no certificates).

    A fast path, not a validator: ``pkcs7.load_der_pkcs7_certificates`` goes through OpenSSL's
    PKCS#7 parser and then re-encodes every certificate for the Rust side, six times the cost of
    reading the SET by hand and loading each member. Whatever this does not recognise goes to
    ``cryptography``, and each member is still parsed by ``cryptography``.
    """
    try:
        tag, start, end = der.element(payload)  # ContentInfo
        if tag != der.SEQUENCE or end != len(payload):
            return None
        tag, start, position = der.element(payload, start)  # contentType
        if tag != der.OBJECT_IDENTIFIER or payload[start:position] != _SIGNED_DATA:
            return None
        tag, start, explicit_end = der.element(payload, position)  # [0] EXPLICIT content
        if tag != der.context(0) or explicit_end != end:
            return None
        tag, position, signed_end = der.element(payload, start)  # SignedData
        if tag != der.SEQUENCE or signed_end != explicit_end:
            return None
        for expected in (der.INTEGER, der.SET, der.SEQUENCE):  # version, digestAlgorithms, encapContentInfo
            tag, _, position = der.element(payload, position)
            if tag != expected:
                return None
        tag, position, members_end = der.element(payload, position)  # certificates [0] IMPLICIT
        if tag != der.context(0):
            return None
        members = []
        while position < members_end:
            tag, _, after = der.element(payload, position)
            if tag != der.SEQUENCE or after > members_end:
                return None  # an attribute or other certificate choice: not certs-only as read here
            members.append(payload[position:after])
            position = after
        return members or None
    except ValueError:
        return None


def parse_certificates(payload: bytes, content_format: int | None) -> list[x509.Certificate]:
    """Certificates from a 281 (PKCS#7 certs-only) or 287 (single DER) payload."""
    try:
        if content_format == PKIX_CERT:
            return [x509.load_der_x509_certificate(payload)]
        if content_format in (PKCS7_CERTS_ONLY, None):
            members = _certs_only_members(payload)
            if members is not None:
                return [x509.load_der_x509_certificate(member) for member in members]
            certificates = pkcs7.load_der_pkcs7_certificates(payload)
            if certificates:
                return certificates
            raise VerificationError("PKCS#7 answer holds no certificate")
    except (ValueError, UnsupportedAlgorithm):  # the latter: a PKCS#7 type other than signedData
        raise VerificationError(f"answer does not parse as Content-Format {content_format}") from None
    raise VerificationError(f"unexpected Content-Format {content_format}")


#: CA certificate → the CA that signed it, for links already verified. Keyed by the certificates
#: themselves: ``cryptography`` hashes and compares a certificate by its whole parsed content,
#: signature included, at a fifth of the cost of a SHA-256 fingerprint.
_VERIFIED_LINKS: dict[x509.Certificate, x509.Certificate] = {}


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    *,
    now: dt.datetime,
) -> None:
    """Walk issuer links from ``leaf`` to one of ``trust_anchors``, checking signatures and validity."""
    pool = [*intermediates, *trust_anchors]
    current = leaf
    for _ in range(len(pool) + 1):
        if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
            raise VerificationError(f"{current.subject.rfc4514_string()} is not valid now")
        if any(current == anchor for anchor in trust_anchors):
            return
        current = _issuer(current, pool, remember=current is not leaf)
    raise VerificationError("chain does not reach a trust anchor")


def _issuer(
    certificate: x509.Certificate, pool: Sequence[x509.Certificate], *, remember: bool
) -> x509.Certificate:
    """The member of ``pool`` that signed ``certificate``.

    Each candidate is asked whether it directly issued the certificate: cryptography compares the
    names and checks the signature in Rust, with no Name objects built here. A CA-to-CA link
    verified once is not verified again (a device keeps its verified chain too); a leaf always is.
    """
    known = _VERIFIED_LINKS.get(certificate) if remember else None
    if known is not None:
        for candidate in pool:
            if candidate == known:
                return candidate
    forged = False
    for candidate in pool:
        if candidate is certificate or candidate == certificate:
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except InvalidSignature:
            forged = True  # the names match, the signature does not
            continue
        except (ValueError, TypeError):
            continue  # another CA's name, or a key that cannot have signed it
        if remember:
            if len(_VERIFIED_LINKS) > 1024:
                _VERIFIED_LINKS.clear()
            _VERIFIED_LINKS[certificate] = candidate
        return candidate
    what = "bad signature on" if forged else "no issuer for"
    raise VerificationError(f"{what} {certificate.subject.rfc4514_string()}")
