"""The built-in CA's device certificate, assembled from a DER template instead of a builder.

Every certificate the built-in CA issues has the same shape: the same issuer, signature algorithm
and extensions (only the subject key identifier varies, and it follows from the key). What changes
per certificate is the serial number, the validity, the subject and the public key. So the constant
parts are encoded once, with ``cryptography`` (each extension's own ``public_bytes()``), and a
certificate is the concatenation of those bytes with the four variable fields, signed with the
issuing key. ``cryptography``'s ``CertificateBuilder`` builds the same bytes but re-validates and
re-encodes everything per call, which cost about as much as the ECDSA signature and the CSR
verification together (see ``lwm2m-bootstrap bench``: ``issue_floor_ms`` is the builder path).

The output is byte-for-byte the TBSCertificate that :func:`build_with_cryptography` produces for
the same inputs; ``tests/test_leaf_template.py`` checks that over many inputs, so the two cannot
drift apart silently.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from .der import (
    BIT_STRING,
    GENERALIZED_TIME,
    INTEGER,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    SEQUENCE,
    UTC_TIME,
    context,
    element,
    header,
    tlv,
)

__all__ = ["LeafTemplate", "build_with_cryptography", "leaf_extensions", "subject_public_key_info"]

#: [0] EXPLICIT INTEGER 2: version v3 (RFC 5280 §4.1.2.1).
_VERSION_V3 = bytes.fromhex("a003020102")
#: AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758 §3.2: parameters absent).
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
#: BOOLEAN TRUE, the ``critical`` flag (FALSE is the DEFAULT and so omitted in DER).
_CRITICAL = bytes.fromhex("0101ff")
#: The subject key identifier extension up to its 20-byte key identifier: SEQUENCE { extnID
#: id-ce-subjectKeyIdentifier (2.5.29.14), extnValue OCTET STRING { KeyIdentifier OCTET STRING } }.
_SKI_PREFIX = bytes.fromhex("301d0603551d0e04160414")
_SKI_LENGTH = len(_SKI_PREFIX) + 20

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _integer(value: int) -> bytes:
    """A non-negative INTEGER in the fewest octets (a leading zero only when the top bit is set)."""
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(moment: dt.datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; seconds, in UTC (a
    naive ``moment`` is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return _time_of_second(math.floor(moment.timestamp()))


@functools.lru_cache(maxsize=16)
def _time_of_second(second: int) -> bytes:
    # Certificates issued in the same second share their validity, and formatting two times cost
    # as much as assembling the rest of the certificate.
    moment = dt.datetime.fromtimestamp(second, dt.UTC)
    year = moment.year
    if year < 1950:
        raise ValueError("certificate times before 1950 cannot be encoded (RFC 5280 §4.1.2.5)")
    rest = f"{moment.month:02}{moment.day:02}{moment.hour:02}{moment.minute:02}{moment.second:02}Z"
    if year < 2050:
        return tlv(UTC_TIME, f"{year % 100:02}{rest}".encode())
    return tlv(GENERALIZED_TIME, f"{year:04}{rest}".encode())


#: DER SubjectPublicKeyInfo up to the point, per curve: learnt from the first key of each curve.
_SPKI_PREFIXES: dict[str, bytes] = {}


def subject_public_key_info(public_key: ec.EllipticCurvePublicKey, csr_info: bytes | None = None) -> bytes:
    """The key's DER SubjectPublicKeyInfo, named curve and uncompressed point (RFC 5480 §2).

    ``csr_info`` is the DER CertificationRequestInfo the key was read from (RFC 2986 §4.1). When
    its SubjectPublicKeyInfo already has that form, those bytes are returned as they are, which
    spares encoding the point again (a field inversion in OpenSSL, as costly as the rest of the
    certificate). A compressed point or any other form is re-encoded."""
    point_size = 1 + 2 * ((public_key.curve.key_size + 7) // 8)
    prefix = _SPKI_PREFIXES.get(public_key.curve.name)
    if prefix is not None and csr_info is not None:
        carried = _spki_in_request(csr_info)
        if (
            carried is not None
            and len(carried) == len(prefix) + point_size
            and carried.startswith(prefix)
            and carried[len(prefix)] == 0x04  # uncompressed (SEC 1 §2.3.3)
        ):
            return carried
    encoded = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    _SPKI_PREFIXES.setdefault(public_key.curve.name, encoded[:-point_size])
    return encoded


def _spki_in_request(csr_info: bytes) -> bytes | None:
    """CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes }."""
    try:
        tag, start, end = element(csr_info)
        if tag != SEQUENCE or end != len(csr_info):
            return None
        _, _, after_version = element(csr_info, start)
        _, _, after_subject = element(csr_info, after_version)
        tag, _, after_spki = element(csr_info, after_subject)
    except ValueError:
        return None
    return csr_info[after_subject:after_spki] if tag == SEQUENCE else None


def _extension(oid: x509.ObjectIdentifier, critical: bool, value: x509.ExtensionType) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }."""
    oid_der = _oid(oid)
    return tlv(SEQUENCE, oid_der + (_CRITICAL if critical else b"") + tlv(OCTET_STRING, value.public_bytes()))


def _oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(part) for part in oid.dotted_string.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(body))


def leaf_extensions(
    issuer_key: ec.EllipticCurvePublicKey,
) -> tuple[tuple[x509.ExtensionType, bool], ...]:
    """The extensions of a device certificate, in order, with their criticality, except the
    subject key identifier (which depends on the device key and comes fourth)."""
    return (
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        # AKI = the issuing CA's SKI (RFC 5280 §4.2.1.1).
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), False),
    )


def build_with_cryptography(
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_name: x509.Name,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    serial_number: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """The same certificate through ``cryptography``'s builder: the reference the template is
    tested against, and the ``issue_floor_ms`` baseline of the benchmark."""
    head = leaf_extensions(issuer_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for value, critical in head[:3]:
        builder = builder.add_extension(value, critical=critical)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    builder = builder.add_extension(head[3][0], critical=head[3][1])
    return builder.sign(issuer_key, hashes.SHA256())


class LeafTemplate:
    """Signs device certificates for one issuing CA (key and name fixed when created)."""

    def __init__(self, issuer_key: ec.EllipticCurvePrivateKey, issuer_name: x509.Name) -> None:
        if not isinstance(issuer_key.curve, ec.SECP256R1):
            # The signature AlgorithmIdentifier below is ecdsa-with-SHA256, the LwM2M choice.
            raise ValueError("the leaf template signs with a P-256 key")
        self._key = issuer_key
        self._head = _VERSION_V3
        self._issuer = issuer_name.public_bytes()
        extensions = [
            _extension(value.oid, critical, value)
            for value, critical in leaf_extensions(issuer_key.public_key())
        ]
        self._extensions_before_ski = b"".join(extensions[:3])
        self._extensions_after_ski = extensions[3]
        # [3] EXPLICIT Extensions: its length is fixed (the SKI is always 20 bytes), so both headers are.
        size = len(self._extensions_before_ski) + _SKI_LENGTH + len(self._extensions_after_ski)
        inner = header(SEQUENCE, size)
        self._extensions_headers = header(context(3), len(inner) + size) + inner

    def tbs_certificate(
        self,
        *,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        serial_number: int,
        not_before: dt.datetime,
        not_after: dt.datetime,
        csr_info: bytes | None = None,
    ) -> bytes:
        """The DER TBSCertificate (RFC 5280 §4.1) for these variable fields (``csr_info``: see
        :func:`subject_public_key_info`)."""
        if serial_number <= 0:
            raise ValueError("serial numbers are positive (RFC 5280 §4.1.2.2)")
        spki = subject_public_key_info(public_key, csr_info)
        # The SPKI ends with the subjectPublicKey BIT STRING, whose value is the uncompressed point
        # (RFC 5480 §2.2): 0x04, then X and Y of the curve's size each.
        point = spki[-(1 + 2 * ((public_key.curve.key_size + 7) // 8)) :]
        # SKI method 1 of RFC 5280 §4.2.1.2: SHA-1 of the subjectPublicKey BIT STRING's value.
        ski = _SKI_PREFIX + hashlib.sha1(point).digest()  # noqa: S324
        validity = _time(not_before) + _time(not_after)
        return tlv(
            SEQUENCE,
            self._head
            + _integer(serial_number)
            + _ECDSA_WITH_SHA256
            + self._issuer
            + header(SEQUENCE, len(validity))
            + validity
            + subject.public_bytes()
            + spki
            + self._extensions_headers
            + self._extensions_before_ski
            + ski
            + self._extensions_after_ski,
        )

    def sign(
        self,
        *,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        serial_number: int,
        not_before: dt.datetime,
        not_after: dt.datetime,
        csr_info: bytes | None = None,
    ) -> bytes:
        """Assemble and sign (ECDSA with SHA-256) the certificate; return its DER."""
        tbs = self.tbs_certificate(
            subject=subject,
            public_key=public_key,
            serial_number=serial_number,
            not_before=not_before,
            not_after=not_after,
            csr_info=csr_info,
        )
        signature = self._key.sign(tbs, _ECDSA_SHA256)
        return tlv(SEQUENCE, tbs + _ECDSA_WITH_SHA256 + tlv(BIT_STRING, b"\x00" + signature))
