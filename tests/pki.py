"""Test PKI material made with ``cryptography``: keys, CSRs and a CA."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bootstrap import builtin_ca

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def p256() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def csr_der(
    cn: str | None,
    key: object | None = None,
    *,
    extra_names: list[x509.NameAttribute] | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """A DER CSR with the given CN (``None`` for no CN), signed by ``key`` (P-256 by default)."""
    signing_key = key or p256()
    names = list(extra_names or [])
    if cn is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(
            signing_key,
            algorithm or hashes.SHA256(),  # type: ignore[arg-type]
        )
    )
    return csr.public_bytes(Encoding.DER)


def rsa_key() -> rsa.RSAPrivateKey:
    """A small RSA key (refused by the default policy)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ca_material() -> builtin_ca.CaMaterial:
    """A root + issuing CA like the built-in one."""
    return builtin_ca.generate(now=NOW, organization="Test", label="T", serials=(11, 12))


def leaf_certificate(ca: builtin_ca.CaMaterial, cn: str = "dev-1") -> x509.Certificate:
    """A device certificate signed by ``ca``'s issuing CA."""
    key = p256()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.issuing_certificate.subject)
        .public_key(key.public_key())
        .serial_number(77)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca.issuing_key, hashes.SHA256())
    )
