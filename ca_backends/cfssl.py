"""``CFSSL_AUTH``: CloudFlare CFSSL's ``authsign`` endpoint, authenticated with a shared HMAC key.

Request shape (CFSSL ``auth/auth.go``, ``api/signhandler``): the inner sign request is serialised
once; its exact bytes are HMAC-SHA-256'd with the hex-decoded key and both travel base64-encoded in
the envelope ``{"token", "request", "timestamp"}``. CFSSL answers verification failures with
HTTP 400 ``invalid token``.

CFSSL picks the validity (profile ``expiry``) and, unless the profile lets clients choose, the
serial; :class:`~ca_backends.base.SignRequest` ``not_before``/``not_after`` are therefore not sent.
Two CFSSL behaviours matter for policy and are handled here:

* CFSSL fills every subject attribute the request leaves empty from the CSR, and copies the CSR's
  SANs unless ``hosts`` is given. We send ``"hosts": []`` (no SANs) and check that every approved
  subject attribute (the CN above all) is in the issued subject with its approved value. Extra
  attributes CFSSL copied from the device's own CSR are accepted and logged: the certificate has
  already been issued by then, and discarding it would leave an issued certificate unaudited.
* Unknown profile names silently fall back to ``default`` (Debian's 2016 build and HEAD alike). When
  ``default`` has no ``auth_key`` this surfaces as 400 ``no authentication provider`` and is
  reported as :class:`BackendMisconfigured` naming the profile; when it has one, CFSSL signs with
  the default profile and nothing on the wire reveals it.

``authsign`` issues a certificate, so it is never repeated once the request may have reached the
server; only a connection that could not be opened is retried. ``info`` (the CA certificate) is
idempotent, retried, and cached after the first success.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from yarl import URL

from .base import CaBackend, IssuerConfig, SignRequest, SignResult
from .chains import issued_by_chain
from .errors import BackendMisconfigured, BackendRejected, BackendUnavailable, InvalidIssuerConfig
from .http import Clock, HttpClient, HttpPolicy, HttpResponse, redact_url
from .registry import register

__all__ = ["CfsslBackend", "CfsslSettings"]

_ATTRIBUTES = frozenset({"host_url", "cfssl_profile", "cfssl_label", "ca_bundle_pem"})
_CREDENTIALS = frozenset({"hmac_hex_key"})
#: Pelion's pattern for ``CfsslAuthCredentials.hmac_hex_key``: 1 to 32 bytes, hex-encoded.
_HMAC_HEX = re.compile(r"([a-fA-F0-9][a-fA-F0-9]){1,32}")
_MAX_TEXT = 300

# Subject attributes CFSSL's ``signer.Subject`` can carry (``names[]`` entries, CN, SerialNumber).
_NAME_KEYS: tuple[tuple[x509.ObjectIdentifier, str], ...] = (
    (NameOID.COUNTRY_NAME, "C"),
    (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
    (NameOID.LOCALITY_NAME, "L"),
    (NameOID.ORGANIZATION_NAME, "O"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
)
_TOP_KEYS = {NameOID.COMMON_NAME: "CN", NameOID.SERIAL_NUMBER: "SerialNumber"}


@dataclass(frozen=True, kw_only=True)
class CfsslSettings:
    """A validated ``CFSSL_AUTH`` issuer configuration."""

    host_url: URL
    """Base URL of the CFSSL API server (no trailing slash)."""
    profile: str | None = None
    label: str | None = None
    ca_bundle_pem: str | None = None
    """Extra trust anchors for an ``https`` host_url served with a private CA."""
    hmac_key: bytes = field(repr=False)

    @property
    def authsign_url(self) -> URL:
        """``{host_url}/api/v1/cfssl/authsign``."""
        return _join(self.host_url, "authsign")

    @property
    def info_url(self) -> URL:
        """``{host_url}/api/v1/cfssl/info``."""
        return _join(self.host_url, "info")


def _join(base: URL, endpoint: str) -> URL:
    return base.with_path(base.path.rstrip("/") + "/api/v1/cfssl/" + endpoint)


def _check_unknown(prefix: str, given: Mapping[str, str], known: frozenset[str]) -> None:
    for name in sorted(given):
        if name not in known:
            raise InvalidIssuerConfig(
                f"{prefix}.{name}", f"unknown field; expected one of {', '.join(sorted(known))}"
            )


def _parse_hmac_key(credentials: Mapping[str, str]) -> bytes:
    fname = "issuer_credentials.hmac_hex_key"
    value = credentials.get("hmac_hex_key")
    if not value:
        raise InvalidIssuerConfig(fname, "required")
    # Reasons never echo the value: it is the shared secret.
    if any(c not in "0123456789abcdefABCDEF" for c in value):
        raise InvalidIssuerConfig(fname, "must contain only hexadecimal digits (0-9, a-f)")
    if len(value) % 2:
        raise InvalidIssuerConfig(fname, "must have an even number of hex digits (whole bytes)")
    if len(value) > 64:
        raise InvalidIssuerConfig(fname, "must be at most 32 bytes (64 hex digits)")
    if not _HMAC_HEX.fullmatch(value):  # belt and braces: the documented pattern
        raise InvalidIssuerConfig(fname, "must match ^([a-fA-F0-9][a-fA-F0-9]){1,32}$")
    return bytes.fromhex(value)


def _parse_host_url(attributes: Mapping[str, str]) -> URL:
    fname = "issuer_attributes.host_url"
    raw = attributes.get("host_url", "").strip()
    if not raw:
        raise InvalidIssuerConfig(fname, "required")
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        raise InvalidIssuerConfig(fname, "not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidIssuerConfig(fname, "must be an absolute http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise InvalidIssuerConfig(fname, "must not contain user info; secrets belong in issuer_credentials")
    if url.query_string or url.fragment:
        raise InvalidIssuerConfig(fname, "must not contain a query or fragment")
    try:
        _ = url.port
    except ValueError:
        raise InvalidIssuerConfig(fname, "invalid port") from None
    return url.with_path(url.path.rstrip("/") or "/")


def _parse_bundle(attributes: Mapping[str, str], fname: str) -> str | None:
    pem = attributes.get("ca_bundle_pem") or None
    if pem is None:
        return None
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise InvalidIssuerConfig(fname, "not a PEM certificate bundle") from None
    return pem


def parse_settings(attributes: Mapping[str, str], credentials: Mapping[str, str]) -> CfsslSettings:
    """Validate and normalise a ``CFSSL_AUTH`` configuration (raises :class:`InvalidIssuerConfig`)."""
    _check_unknown("issuer_attributes", attributes, _ATTRIBUTES)
    _check_unknown("issuer_credentials", credentials, _CREDENTIALS)
    host_url = _parse_host_url(attributes)
    bundle = _parse_bundle(attributes, "issuer_attributes.ca_bundle_pem")
    if bundle is not None and host_url.scheme != "https":
        raise InvalidIssuerConfig("issuer_attributes.ca_bundle_pem", "only meaningful with an https host_url")
    return CfsslSettings(
        host_url=host_url,
        profile=attributes.get("cfssl_profile") or None,
        label=attributes.get("cfssl_label") or None,
        ca_bundle_pem=bundle,
        hmac_key=_parse_hmac_key(credentials),
    )


def cfssl_subject(subject: x509.Name) -> dict[str, Any]:
    """Translate an approved subject into CFSSL's ``signer.Subject`` JSON.

    Raises :class:`BackendMisconfigured` for attributes CFSSL's API cannot carry (the policy's
    subject template and this issuer do not fit together).
    """
    top: dict[str, str] = {}
    values: dict[x509.ObjectIdentifier, list[str]] = {oid: [] for oid, _ in _NAME_KEYS}
    for attr in subject:
        value = attr.value if isinstance(attr.value, str) else attr.value.decode()
        if attr.oid in _TOP_KEYS:
            key = _TOP_KEYS[attr.oid]
            if key in top:
                raise BackendMisconfigured(
                    f"CFSSL subjects carry one {key}; the approved subject has several"
                )
            top[key] = value
        elif attr.oid in values:
            values[attr.oid].append(value)
        else:
            name = attr.oid._name if attr.oid._name != "Unknown OID" else attr.oid.dotted_string
            raise BackendMisconfigured(f"CFSSL's sign API cannot set subject attribute {name}")
    out: dict[str, Any] = dict(top)
    names: list[dict[str, str]] = []
    for oid, key in _NAME_KEYS:
        for i, value in enumerate(values[oid]):
            while len(names) <= i:
                names.append({})
            names[i][key] = value
    if names:
        out["names"] = names
    return out


def _attribute_bag(name: x509.Name) -> Counter[tuple[str, str]]:
    bag: Counter[tuple[str, str]] = Counter()
    for attr in name:
        value = attr.value if isinstance(attr.value, str) else attr.value.decode()
        bag[(attr.oid.dotted_string, value)] += 1
    return bag


def _short(dotted: str) -> str:
    oid = x509.ObjectIdentifier(dotted)
    return dict(_NAME_KEYS).get(oid) or {NameOID.COMMON_NAME: "CN"}.get(oid) or oid._name


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _first_error(response: HttpResponse) -> tuple[int | None, str]:
    """CFSSL's ``errors[0]`` (code, message); its error bodies are JSON sent as text/plain."""
    doc = response.json()
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            message = errors[0].get("message")
            return (code if isinstance(code, int) else None, _truncate(str(message or "")))
    return None, _truncate(response.body.decode("utf-8", "replace"))


@register
class CfsslBackend(CaBackend):
    """Signs through a CFSSL API server's ``/api/v1/cfssl/authsign``."""

    issuer_type: ClassVar[str] = "CFSSL_AUTH"

    def __init__(
        self,
        settings: CfsslSettings,
        *,
        issuer_name: str,
        policy: HttpPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        ssl_context: ssl.SSLContext | None = None
        if settings.ca_bundle_pem is not None:
            ssl_context = ssl.create_default_context()
            ssl_context.load_verify_locations(cadata=settings.ca_bundle_pem)
        self.http = HttpClient(issuer=issuer_name, policy=policy, ssl_context=ssl_context, clock=clock)
        self._log = structlog.get_logger(__name__).bind(issuer=issuer_name, issuer_type=self.issuer_type)
        self._chain: tuple[x509.Certificate, ...] | None = None
        self._chain_lock = asyncio.Lock()

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Check ``host_url``, the optional profile/label/bundle, and ``hmac_hex_key``'s format."""
        parse_settings(attributes, credentials)

    @classmethod
    def from_config(
        cls, config: IssuerConfig, *, policy: HttpPolicy | None = None, clock: Clock | None = None
    ) -> CfsslBackend:
        """Validate and build; ``policy`` and ``clock`` override the HTTP defaults (tests, tuning)."""
        return cls(
            parse_settings(config.attributes, config.credentials),
            issuer_name=config.name,
            policy=policy,
            clock=clock,
        )

    # -- CA chain ------------------------------------------------------------------------------

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """The signing CA as reported by ``/api/v1/cfssl/info`` (fetched once, then cached)."""
        return await self._get_chain(refresh=False)

    async def _get_chain(self, *, refresh: bool) -> tuple[x509.Certificate, ...]:
        stale = self._chain
        if stale is not None and not refresh:
            return stale
        async with self._chain_lock:
            if self._chain is not None and self._chain is not stale:
                return self._chain  # another task fetched it meanwhile
            chain = await self._fetch_info()
            self._chain = chain
            return chain

    async def _fetch_info(self) -> tuple[x509.Certificate, ...]:
        body = json.dumps({"label": self.settings.label or "", "profile": self.settings.profile or ""})
        response = await self.http.request(
            "POST",
            self.settings.info_url,
            body=body.encode(),
            headers={"Content-Type": "application/json"},
            idempotent=True,
        )
        result = self._result_or_raise(response, "info")
        pem = result.get("certificate")
        try:
            chain = tuple(x509.load_pem_x509_certificates(str(pem).encode()))
        except ValueError:
            raise BackendMisconfigured("CFSSL info did not return a PEM CA certificate") from None
        self._log.info("cfssl_ca_loaded", subject=chain[0].subject.rfc4514_string())
        return chain

    # -- signing -------------------------------------------------------------------------------

    def _inner_request(self, request: SignRequest) -> bytes:
        inner: dict[str, Any] = {
            "certificate_request": request.csr.public_bytes(serialization.Encoding.PEM).decode(),
            "hosts": [],  # no SANs: without this CFSSL copies the CSR's
            "subject": cfssl_subject(request.subject),
            # Used only if the profile lets clients provide serials; harmless otherwise.
            "serial": request.serial_number,
        }
        if self.settings.profile:
            inner["profile"] = self.settings.profile
        if self.settings.label:
            inner["label"] = self.settings.label
        return json.dumps(inner, separators=(",", ":")).encode()

    def _envelope(self, inner: bytes) -> bytes:
        token = hmac.new(self.settings.hmac_key, inner, hashlib.sha256).digest()
        envelope = {
            "token": base64.b64encode(token).decode(),
            "request": base64.b64encode(inner).decode(),
            "timestamp": int(time.time()),
        }
        return json.dumps(envelope, separators=(",", ":")).encode()

    async def sign(self, request: SignRequest) -> SignResult:
        """Ask CFSSL to sign the CSR with the approved subject; check and return leaf + CA."""
        log = self._log.bind(request_id=request.request_id, common_name=request.common_name)
        started = time.perf_counter()
        try:
            inner = self._inner_request(request)
            chain = await self._get_chain(refresh=False)  # before authsign: don't issue what we can't chain
            response = await self.http.request(
                "POST",
                self.settings.authsign_url,
                body=self._envelope(inner),
                headers={"Content-Type": "application/json"},
                idempotent=False,
            )
            result = self._result_or_raise(response, "authsign")
            try:
                certificate = x509.load_pem_x509_certificate(str(result.get("certificate", "")).encode())
            except ValueError:
                raise BackendMisconfigured("CFSSL authsign answer carries no PEM certificate") from None
            self._check_certificate(certificate, request)
            chain = await issued_by_chain(
                certificate,
                chain,
                lambda: self._get_chain(refresh=True),
                mismatch="the certificate CFSSL issued is not signed by the CA its info endpoint reports "
                "(check cfssl_label/cfssl_profile)",
            )
        except (BackendUnavailable, BackendRejected, BackendMisconfigured) as exc:
            log.warning("cfssl_sign_failed", kind=exc.kind, error=exc.message, retry_after=exc.retry_after)
            raise
        log.info(
            "cfssl_signed",
            serial=format(certificate.serial_number, "X"),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return SignResult(certificate=certificate, chain=chain)

    def _check_certificate(self, certificate: x509.Certificate, request: SignRequest) -> None:
        if certificate.public_key() != request.public_key:
            raise BackendRejected("CFSSL returned a certificate for a different public key; discarded")
        wanted, got = _attribute_bag(request.subject), _attribute_bag(certificate.subject)
        missing = wanted - got
        if missing:
            raise BackendRejected(
                "CFSSL issued a subject without approved attributes "
                f"({', '.join(sorted({_short(oid) for oid, _ in missing}))})"
            )
        extra = got - wanted
        if extra:
            self._log.warning(
                "cfssl_subject_extras_from_csr",
                extra=sorted({_short(oid) for oid, _ in extra}),
                subject=certificate.subject.rfc4514_string(),
            )

    def _result_or_raise(self, response: HttpResponse, endpoint: str) -> dict[str, Any]:
        status = response.status
        where = redact_url(self.settings.host_url)
        if status == 200:
            doc = response.json()
            if isinstance(doc, dict) and doc.get("success") is True and isinstance(doc.get("result"), dict):
                result: dict[str, Any] = doc["result"]
                return result
            if isinstance(doc, dict) and "success" in doc:
                code, message = _first_error(response)
                raise BackendRejected(f"CFSSL {endpoint} failed: {code or ''} {message}".replace("  ", " "))
            raise BackendMisconfigured(f"{where} does not answer like a CFSSL API server ({endpoint})")
        if status == 429 or status >= 500:
            _, message = _first_error(response)
            raise BackendUnavailable(
                f"CFSSL {endpoint} answered HTTP {status}: {message}",
                retry_after=self.http.unavailable_retry_after(response),
            )
        if status == 404:
            if endpoint == "authsign":
                raise BackendMisconfigured(
                    f"{where} has no /api/v1/cfssl/authsign: CFSSL serves it only when a signing profile "
                    "has an auth_key (or host_url is wrong)"
                )
            raise BackendMisconfigured(f"{where} has no /api/v1/cfssl/{endpoint} (check host_url)")
        code, message = _first_error(response)
        if status == 400:
            profile = self.settings.profile or "default"
            if message == "invalid token":
                raise BackendMisconfigured(
                    "CFSSL rejected the HMAC key (invalid token): issuer_credentials.hmac_hex_key does not "
                    f"match the auth_key of profile {profile!r}"
                )
            if message == "no authentication provider":
                raise BackendMisconfigured(
                    f"CFSSL profile {profile!r} has no auth_key, so authsign refuses it; CFSSL silently "
                    "uses 'default' for unknown profile names (check cfssl_profile)"
                )
            if code is not None and 9000 <= code < 10000:
                raise BackendRejected(f"CFSSL refused the CSR ({code}): {message}")
            if code is not None and 5000 <= code < 6000:
                raise BackendRejected(f"CFSSL policy refused the request ({code}): {message}")
            raise BackendRejected(f"CFSSL {endpoint} refused the request ({code}): {message}")
        if status in (401, 403):
            raise BackendMisconfigured(f"CFSSL {endpoint} refused access (HTTP {status}): {message}")
        raise BackendMisconfigured(
            f"unexpected HTTP {status} from {where} {endpoint}: {message} (check host_url)"
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self.http.aclose()
