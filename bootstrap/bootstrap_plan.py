"""What the bootstrap server writes for a device: the Security (/0) and Server (/1) instances.

Pure data and rules, no I/O. The adapter loads a :class:`BootstrapConfig` (the LwM2M server the
device is sent to), computes the per-device :class:`DeviceCredentials` that need randomness or
a CA (server-side key generation, PSK generation) *before* the session starts, and the
bootstrap session turns both into Bootstrap-Write payloads with :func:`plan_objects`.

Which resources a Security instance carries depends on the Security Mode (Transport TS,
"Bootstrapping", security-mode population rules; registry ``0.xml``):

=========== ============================= ====================== ==========================
mode        /3 Public Key or Identity     /4 Server Public Key   /5 Secret Key
=========== ============================= ====================== ==========================
0 PSK       PSK identity                  unused                 PSK
2 X.509     client certificate (DER)      server cert or anchor  RFC 5958 private key (DER)
3 NoSec     unused                        unused                 unused
4 EST       unused (the device enrolls)   server certificate     unused
=========== ============================= ====================== ==========================

Resources 0-5 are Mandatory in the Security object, so "unused" ones are written as empty
Opaque values, as Leshan's ``BootstrapUtil`` does; clients treat an empty value as absent.

With ``oscore`` (LwM2M 1.1, Transport TS "OSCORE"), the NoSec account's /0/x/17 (OSCORE Security
Mode) links an OSCORE object instance /21/y holding a per-device security context (RFC 8613 §3):
the connection to the LwM2M server is then protected by OSCORE instead of DTLS.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias, get_args
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_private_key

from .errors import BadRequest
from .lwm2m import (
    Instances,
    ObjectId,
    ObjLink,
    OscoreResource,
    ResourceValue,
    SecurityMode,
    SecurityResource,
    ServerResource,
)

__all__ = [
    "MODE_NUMBERS",
    "OSCORE_IID",
    "BootstrapConfig",
    "DeviceCredentials",
    "OscoreContext",
    "SecurityModeName",
    "choose_instance_ids",
    "plan_objects",
]

SecurityModeName: TypeAlias = Literal["est", "certificate", "psk", "nosec"]
"""Security modes a bootstrap configuration may give a device."""

#: Security Mode resource value (/0/x/2) per configured mode (registry ``0.xml``).
MODE_NUMBERS: Final[dict[SecurityModeName, SecurityMode]] = {
    "psk": SecurityMode.PSK,
    "certificate": SecurityMode.CERTIFICATE,
    "nosec": SecurityMode.NOSEC,
    "est": SecurityMode.EST,
}
_CERT_MODES: Final = frozenset({"est", "certificate"})
_SECURE_SCHEMES: Final = frozenset({"coaps", "coaps+tcp"})
_PLAIN_SCHEMES: Final = frozenset({"coap", "coap+tcp"})
_TCP_SCHEMES: Final = frozenset({"coap+tcp", "coaps+tcp"})
# Binding letters (Server object resource 7): U UDP, T TCP, S SMS, N Non-IP, Q queue mode (1.0).
_BINDING_RE: Final = re.compile(r"[UTSNQ]+")
_INT32_MAX: Final = 2**31 - 1
# Transport TS, PSK population rules: identity up to 128 bytes, key up to 64 bytes.
_PSK_IDENTITY_MAX: Final = 128
_PSK_KEY_MAX: Final = 64
#: Instance of the OSCORE object (/21) written for the server account; every /21 instance the
#: device had is deleted first (our bootstrap account is not an OSCORE one), so it is free.
OSCORE_IID: Final = 1


@dataclass(frozen=True, kw_only=True)
class BootstrapConfig:
    """The LwM2M server account a device is given during bootstrap.

    Call :meth:`validate` once when the configuration is stored or loaded.
    """

    server_uri: str
    """LwM2M Server URI (/0/x/0): ``coap://``, ``coaps://``, ``coap+tcp://`` or ``coaps+tcp://``."""
    security_mode: SecurityModeName
    """How the device secures the connection to that server."""
    short_server_id: int = 1
    """Short Server ID linking /0/x/10 and /1/x/0 (1..65534, Core TS "Short Server ID")."""
    lifetime: int = 86400
    """Registration lifetime in seconds (/1/x/1)."""
    binding: str = "U"
    """Binding (/1/x/7): transports the device may use, e.g. ``"U"`` or ``"T"``."""
    server_certificate_der: bytes | None = None
    """LwM2M server certificate or trust anchor (/0/x/4); required for ``est`` and ``certificate``."""
    certificate_usage: int | None = None
    """Certificate Usage (/0/x/15, 0..3); absent means 3 "domain-issued certificate"."""
    notification_storing: bool = True
    """Notification Storing When Disabled or Offline (/1/x/6, Mandatory in ``1.xml``)."""
    default_pmin: int | None = None
    """Default Minimum Period in seconds (/1/x/2), if set."""
    default_pmax: int | None = None
    """Default Maximum Period in seconds (/1/x/3), if set."""
    oscore: bool = False
    """Protect the LwM2M server connection with OSCORE: a per-device context in /21, linked from
    /0/x/17; only with security mode ``nosec`` (the URI is then ``coap://`` or ``coap+tcp://``)."""

    @property
    def security_label(self) -> str:
        """The security mode as bootstraps are recorded with it: ``nosec+oscore`` when OSCORE
        protects a nosec account, so a record does not read as an unprotected one."""
        return "nosec+oscore" if self.oscore else self.security_mode

    def validate(self) -> None:
        """Check the configuration for consistency.

        Raises:
            BadRequest: With ``field`` naming the offending attribute.
        """
        if self.security_mode not in get_args(SecurityModeName):
            raise BadRequest(
                f"unknown security mode {self.security_mode!r}; expected one of "
                + ", ".join(get_args(SecurityModeName)),
                field="security_mode",
            )
        scheme = self._check_uri()
        if self.security_mode == "nosec" and scheme in _SECURE_SCHEMES:
            raise BadRequest(f"security mode nosec cannot use a {scheme}:// URI", field="server_uri")
        if self.security_mode != "nosec" and scheme in _PLAIN_SCHEMES:
            raise BadRequest(
                f"security mode {self.security_mode} needs a coaps:// or coaps+tcp:// URI, got {scheme}://",
                field="server_uri",
            )
        if self.oscore and self.security_mode != "nosec":
            raise BadRequest(
                f"oscore protects a nosec account (coap://), not security mode {self.security_mode}",
                field="oscore",
            )
        if not 1 <= self.short_server_id <= 65534:
            raise BadRequest("short_server_id must be in 1..65534", field="short_server_id")
        if not 1 <= self.lifetime <= _INT32_MAX:
            raise BadRequest("lifetime must be a positive number of seconds", field="lifetime")
        self._check_binding(scheme)
        self._check_periods()
        self._check_server_certificate()

    def _check_uri(self) -> str:
        try:
            parts = urlsplit(self.server_uri)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise BadRequest(f"server_uri {self.server_uri!r} is not a URI", field="server_uri") from None
        scheme = parts.scheme.lower()
        if scheme not in _SECURE_SCHEMES | _PLAIN_SCHEMES:
            raise BadRequest(
                f"server_uri must use coap, coaps, coap+tcp or coaps+tcp, got {scheme or 'no scheme'}",
                field="server_uri",
            )
        if not parts.hostname:
            raise BadRequest("server_uri has no host", field="server_uri")
        return scheme

    def _check_binding(self, scheme: str) -> None:
        if not _BINDING_RE.fullmatch(self.binding) or len(set(self.binding)) != len(self.binding):
            raise BadRequest(
                f"binding {self.binding!r} must be distinct letters from U, T, S, N, Q", field="binding"
            )
        needed = "T" if scheme in _TCP_SCHEMES else "U"
        if needed not in self.binding:
            raise BadRequest(f"binding must include {needed} for a {scheme}:// URI", field="binding")

    def _check_periods(self) -> None:
        for name in ("default_pmin", "default_pmax"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= _INT32_MAX:
                raise BadRequest(f"{name} must be a non-negative number of seconds", field=name)
        if (
            self.default_pmin is not None
            and self.default_pmax is not None
            and self.default_pmax < self.default_pmin
        ):
            raise BadRequest("default_pmax must not be below default_pmin", field="default_pmax")

    def _check_server_certificate(self) -> None:
        if self.security_mode in _CERT_MODES:
            if not self.server_certificate_der:
                raise BadRequest(
                    f"security mode {self.security_mode} needs the LwM2M server certificate",
                    field="server_certificate_der",
                )
            _load_certificate(self.server_certificate_der, "server_certificate_der")
            if self.certificate_usage is not None and not 0 <= self.certificate_usage <= 3:
                raise BadRequest("certificate_usage must be in 0..3", field="certificate_usage")
            return
        # Transport TS, PSK mode: "/4 MUST NOT be used"; NoSec has no keys at all.
        if self.server_certificate_der:
            raise BadRequest(
                f"security mode {self.security_mode} takes no server certificate",
                field="server_certificate_der",
            )
        if self.certificate_usage is not None:
            raise BadRequest(
                f"certificate_usage applies only to certificate modes, not {self.security_mode}",
                field="certificate_usage",
            )


@dataclass(frozen=True, kw_only=True)
class OscoreContext:
    """A device's OSCORE security context (RFC 8613 §3.2), as written to /21 for its LwM2M server.

    IDs are the device's: its Sender ID is the ``kid`` by which the LwM2M server finds this
    context, its Recipient ID the server's Sender ID. With AES-CCM-16-64-128 (nonce of 13 bytes)
    an ID holds at most 7 bytes (RFC 8613 §3.3).
    """

    master_secret: bytes = field(repr=False)
    sender_id: bytes
    recipient_id: bytes
    master_salt: bytes = b""
    aead_algorithm: int = 10
    """COSE algorithm 10, AES-CCM-16-64-128: the mandatory one (RFC 8613 §3.2)."""
    hmac_algorithm: int = -10
    """COSE algorithm -10, HKDF SHA-256: the default (RFC 8613 §3.2)."""

    def check(self) -> None:
        """Check the context against RFC 8613 §3.3 (ID lengths, distinct IDs, a secret).

        Raises:
            BadRequest: With ``field`` naming what is wrong.
        """
        if len(self.master_secret) < 16:
            raise BadRequest("the OSCORE master secret must hold at least 16 bytes", field="oscore")
        if len(self.sender_id) > 7 or len(self.recipient_id) > 7:
            raise BadRequest("OSCORE sender and recipient IDs hold at most 7 bytes", field="oscore")
        if self.sender_id == self.recipient_id:
            raise BadRequest("OSCORE sender and recipient IDs must differ", field="oscore")


@dataclass(frozen=True, kw_only=True)
class DeviceCredentials:
    """Per-device secrets the adapter prepares before the session (keys need randomness or a CA).

    Use ``None`` instead of an instance for ``est`` (the device enrolls itself) and ``nosec``.
    Secrets are left out of ``repr`` so they do not end up in logs.
    """

    client_certificate_der: bytes | None = None
    """``certificate`` mode: the device's certificate (/0/x/3), DER."""
    private_key_der: bytes | None = field(default=None, repr=False)
    """``certificate`` mode: the device's private key (/0/x/5), RFC 5958 PKCS#8 DER."""
    psk_identity: bytes | None = None
    """``psk`` mode: the PSK identity (/0/x/3), up to 128 bytes."""
    psk_key: bytes | None = field(default=None, repr=False)
    """``psk`` mode: the pre-shared key (/0/x/5), up to 64 bytes."""
    oscore: OscoreContext | None = None
    """``nosec`` with ``oscore``: the device's OSCORE context (/21)."""

    def check(self, mode: SecurityModeName, *, oscore: bool = False) -> None:
        """Check that this holds exactly the material ``mode`` (and ``oscore``) needs.

        Args:
            mode: The configured security mode.
            oscore: Whether the configuration asks for OSCORE.

        Raises:
            BadRequest: With ``field`` naming what is missing, superfluous or malformed.
        """
        if oscore:
            self._only(set(), mode)
            if self.oscore is None:
                raise BadRequest("oscore needs the device's OSCORE context", field="oscore")
            self.oscore.check()
            return
        if self.oscore is not None:
            raise BadRequest("the configuration does not ask for oscore", field="oscore")
        if mode == "certificate":
            self._only({"client_certificate_der", "private_key_der"}, mode)
            assert self.client_certificate_der is not None and self.private_key_der is not None
            _check_key_pair(self.client_certificate_der, self.private_key_der)
        elif mode == "psk":
            self._only({"psk_identity", "psk_key"}, mode)
            assert self.psk_identity is not None and self.psk_key is not None
            if len(self.psk_identity) > _PSK_IDENTITY_MAX:
                raise BadRequest("psk_identity is longer than 128 bytes", field="psk_identity")
            if len(self.psk_key) > _PSK_KEY_MAX:
                raise BadRequest("psk_key is longer than 64 bytes", field="psk_key")
        else:
            raise BadRequest(f"security mode {mode} takes no device credentials", field="credentials")

    def _only(self, wanted: set[str], mode: str) -> None:
        for name in ("client_certificate_der", "private_key_der", "psk_identity", "psk_key"):
            present = bool(getattr(self, name))
            if name in wanted and not present:
                raise BadRequest(f"security mode {mode} needs {name}", field=name)
            if name not in wanted and present:
                raise BadRequest(f"security mode {mode} takes no {name}", field=name)


def _load_certificate(der: bytes, name: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise BadRequest(f"{name} is not a DER X.509 certificate", field=name) from None


def _check_key_pair(certificate_der: bytes, key_der: bytes) -> None:
    certificate = _load_certificate(certificate_der, "client_certificate_der")
    if not _is_pkcs8(key_der):
        raise BadRequest("private_key_der must be RFC 5958 (PKCS#8) DER", field="private_key_der")
    try:
        key = load_der_private_key(key_der, password=None)
    except (ValueError, TypeError):
        raise BadRequest(
            "private_key_der does not load as an unencrypted key", field="private_key_der"
        ) from None
    if key.public_key() != certificate.public_key():
        raise BadRequest("private_key_der does not match client_certificate_der", field="private_key_der")


def _der_header(data: bytes, offset: int) -> tuple[int, int, int]:
    """Tag, content offset and content length of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated")
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or offset + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return tag, offset, length


def _is_pkcs8(der: bytes) -> bool:
    # RFC 5958 OneAsymmetricKey ::= SEQUENCE { version INTEGER, privateKeyAlgorithm SEQUENCE, ... };
    # SEC1 ECPrivateKey and PKCS#1 RSAPrivateKey follow the version with an OCTET STRING / INTEGER.
    try:
        tag, body, _ = _der_header(der, 0)
        if tag != 0x30:
            return False
        tag, content, length = _der_header(der, body)
        if tag != 0x02:
            return False
        tag, _, _ = _der_header(der, content + length)
    except ValueError:
        return False
    return tag == 0x30


def choose_instance_ids(spared_security_iids: Collection[int] = ()) -> tuple[int, int]:
    """Pick the Security and Server instance IDs to write.

    The Security instance must not land on the Bootstrap-Server account: a Bootstrap-Write is
    applied "regardless of an existence of the targeting Object Instance(s)" (Transport TS,
    Bootstrap Interface) and would overwrite it. Server instances are all deleted first, so
    any ID is free there.

    Args:
        spared_security_iids: /0 instances that stay (the bootstrap account), when known.

    Returns:
        ``(security_iid, server_iid)``: the lowest ID from 1 not spared, and 1.
    """
    security_iid = 1
    while security_iid in spared_security_iids:
        security_iid += 1
    return security_iid, 1


def plan_objects(
    config: BootstrapConfig,
    credentials: DeviceCredentials | None,
    *,
    security_iid: int,
    server_iid: int,
    lwm2m_version: str | None = None,
) -> dict[int, Instances]:
    """Build the Security and Server instances for one device.

    Args:
        config: The server account configuration.
        credentials: Per-device material for ``certificate`` and ``psk``; None otherwise.
        security_iid: Instance ID for the Security object (see :func:`choose_instance_ids`).
        server_iid: Instance ID for the Server object.
        lwm2m_version: The client's LwM2M version, if known. For "1.0" clients Certificate
            Usage (/0/x/15, added in 1.1) is left out and EST mode is refused.

    Returns:
        ``{0: {security_iid: instance}, 1: {server_iid: instance}}``, and ``21: {1: instance}``
        with ``oscore``.

    Raises:
        BadRequest: If the configuration or the credentials are invalid or do not fit the client.
    """
    config.validate()
    mode = config.security_mode
    if mode in ("certificate", "psk") or config.oscore:
        if credentials is None:
            raise BadRequest(f"security mode {mode} needs device credentials", field="credentials")
        credentials.check(mode, oscore=config.oscore)
    elif credentials is not None:
        credentials.check(mode)  # raises: est and nosec take none
    legacy = lwm2m_version is not None and lwm2m_version.strip().strip('"').startswith("1.0")
    if legacy and mode == "est":
        # Security Mode 4 and EST arrived with LwM2M 1.1 (Anjay: EST "requires at least 1.1").
        raise BadRequest("security mode est needs an LwM2M 1.1 or later client", field="security_mode")
    if legacy and config.oscore:
        # The OSCORE object and /0/x/17 arrived with LwM2M 1.1.
        raise BadRequest("oscore needs an LwM2M 1.1 or later client", field="oscore")

    sec = SecurityResource
    security: dict[int, ResourceValue] = {
        sec.SERVER_URI: config.server_uri,
        sec.BOOTSTRAP_SERVER: False,
        sec.SECURITY_MODE: int(MODE_NUMBERS[mode]),
        sec.PUBLIC_KEY_OR_IDENTITY: b"",
        sec.SERVER_PUBLIC_KEY: b"",
        sec.SECRET_KEY: b"",
        sec.SHORT_SERVER_ID: config.short_server_id,
    }
    if credentials is not None:  # checked above: psk or certificate, with its material
        if mode == "psk":
            security[sec.PUBLIC_KEY_OR_IDENTITY] = credentials.psk_identity or b""
            security[sec.SECRET_KEY] = credentials.psk_key or b""
        else:
            security[sec.PUBLIC_KEY_OR_IDENTITY] = credentials.client_certificate_der or b""
            security[sec.SECRET_KEY] = credentials.private_key_der or b""
    if mode in _CERT_MODES:
        security[sec.SERVER_PUBLIC_KEY] = config.server_certificate_der or b""
        if config.certificate_usage is not None and not legacy:
            security[sec.CERTIFICATE_USAGE] = config.certificate_usage
    objects: dict[int, Instances] = {}
    if config.oscore:
        context = credentials.oscore if credentials is not None else None
        assert context is not None  # checked above
        security[sec.OSCORE_SECURITY_MODE] = ObjLink(int(ObjectId.OSCORE), OSCORE_IID)
        osc = OscoreResource
        oscore: dict[int, ResourceValue] = {
            osc.MASTER_SECRET: context.master_secret,
            osc.SENDER_ID: context.sender_id,
            osc.RECIPIENT_ID: context.recipient_id,
            osc.AEAD_ALGORITHM: context.aead_algorithm,
            osc.HMAC_ALGORITHM: context.hmac_algorithm,
            osc.MASTER_SALT: context.master_salt,
        }
        objects[int(ObjectId.OSCORE)] = {OSCORE_IID: _plain(oscore)}

    srv = ServerResource
    server: dict[int, ResourceValue] = {
        srv.SHORT_SERVER_ID: config.short_server_id,
        srv.LIFETIME: config.lifetime,
        srv.NOTIFICATION_STORING: config.notification_storing,
        srv.BINDING: config.binding,
    }
    if config.default_pmin is not None:
        server[srv.DEFAULT_PMIN] = config.default_pmin
    if config.default_pmax is not None:
        server[srv.DEFAULT_PMAX] = config.default_pmax
    objects[int(ObjectId.SECURITY)] = {security_iid: _plain(security)}
    objects[int(ObjectId.SERVER)] = {server_iid: _plain(server)}
    return objects


def _plain(resources: dict[int, ResourceValue]) -> dict[int, ResourceValue]:
    # IntEnum keys become plain ints, in resource order (stable payloads, readable logs).
    return {int(rid): resources[rid] for rid in sorted(resources)}
