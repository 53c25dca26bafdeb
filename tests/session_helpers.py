"""In-memory harness for bootstrap sessions: ``BootstrapSession`` against ``SimLwm2mClient``, no sockets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from bootstrap.bootstrap_plan import BootstrapConfig, DeviceCredentials, SecurityModeName
from bootstrap.lwm2m.session import BootstrapSession, Operation, request_version
from device_sim.lwm2m_client import Response, SimLwm2mClient

START = 1000.0
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@cache
def self_signed(cn: str) -> tuple[bytes, bytes]:
    """A self-signed P-256 certificate for ``cn`` and its PKCS#8 key, both DER (cached per name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return certificate.public_bytes(Encoding.DER), pkcs8


def config_for(mode: SecurityModeName, **overrides: object) -> BootstrapConfig:
    """A valid configuration for ``mode``, with fields overridden."""
    fields: dict[str, object] = {
        "server_uri": "coap://lwm2m.example:5683" if mode == "nosec" else "coaps://lwm2m.example:5684",
        "security_mode": mode,
        "short_server_id": 101,
        "lifetime": 3600,
    }
    if mode in ("est", "certificate"):
        fields["server_certificate_der"] = self_signed("lwm2m.example")[0]
    fields.update(overrides)
    return BootstrapConfig(**fields)  # type: ignore[arg-type]


def credentials_for(mode: SecurityModeName) -> DeviceCredentials | None:
    """Matching device credentials for ``mode`` (None for est and nosec)."""
    if mode == "certificate":
        cert, key = self_signed("dev-1")
        return DeviceCredentials(client_certificate_der=cert, private_key_der=key)
    if mode == "psk":
        return DeviceCredentials(psk_identity=b"dev-1", psk_key=bytes(range(16)))
    return None


@dataclass
class DevicePair:
    """A session and a simulated client joined by a fake link with a fake clock."""

    session: BootstrapSession
    client: SimLwm2mClient
    clock: float = START
    latency: float = 0.05
    sent: list[Operation] = field(default_factory=list)
    #: Canned answers by (method, path), instead of asking the client.
    overrides: dict[tuple[str, str], Response] = field(default_factory=dict)
    #: Operations for which no answer comes back.
    drop: Callable[[Operation], bool] = lambda op: False

    def run(self, max_steps: int = 200) -> None:
        """Exchange operations until the session ends, jumping the clock to timers when stuck."""
        for _ in range(max_steps):
            if self.session.outcome is not None:
                return
            op = self.session.next_operation(now=self.clock)
            if op is None:
                timer = self.session.get_timer()
                assert timer is not None
                self.clock = max(self.clock, timer)
                self.session.handle_timer(self.clock)
                continue
            self.sent.append(op)
            if self.drop(op):
                continue
            code, payload, fmt = self.overrides.get((op.method, op.path)) or self.client.handle(
                op.method, op.path, op.payload, op.content_format, op.accept
            )
            arrival = self.clock + self.latency
            timer = self.session.get_timer()
            if timer is not None and timer < arrival:  # the timer fires before the answer arrives
                self.clock = timer
                self.session.handle_timer(timer)
            self.clock = arrival
            self.session.handle_response(op.op_id, code, payload, fmt, self.clock)
        raise AssertionError("session did not end")

    def paths(self, method: str | None = None) -> list[str]:
        """Paths of the operations sent, optionally only those with ``method``."""
        return [op.path for op in self.sent if method is None or op.method == method]


def make_pair(
    mode: SecurityModeName = "est",
    *,
    pct: int | None = 112,
    client: SimLwm2mClient | None = None,
    config: BootstrapConfig | None = None,
    factory: Mapping[int, Mapping[int, Mapping[int, object]]] | None = None,
    **session_options: object,
) -> DevicePair:
    """A session for ``mode`` as ``POST /bs?pct=`` starts it, and a client (fresh 1.1 unless given)."""
    sim = client or SimLwm2mClient(factory=factory)  # type: ignore[arg-type]
    session = BootstrapSession(
        endpoint=sim.endpoint,
        lwm2m_version=request_version(pct),
        preferred_format=pct,
        config=config or config_for(mode),
        credentials=credentials_for(mode),
        now=START,
        **session_options,  # type: ignore[arg-type]
    )
    return DevicePair(session=session, client=sim)
