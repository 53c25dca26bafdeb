"""The server's own (D)TLS certificate: given as files, or issued by the built-in CA.

When issued, it is stored (key sealed) per set of host names and reused until it nears expiry, so
devices that pin it keep working across restarts. Clients such as Anjay with mbedTLS 2.28 do not
match IP addresses, so give at least one DNS name (``localhost`` by default).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .builtin_ca import key_pem
from .errors import ConfigError
from .secretbox import SecretBox
from .store import builtin_ca as builtin_store

#: Issued server certificates live this long; a new one is made when less than RENEW_BEFORE is left.
VALIDITY = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServerCredentials:
    """Certificate chain (server certificate first, then intermediates; the root stays out of the
    handshake) and private key for the server's handshakes."""

    chain: tuple[x509.Certificate, ...]
    private_key: ec.EllipticCurvePrivateKey


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue_server_certificate(
    names: tuple[str, ...],
    issuing_key: ec.EllipticCurvePrivateKey,
    issuing: x509.Certificate,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 server certificate for ``names`` (first one is the CN), serverAuth, from the issuing CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuing.subject)
        .public_key(key.public_key())
        .serial_number((int.from_bytes(os.urandom(16), "big") >> 1) | 1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
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
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False
        )
        .sign(issuing_key, hashes.SHA256())
    )
    return certificate, key


def load_files(cert_file: Path, key_file: Path) -> ServerCredentials:
    """Read a PEM chain (server certificate first) and its EC private key."""
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_file.read_bytes()))
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"server certificate/key files: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("server private key must be an EC key (LwM2M mandates ECDSA suites)")
    if chain[0].public_key() != key.public_key():
        raise ConfigError("server certificate does not match its private key")
    return ServerCredentials(chain, key)


async def stored_certificate(pool: asyncpg.Pool, names: tuple[str, ...]) -> bytes | None:
    """The DER of the server certificate stored for ``names`` (what a running ``serve`` presents
    unless it was given certificate files), or ``None`` if none was issued yet."""
    der: bytes | None = await pool.fetchval(
        "SELECT certificate FROM server_certificates WHERE hostname = $1", ",".join(names)
    )
    return der


async def ensure_issued(pool: asyncpg.Pool, box: SecretBox, names: tuple[str, ...]) -> ServerCredentials:
    """The stored server certificate for ``names``, or a new one from the built-in CA.

    Callers for the same names take turns (a transaction-scoped advisory lock): the workers of
    ``serve --workers N`` start together, and each issuing its own certificate would leave them
    presenting different ones, which devices that pin the certificate refuse.
    """
    label = ",".join(names)
    context = f"server_certificates:{label}:private_key"
    ca = await builtin_store.ensure(pool, box)
    issuing = ca.chain[0]
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", context)
        row = await connection.fetchrow(
            "SELECT certificate, private_key, not_after FROM server_certificates WHERE hostname = $1", label
        )
        if row is not None and row["not_after"] - now > RENEW_BEFORE:
            certificate = x509.load_der_x509_certificate(row["certificate"])
            if certificate.issuer == issuing.subject:
                key = serialization.load_pem_private_key(
                    box.open(row["private_key"], context=context), password=None
                )
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                return ServerCredentials((certificate, issuing), key)
        certificate, key = issue_server_certificate(names, ca.issuing_key, issuing, now)
        await connection.execute(
            """INSERT INTO server_certificates (hostname, certificate, private_key, not_after)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (hostname) DO UPDATE SET certificate = excluded.certificate,
                   private_key = excluded.private_key, not_after = excluded.not_after, created_at = now()""",
            label,
            certificate.public_bytes(serialization.Encoding.DER),
            box.seal(key_pem(key), context=context),
            certificate.not_valid_after_utc,
        )
    return ServerCredentials((certificate, issuing), key)
