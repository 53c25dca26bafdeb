"""Test PKI and trust sources for the DTLS tests (generated with ``cryptography``, in memory)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate, its key and the chain above it (without the root)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def write_pem(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.crt`` (leaf + chain) and ``stem.key``; return their paths."""
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *self.chain))
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, *, parent: Issued | None = None) -> Issued:
    """A P-256 CA (self-signed root, or an intermediate under ``parent``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = parent.certificate.subject if parent else _name(cn)
    signer = parent.key if parent else key
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    chain: tuple[x509.Certificate, ...] = ()
    if parent is not None and parent.certificate.issuer != parent.certificate.subject:
        chain = (parent.certificate, *parent.chain)
    return Issued(cert, key, chain)


def issue(
    ca: Issued,
    cn: str,
    *,
    server: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    with_cn: bool = True,
) -> Issued:
    """An end-entity P-256 certificate for a device (client) or the server."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn) if with_cn else x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca.key, hashes.SHA256())
    chain = ca.chain if ca.certificate.issuer == ca.certificate.subject else (ca.certificate, *ca.chain)
    return Issued(cert, key, chain)


@dataclass
class StaticTrust:
    """An in-memory :class:`bootstrap.coap.dtls.TrustSource`."""

    cas: tuple[x509.Certificate, ...] = ()
    psks: dict[bytes, bytes] = field(default_factory=dict)
    version: int = 0

    def trusted_cas(self) -> Sequence[x509.Certificate]:
        return self.cas

    def psk_for_identity(self, identity: bytes) -> bytes | None:
        return self.psks.get(identity)


@dataclass(frozen=True)
class DtlsPki:
    """Everything the DTLS tests need: server credentials and device certificates."""

    server_ca: Issued
    server: Issued
    device_ca: Issued
    device: Issued
    device_intermediate: Issued
    device_via_intermediate: Issued
    rogue_ca: Issued
    rogue_device: Issued
    expired_device: Issued
    future_device: Issued
    no_cn_device: Issued


def make_test_pki() -> DtlsPki:
    """Generate a fresh set of CAs and certificates (takes a few milliseconds)."""
    server_ca = make_ca("Test Server CA")
    device_ca = make_ca("Test Device Factory CA")
    intermediate = make_ca("Test Device Intermediate CA", parent=device_ca)
    rogue_ca = make_ca("Rogue CA")
    return DtlsPki(
        server_ca=server_ca,
        server=issue(server_ca, "localhost", server=True),
        device_ca=device_ca,
        device=issue(device_ca, "urn:dev:ops:good-device"),
        device_intermediate=intermediate,
        device_via_intermediate=issue(intermediate, "urn:dev:ops:chained-device"),
        rogue_ca=rogue_ca,
        rogue_device=issue(rogue_ca, "urn:dev:ops:rogue-device"),
        expired_device=issue(
            device_ca,
            "urn:dev:ops:expired-device",
            not_before=NOW - dt.timedelta(days=30),
            not_after=NOW - dt.timedelta(days=1),
        ),
        future_device=issue(
            device_ca,
            "urn:dev:ops:future-device",
            not_before=NOW + dt.timedelta(days=1),
            not_after=NOW + dt.timedelta(days=30),
        ),
        no_cn_device=issue(device_ca, "no-cn-org", with_cn=False),
    )
