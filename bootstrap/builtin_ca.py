"""Making the built-in CA: a P-256 root and an issuing intermediate (pure; time and names are inputs).

The root signs only the intermediate (path length 0); device certificates are signed by the
intermediate. Keeping the root key separate lets an operator rotate the intermediate later while
devices keep trusting the same root.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT_VALIDITY = dt.timedelta(days=20 * 365)
ISSUING_VALIDITY = dt.timedelta(days=10 * 365)


@dataclass(frozen=True)
class CaMaterial:
    """A root, its issuing intermediate and both keys."""

    root_certificate: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    issuing_certificate: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Issuing CA first, then the root."""
        return (self.issuing_certificate, self.root_certificate)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate(*, now: dt.datetime, organization: str, label: str, serials: tuple[int, int]) -> CaMaterial:
    """Create a new root and issuing CA valid from ``now`` (minus an hour for clock skew).

    ``label`` distinguishes installations in the CA names; ``serials`` are random positive integers.
    """
    start = now - dt.timedelta(hours=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"LwM2M Bootstrap Root CA {label}", organization)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(serials[0])
        .not_valid_before(start)
        .not_valid_after(start + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    issuing, issuing_key = new_issuing_ca(
        root, root_key, now=now, organization=organization, label=label, serial=serials[1]
    )
    return CaMaterial(root, root_key, issuing, issuing_key)


def new_issuing_ca(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    *,
    now: dt.datetime,
    organization: str,
    label: str,
    serial: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An issuing intermediate (path length 0) under ``root``: the first one, or a rollover's."""
    start = now - dt.timedelta(hours=1)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = (
        x509.CertificateBuilder()
        .subject_name(_name(f"LwM2M Bootstrap Issuing CA {label}", organization))
        .issuer_name(root.subject)
        .public_key(issuing_key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(min(start + ISSUING_VALIDITY, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    return issuing, issuing_key


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM without encryption (it is sealed with the master key before it is stored)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
