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
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_CACHE_FILE = "device-certificates.bin"
#: The certificate cache stops growing here (about 600 bytes a device: a million devices).
CERT_CACHE_LIMIT = 600 * 1_000_000
CA_CERT_FILE = "manufacturer-ca.pem"
CA_KEY_FILE = "manufacturer-ca.key"
SEED_FILE = "psk-seed"
TRUST_NAME = "device-sim manufacturer CA"


class CertificateCache:
    """Device certificates issued earlier, on disk: a fleet's devices get the same factory
    certificate run after run instead of costing a signature each.

    One append-only file of records ``key (16) | length (4) | DER``, where ``key`` is a SHA-256 of
    the endpoint name and the public key, so a device whose key changed gets a new certificate.
    Each record is one ``write`` on an ``O_APPEND`` descriptor, so simulator processes sharing the
    directory append without mixing their records; a torn last record (a process killed mid-write)
    is cut off when the file is next read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[bytes, bytes] | None = None
        self._size = 0

    @staticmethod
    def key(endpoint: str, public_key: ec.EllipticCurvePublicKey) -> bytes:
        """The lookup key of a device."""
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(endpoint.encode() + b"\x00" + spki).digest()[:16]

    def _load(self) -> dict[bytes, bytes]:
        if self._entries is None:
            self._entries = {}
            data = self.path.read_bytes() if self.path.exists() else b""
            self._size = len(data)
            position = 0
            while position + 20 <= len(data):
                size = int.from_bytes(data[position + 16 : position + 20], "big")
                if position + 20 + size > len(data):
                    break
                self._entries[data[position : position + 16]] = data[position + 20 : position + 20 + size]
                position += 20 + size
            if position < len(data):  # a torn record: cut it off so later appends stay readable
                os.truncate(self.path, position)
                self._size = position
        return self._entries

    def get(self, key: bytes) -> x509.Certificate | None:
        """The certificate cached under ``key``, if any."""
        der = self._load().get(key)
        return None if der is None else x509.load_der_x509_certificate(der)

    def put(self, key: bytes, certificate: x509.Certificate) -> None:
        """Remember ``certificate`` (in memory, and on disk while the file is under its limit)."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        self._load()[key] = der
        if self._size >= CERT_CACHE_LIMIT:
            return
        record = key + len(der).to_bytes(4, "big") + der
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
        self._size += len(record)


@dataclass(frozen=True)
class FactoryCa:
    """The simulator's manufacturer CA."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    psk_seed: bytes
    certificates: CertificateCache | None = field(default=None, compare=False, repr=False)
    """Device certificates issued in earlier runs (``None``: issue every time)."""

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
            return cls(
                x509.load_pem_x509_certificate(cert_path.read_bytes()),
                key,
                seed_path.read_bytes(),
                CertificateCache(directory / CERT_CACHE_FILE),
            )
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
        return cls(certificate, key, seed_path.read_bytes(), CertificateCache(directory / CERT_CACHE_FILE))

    def device_certificate(
        self, endpoint: str, public_key: ec.EllipticCurvePublicKey, *, not_after: dt.datetime | None = None
    ) -> x509.Certificate:
        """A factory (bootstrap) certificate for ``endpoint``: CN = endpoint, clientAuth; the one
        issued in an earlier run when the cache has it (and no special ``not_after`` is asked for)."""
        cache = self.certificates if not_after is None else None
        key = CertificateCache.key(endpoint, public_key) if cache is not None else b""
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return cached
        certificate = self._issue(endpoint, public_key, not_after)
        if cache is not None:
            cache.put(key, certificate)
        return certificate

    def _issue(
        self, endpoint: str, public_key: ec.EllipticCurvePublicKey, not_after: dt.datetime | None
    ) -> x509.Certificate:
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
