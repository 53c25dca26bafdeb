"""Typed settings, validated once at start.

The CLI (and environment variables named in :data:`ENVIRONMENT`) fill a :class:`Settings`; nothing
below the CLI reads the environment. A wrong value raises :class:`~bootstrap.errors.ConfigError` with
one line for the operator.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from .errors import ConfigError

#: Environment variables the CLI reads, by setting (documented in the README).
ENVIRONMENT = {
    "data_dir": "LWM2M_BOOTSTRAP_DATA_DIR",
    "database_url": "DATABASE_URL",
    "master_key": "LWM2M_BOOTSTRAP_MASTER_KEY",
    "master_key_file": "LWM2M_BOOTSTRAP_MASTER_KEY_FILE",
    "coap": "LWM2M_BOOTSTRAP_COAP",
    "insecure_coap_enrollment": "LWM2M_BOOTSTRAP_INSECURE_COAP_ENROLLMENT",
    "coaps": "LWM2M_BOOTSTRAP_COAPS",
    "coaps_tcp": "LWM2M_BOOTSTRAP_COAPS_TCP",
    "server_names": "LWM2M_BOOTSTRAP_SERVER_NAMES",
    "tls_cert_file": "LWM2M_BOOTSTRAP_TLS_CERT_FILE",
    "tls_key_file": "LWM2M_BOOTSTRAP_TLS_KEY_FILE",
    "dtls_mtu": "LWM2M_BOOTSTRAP_DTLS_MTU",
    "dtls_idle_timeout": "LWM2M_BOOTSTRAP_DTLS_IDLE_TIMEOUT",
    "dtls_max_sessions": "LWM2M_BOOTSTRAP_DTLS_MAX_SESSIONS",
    "dtls_receive_buffer": "LWM2M_BOOTSTRAP_DTLS_RECEIVE_BUFFER",
    "workers": "LWM2M_BOOTSTRAP_WORKERS",
    "admin": "LWM2M_BOOTSTRAP_ADMIN",
    "admin_tls_cert_file": "LWM2M_BOOTSTRAP_ADMIN_TLS_CERT_FILE",
    "admin_tls_key_file": "LWM2M_BOOTSTRAP_ADMIN_TLS_KEY_FILE",
    "log_format": "LWM2M_BOOTSTRAP_LOG_FORMAT",
    "log_level": "LWM2M_BOOTSTRAP_LOG_LEVEL",
    "cert_validity_days": "LWM2M_BOOTSTRAP_CERT_VALIDITY_DAYS",
    "subject_organization": "LWM2M_BOOTSTRAP_SUBJECT_O",
    "subject_organizational_unit": "LWM2M_BOOTSTRAP_SUBJECT_OU",
    "max_pending_signatures": "LWM2M_BOOTSTRAP_MAX_PENDING_SIGNATURES",
}

DEFAULT_COAP_PORT = 5683
DEFAULT_COAPS_PORT = 5684
DEFAULT_ADMIN_PORT = 8080
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]+))?(?::(?P<port>\d+))?$")


def default_data_dir() -> Path:
    """Per-user data directory (``~/.local/share/lwm2m-bootstrap`` on Linux)."""
    return Path(platformdirs.user_data_dir("lwm2m-bootstrap"))


def parse_hostport(value: str, default_port: int, *, option: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[V6]:PORT``, ``HOST`` or ``:PORT`` into a bind address."""
    match = _HOSTPORT.match(value.strip())
    if not match or value.strip() == "":
        raise ConfigError(f"{option}: expected HOST:PORT, got {value!r}")
    host = match.group("v6") or match.group("host") or "127.0.0.1"
    port = int(match.group("port")) if match.group("port") else default_port
    if not 0 <= port <= 65535:
        raise ConfigError(f"{option}: port {port} is out of range 0-65535")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{option}: {host!r} is not an IPv6 address") from None
    return host, port


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server needs to start."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Holds the embedded Postgres cluster and the generated master key."""
    database_url: str | None = None
    """External Postgres (``postgresql://...``); ``None`` starts the embedded one in ``data_dir``."""
    master_key: str | None = None
    """Base64 of the 32-byte key that encrypts secrets at rest; overrides ``master_key_file``."""
    master_key_file: Path | None = None
    """File holding the master key; default ``data_dir/master.key`` (created with mode 0600)."""
    coap_bind: tuple[str, int] | None = ("127.0.0.1", DEFAULT_COAP_PORT)
    """Plain CoAP/UDP listener (development transport); ``None`` disables it."""
    coaps_bind: tuple[str, int] | None = ("0.0.0.0", DEFAULT_COAPS_PORT)  # noqa: S104 (a server's job)
    """DTLS 1.2 listener (certificate and PSK mode on one port); ``None`` disables it."""
    coaps_tcp_bind: tuple[str, int] | None = ("0.0.0.0", DEFAULT_COAPS_PORT)  # noqa: S104
    """CoAP over TLS (RFC 8323) listener with client certificates; ``None`` disables it."""
    server_names: tuple[str, ...] = ("localhost",)
    """DNS names / IP addresses in the server certificate the built-in CA issues (first = CN)."""
    tls_cert_file: Path | None = None
    """Use this PEM chain as the server certificate instead of issuing one."""
    tls_key_file: Path | None = None
    """Private key (PEM, EC) for ``tls_cert_file``."""
    dtls_mtu: int = 1280
    """Largest datagram the DTLS layer sends."""
    dtls_idle_timeout: float = 300.0
    """Seconds without traffic after which a DTLS session is closed."""
    dtls_max_sessions: int = 10_000
    """Concurrent DTLS sessions per process; beyond it the least recently active is evicted."""
    dtls_receive_buffer: int = 4 * 2**20
    """SO_RCVBUF of the DTLS socket in bytes (0: the system default); absorbs bursts and pauses."""
    insecure_coap_enrollment: bool = False
    """Allow EST enrollment and bootstrap over plain CoAP, trusting the CSR CN / ``ep``. Development only."""
    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise)."""
    log_level: str = "info"
    """Minimum level logged."""
    cert_validity_days: int = 365
    """Validity of issued device certificates."""
    subject_organization: str | None = None
    """O added to issued certificate subjects."""
    subject_organizational_unit: str | None = None
    """OU added to issued certificate subjects."""
    max_pending_signatures: int = 512
    """Signing requests in flight per process before devices get 5.03 with Max-Age."""
    retry_after_seconds: int = 5
    """Max-Age on 5.03 answers when saturated or a CA is unavailable."""
    admin_bind: tuple[str, int] | None = ("127.0.0.1", DEFAULT_ADMIN_PORT)
    """Admin API listener (HTTP, or HTTPS with the two files below); ``None`` disables it."""
    admin_tls_cert_file: Path | None = None
    """Certificate chain (PEM) for HTTPS on the admin port."""
    admin_tls_key_file: Path | None = None
    """Its private key (PEM)."""
    workers: int = 1
    """Server processes sharing the ports (SO_REUSEPORT); 1 runs in this process."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT (set for workers; the supervisor's children share the ports)."""
    metrics_dir: str | None = None
    """Directory where worker processes share Prometheus metrics (set by the supervisor)."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def key_file(self) -> Path:
        """Where the master key is read from (or created)."""
        return self.master_key_file or self.data_dir / "master.key"

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the first bad one."""
        if self.database_url is not None and not re.match(r"^postgres(ql)?://", self.database_url):
            raise ConfigError("database-url: must start with postgresql:// or postgres://")
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError(f"log-format: expected auto, json or console, got {self.log_format!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log-level: expected debug, info, warning or error, got {self.log_level!r}")
        if not 1 <= self.cert_validity_days <= 3650 * 3:
            raise ConfigError(f"cert-validity-days: {self.cert_validity_days} is outside 1-10950")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"workers: {self.workers} is outside 1-256")
        if self.max_pending_signatures < 1:
            raise ConfigError("max-pending-signatures: must be at least 1")
        if self.retry_after_seconds < 1:
            raise ConfigError("retry-after-seconds: must be at least 1")
        if (self.admin_tls_cert_file is None) != (self.admin_tls_key_file is None):
            raise ConfigError("admin-tls-cert-file and admin-tls-key-file go together")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("tls-cert-file and tls-key-file go together")
        if not self.server_names or any(not n or " " in n for n in self.server_names):
            raise ConfigError("server-names: give one or more comma-separated host names")
        if not 576 <= self.dtls_mtu <= 65507:
            raise ConfigError(f"dtls-mtu: {self.dtls_mtu} is outside 576-65507")
        if self.dtls_idle_timeout <= 0 or self.dtls_max_sessions < 1:
            raise ConfigError("dtls-idle-timeout and dtls-max-sessions must be positive")
        if self.dtls_receive_buffer != 0 and not 65_536 <= self.dtls_receive_buffer <= 2**30:
            raise ConfigError(
                f"dtls-receive-buffer: {self.dtls_receive_buffer} bytes is outside 65536-1073741824"
                " (0: the system default)"
            )
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(f"data-dir: {self.data_dir} exists and is not a directory")
