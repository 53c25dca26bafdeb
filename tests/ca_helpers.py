"""Shared helpers for CA backend tests: device keys and CSRs, SignRequests, small test PKIs, a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca_backends import SignRequest

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC, truncated to whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def name(
    cn: str | None = None,
    *,
    o: str | None = None,
    ou: Sequence[str] = (),
    c: str | None = None,
    st: str | None = None,
    l: str | None = None,  # noqa: E741  (X.500 short name)
) -> x509.Name:
    """An x509.Name from the usual short attribute names (C, ST, L, O, OU..., CN order)."""
    attrs: list[x509.NameAttribute[str]] = []
    if c:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
    if st:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
    if l:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, l))
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    attrs.extend(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, v) for v in ou)
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def device_csr(
    cn: str = "urn:dev:ops:acme-sensor-0001",
    *,
    subject: x509.Name | None = None,
    dns_sans: Sequence[str] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A P-256 device key and a CSR for it (subject CN=``cn`` unless ``subject`` is given)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or name(cn))
    if dns_sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_sans]), critical=False
        )
    return key, builder.sign(key, hashes.SHA256())


def sign_request(
    cn: str = "urn:dev:ops:acme-sensor-0001",
    *,
    subject: x509.Name | None = None,
    csr: x509.CertificateSigningRequest | None = None,
    validity: dt.timedelta = dt.timedelta(days=365),
    service: str = "LWM2M",
) -> SignRequest:
    """A policy-approved SignRequest, as the enrollment policy would build it.

    Subject defaults to ``O=Acme, OU=IoT, CN=<cn>``; the CSR to a fresh P-256 CSR with just the CN.
    """
    if csr is None:
        _, csr = device_csr(cn)
    start = utcnow()
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return SignRequest(
        csr=csr,
        public_key=key,
        subject=subject if subject is not None else name(cn, o="Acme", ou=["IoT"]),
        common_name=cn,
        not_before=start,
        not_after=start + validity,
        serial_number=secrets.randbits(159) | (1 << 64),
        service=service,
        request_id=secrets.token_hex(8),
    )


def pem(*certs: x509.Certificate) -> str:
    """Concatenated PEM of ``certs``."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def key_pem(key: PrivateKey, passphrase: str | None = None, *, traditional: bool = False) -> str:
    """PEM of a private key (PKCS#8, or the traditional OpenSSL format), optionally encrypted."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


@dataclass
class TestCa:
    """A CA certificate and key that can issue certificates (test PKI only)."""

    __test__ = False  # not a pytest test class

    key: PrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, cn: str, *, parent: TestCa | None = None, rsa_key: bool = False) -> TestCa:
        """A self-signed root, or an intermediate under ``parent``."""
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        subject = name(cn, o="Test PKI")
        issuer_name = parent.certificate.subject if parent else subject
        signing_key = parent.key if parent else key
        now = utcnow()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=3650))
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
        )
        if parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
            )
        return cls(key=key, certificate=builder.sign(signing_key, hashes.SHA256()))

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        subject: x509.Name,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        serial_number: int | None = None,
        server_hosts: Sequence[str] = (),
        client: bool = True,
    ) -> x509.Certificate:
        """An end-entity certificate (client auth, plus server auth and SANs if ``server_hosts``)."""
        now = utcnow()
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial_number or x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server_hosts:
            sans: list[x509.GeneralName] = []
            for host in server_hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    sans.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def client_identity(
    ca: TestCa, cn: str = "hvca-account", *, rsa_key: bool = True
) -> tuple[PrivateKey, x509.Certificate]:
    """A key and client-auth certificate issued by ``ca`` (an HVCA account's mTLS identity)."""
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    return key, ca.issue(key.public_key(), name(cn))


class FakeClock:
    """A manual :class:`ca_backends.http.Clock`: ``sleep`` advances time instantly."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        """The current fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` and yield to the loop once."""
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds
