"""Factory credentials for simulated devices: a test manufacturer CA and per-device PSKs.

Real devices leave the factory with a bootstrap certificate from their manufacturer's CA (or a PSK).
The simulator plays the manufacturer: it keeps a test CA in a directory (created once, reused), issues
each device a certificate with CN = endpoint name, derives PSKs from a seed, and registers the CA
(and the PSKs) with the bootstrap server's database, as an operator would with
``lwm2m-bootstrap trust add`` and ``device add``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "manufacturer-ca.pem"
CA_KEY_FILE = "manufacturer-ca.key"
SEED_FILE = "psk-seed"
TRUST_NAME = "device-sim manufacturer CA"


@dataclass(frozen=True)
class FactoryCa:
    """The simulator's manufacturer CA."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    psk_seed: bytes

    @classmethod
    def load_or_create(cls, directory: Path) -> FactoryCa:
        """Read the CA from ``directory``, creating it (key file mode 0600) the first time."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path, seed_path = (
            directory / CA_CERT_FILE,
            directory / CA_KEY_FILE,
            directory / SEED_FILE,
        )
        if cert_path.exists() and key_path.exists() and seed_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key, seed_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "device-sim test manufacturer"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"device-sim manufacturer CA {os.urandom(3).hex()}"),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number((int.from_bytes(os.urandom(16), "big") >> 1) | 1)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        for path, data in (
            (
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (seed_path, os.urandom(32)),
            (cert_path, certificate.public_bytes(serialization.Encoding.PEM)),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return cls(certificate, key, seed_path.read_bytes())

    def device_certificate(
        self, endpoint: str, public_key: ec.EllipticCurvePublicKey, *, not_after: dt.datetime | None = None
    ) -> x509.Certificate:
        """A factory (bootstrap) certificate for ``endpoint``: CN = endpoint, clientAuth."""
        now = dt.datetime.now(dt.UTC)
        end = not_after or now + dt.timedelta(days=3650)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, endpoint)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number((int.from_bytes(os.urandom(16), "big") >> 1) | 1)
            .not_valid_before(min(now - dt.timedelta(hours=1), end - dt.timedelta(days=30)))
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def psk(self, endpoint: str) -> tuple[str, bytes]:
        """The PSK identity and 16-byte key of ``endpoint`` (derived, so nothing per device is stored)."""
        key = hmac.new(self.psk_seed, endpoint.encode(), hashlib.sha256).digest()[:16]
        return f"psk-{endpoint}", key


async def register(
    factory: FactoryCa,
    *,
    database_url: str | None,
    data_dir: Path,
    psk_endpoints: list[str] | None = None,
    master_key_file: Path | None = None,
) -> None:
    """Register the manufacturer CA as trusted for bootstrap and, for PSK runs, each device's PSK.

    Uses the server's own storage code on the same database (embedded in ``data_dir`` or at
    ``database_url``); running servers pick the changes up through NOTIFY.
    """
    from bootstrap.errors import Conflict
    from bootstrap.secretbox import SecretBox, load_master_key
    from bootstrap.store import devices, trust
    from bootstrap.store.database import Database

    database = await Database.open(database_url=database_url, data_dir=data_dir, min_size=1, max_size=4)
    try:
        pem = factory.certificate.public_bytes(serialization.Encoding.PEM).decode()
        fingerprint = hashlib.sha256(factory.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
        known = await database.pool.fetchval(
            "SELECT 1 FROM trusted_certificates WHERE service = 'bootstrap' AND fingerprint_sha256 = $1",
            fingerprint,
        )
        if not known:
            try:
                await trust.add(
                    database.pool,
                    name=f"{TRUST_NAME} {fingerprint[:8]}",
                    service="bootstrap",
                    certificate_pem=pem,
                    description="test manufacturer CA of the device simulator",
                )
            except Conflict:
                pass  # registered concurrently
        if psk_endpoints:
            key = load_master_key(
                os.environ.get("LWM2M_BOOTSTRAP_MASTER_KEY"),
                master_key_file or data_dir / "master.key",
                create=True,
            )
            box = SecretBox(key)
            for endpoint in psk_endpoints:
                identity, secret = factory.psk(endpoint)
                await devices.put(database.pool, box, devices.PskCredential(endpoint, identity, secret))
    finally:
        await database.close()
