"""``GLOBAL_SIGN``: GlobalSign Atlas / HVCA REST API v2 over mutual TLS.

Flow (GlobalSign's API doc v2.1 and ``globalsign/hvclient``): ``POST /login`` with the API key and
secret gives a bearer token valid for ten minutes (renewed a minute early, and once more whenever a
call answers 401); ``POST /certificates`` answers 201 with a ``Location`` whose last path segment is
the certificate's hex serial; ``GET /certificates/{serial}`` answers 202 while issuance is pending
and 200 with the PEM once done; ``GET /trustchain`` gives the issuing chain (cached).

Every request carries ``Content-Type: application/json;charset=utf-8`` when it has a body and an
explicit ``Content-Length`` (never chunked), as HVCA requires.

Issuing is not idempotent and costs quota, so ``POST /certificates`` is only repeated after answers
that mean nothing was done (401 after a fresh login; 429 and 503, which HVCA documents as "rate limit
reached" / "service busy, please retry later"), never after a timeout or a dropped connection. A
certificate still pending when the poll budget runs out is remembered (by CSR and subject), so the
device's retry resumes polling it instead of ordering a second one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from yarl import URL

from .base import CaBackend, IssuerConfig, Revoker, SignRequest, SignResult
from .chains import issued_by_chain
from .errors import BackendMisconfigured, BackendRejected, BackendUnavailable, InvalidIssuerConfig
from .http import Clock, HttpClient, HttpPolicy, HttpResponse
from .registry import register
from .secret_files import private_file

__all__ = ["DEFAULT_BASE_URL", "GlobalSignBackend", "GlobalSignSettings", "PollPolicy", "build_ssl_context"]

DEFAULT_BASE_URL = "https://emea.api.hvca.globalsign.com:8443/v2"
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
#: HVCA access tokens live ten minutes; renew one minute early.
TOKEN_LIFETIME = 600.0
TOKEN_RENEW_MARGIN = 60.0

_ATTRIBUTES = frozenset({"base_url", "ca_bundle_pem", "key_format"})
_CREDENTIALS = frozenset({"api_key", "api_secret", "client_certificate", "private_key", "passphrase"})
_MAX_LENGTHS = {
    "api_key": 1000,
    "api_secret": 250,
    "client_certificate": 3000,
    "private_key": 3000,
    "passphrase": 1000,
}
_REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)
_HEX = re.compile(r"[0-9A-Fa-f]{1,64}")
_MAX_TEXT = 300

# x509 subject attribute -> HVCA subject_dn field (single-valued unless listed in _MULTI).
_SUBJECT_FIELDS: dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "common_name",
    NameOID.COUNTRY_NAME: "country",
    NameOID.STATE_OR_PROVINCE_NAME: "state",
    NameOID.LOCALITY_NAME: "locality",
    NameOID.STREET_ADDRESS: "street_address",
    NameOID.ORGANIZATION_NAME: "organization",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizational_unit",
    NameOID.EMAIL_ADDRESS: "email",
    NameOID.SERIAL_NUMBER: "serial_number",
}
_MULTI = frozenset({"organizational_unit"})

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """How long to wait for a pending (202) certificate."""

    initial_delay: float = 0.5
    max_delay: float = 4.0
    total_wait: float = 20.0
    """Give up polling after this many seconds and raise :class:`BackendUnavailable`."""
    retry_after: float = 10.0
    """``retry_after`` suggested to the device when issuance is still pending."""
    remember_for: float = 3600.0
    """How long a pending serial is kept so a retried request resumes it."""


@dataclass(frozen=True, kw_only=True)
class GlobalSignSettings:
    """A validated ``GLOBAL_SIGN`` issuer configuration."""

    base_url: URL
    key_format: Literal["PKCS8", "PKCS10"] = "PKCS8"
    ca_bundle_pem: str | None = None
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    client_certificate: x509.Certificate
    client_chain: tuple[x509.Certificate, ...] = ()
    """Any further certificates that followed the client certificate in the PEM."""
    private_key: PrivateKey = field(repr=False)

    def url(self, *segments: str) -> URL:
        """``base_url`` with path segments appended."""
        return self.base_url.with_path("/".join([self.base_url.path.rstrip("/"), *segments]))


def _check_unknown(prefix: str, given: Mapping[str, str], known: frozenset[str]) -> None:
    for name in sorted(given):
        if name not in known:
            raise InvalidIssuerConfig(
                f"{prefix}.{name}", f"unknown field; expected one of {', '.join(sorted(known))}"
            )


def _parse_base_url(attributes: Mapping[str, str]) -> URL:
    fname = "issuer_attributes.base_url"
    raw = (attributes.get("base_url") or DEFAULT_BASE_URL).strip()
    try:
        url = URL(raw)
        _ = url.port
    except (ValueError, TypeError):
        raise InvalidIssuerConfig(fname, "not a valid URL") from None
    if url.scheme != "https" or not url.host:
        raise InvalidIssuerConfig(fname, "must be an absolute https:// URL (HVCA requires mutual TLS)")
    if url.user is not None or url.password is not None or url.query_string or url.fragment:
        raise InvalidIssuerConfig(fname, "must not contain user info, a query or a fragment")
    return url.with_path(url.path.rstrip("/") or "/")


def _load_private_key(pem: str, passphrase: str | None) -> PrivateKey:
    kname, pname = "issuer_credentials.private_key", "issuer_credentials.passphrase"
    data = pem.encode()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        if not passphrase:
            raise InvalidIssuerConfig(pname, "required: the private key is encrypted") from None
        try:
            key = serialization.load_pem_private_key(data, password=passphrase.encode())
        except (ValueError, TypeError):
            raise InvalidIssuerConfig(pname, "does not decrypt the private key") from None
    except ValueError:
        raise InvalidIssuerConfig(kname, "not a PEM private key") from None
    except Exception:  # cryptography raises UnsupportedAlgorithm for exotic keys
        raise InvalidIssuerConfig(kname, "unsupported private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidIssuerConfig(kname, "must be an RSA or EC key")
    return key


def parse_settings(attributes: Mapping[str, str], credentials: Mapping[str, str]) -> GlobalSignSettings:
    """Validate a ``GLOBAL_SIGN`` configuration (raises :class:`InvalidIssuerConfig`).

    Checks lengths, that the client certificate and private key parse (decrypting with the
    passphrase), belong together and that the certificate has not expired.
    """
    _check_unknown("issuer_attributes", attributes, _ATTRIBUTES)
    _check_unknown("issuer_credentials", credentials, _CREDENTIALS)
    for name, limit in _MAX_LENGTHS.items():
        value = credentials.get(name) or ""
        if name != "passphrase" and not value:
            raise InvalidIssuerConfig(f"issuer_credentials.{name}", "required")
        if len(value) > limit:
            raise InvalidIssuerConfig(f"issuer_credentials.{name}", f"longer than {limit} characters")
    base_url = _parse_base_url(attributes)

    key_format = attributes.get("key_format") or "PKCS8"
    if key_format not in ("PKCS8", "PKCS10"):
        raise InvalidIssuerConfig("issuer_attributes.key_format", "must be PKCS8 or PKCS10")

    bundle = attributes.get("ca_bundle_pem") or None
    if bundle is not None:
        try:
            x509.load_pem_x509_certificates(bundle.encode())
        except ValueError:
            raise InvalidIssuerConfig(
                "issuer_attributes.ca_bundle_pem", "not a PEM certificate bundle"
            ) from None

    cname = "issuer_credentials.client_certificate"
    try:
        certs = x509.load_pem_x509_certificates(credentials["client_certificate"].encode())
    except ValueError:
        raise InvalidIssuerConfig(cname, "not a PEM certificate") from None
    cert = certs[0]
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise InvalidIssuerConfig(cname, f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")

    key = _load_private_key(credentials["private_key"], credentials.get("passphrase") or None)
    if cert.public_key() != key.public_key():
        raise InvalidIssuerConfig("issuer_credentials.private_key", "does not match client_certificate")

    return GlobalSignSettings(
        base_url=base_url,
        key_format="PKCS10" if key_format == "PKCS10" else "PKCS8",
        ca_bundle_pem=bundle,
        api_key=credentials["api_key"],
        api_secret=credentials["api_secret"],
        client_certificate=cert,
        client_chain=tuple(certs[1:]),
        private_key=key,
    )


def build_ssl_context(settings: GlobalSignSettings) -> ssl.SSLContext:
    """A verifying client context presenting the account's certificate and key.

    The key is handed to OpenSSL re-encrypted under a random one-time password, through
    :func:`~ca_backends.secret_files.private_file`; the plaintext key never touches a file system.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.ca_bundle_pem:
        context.load_verify_locations(cadata=settings.ca_bundle_pem)
    one_time = secrets.token_urlsafe(32).encode()
    key_pem = settings.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    certs = (settings.client_certificate, *settings.client_chain)
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    try:
        with private_file(cert_pem + key_pem) as path:
            context.load_cert_chain(path, password=one_time)
    except ssl.SSLError as exc:
        raise InvalidIssuerConfig(
            "issuer_credentials.client_certificate", f"OpenSSL refused the certificate/key: {exc.reason}"
        ) from None
    return context


def _name_value(attr: x509.NameAttribute[Any]) -> str:
    return attr.value if isinstance(attr.value, str) else attr.value.decode()


def subject_dn(subject: x509.Name) -> dict[str, Any]:
    """Translate an approved subject into HVCA's ``subject_dn`` object.

    Unknown attributes go to ``extra_attributes``; a repeated single-valued attribute raises
    :class:`BackendMisconfigured`.
    """
    out: dict[str, Any] = {}
    extra: list[dict[str, str]] = []
    for attr in subject:
        value = _name_value(attr)
        name = _SUBJECT_FIELDS.get(attr.oid)
        if name is None:
            extra.append({"type": attr.oid.dotted_string, "value": value})
        elif name in _MULTI:
            out.setdefault(name, []).append(value)
        elif name in out:
            raise BackendMisconfigured(
                f"GlobalSign subject_dn carries one {name}; the approved subject has several"
            )
        else:
            out[name] = value
    if extra:
        out["extra_attributes"] = extra
    return out


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _problem(response: HttpResponse) -> str:
    """``description`` (plus ``errors`` details) of an HVCA problem+json answer."""
    doc = response.json()
    if isinstance(doc, dict):
        text = str(doc.get("description") or "")
        details = doc.get("errors")
        if isinstance(details, dict) and details:
            text += " (" + "; ".join(f"{k}: {v}" for k, v in details.items()) + ")"
        if text:
            return _truncate(text)
    return _truncate(response.body.decode("utf-8", "replace")) or f"HTTP {response.status}"


def _normalise_reason(reason: str) -> str | None:
    wanted = reason.replace("_", "").replace("-", "").replace(" ", "").lower()
    for candidate in _REVOCATION_REASONS:
        if candidate.lower() == wanted:
            return candidate
    return None


@register
class GlobalSignBackend(CaBackend, Revoker):
    """Signs through GlobalSign Atlas / HVCA v2; can also revoke."""

    issuer_type: ClassVar[str] = "GLOBAL_SIGN"

    def __init__(
        self,
        settings: GlobalSignSettings,
        *,
        issuer_name: str,
        policy: HttpPolicy | None = None,
        poll: PollPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.poll = poll or PollPolicy()
        self.http = HttpClient(
            issuer=issuer_name, policy=policy, ssl_context=build_ssl_context(settings), clock=clock
        )
        self._clock = self.http.clock
        self._log = structlog.get_logger(__name__).bind(issuer=issuer_name, issuer_type=self.issuer_type)
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._login_lock = asyncio.Lock()
        self._chain: tuple[x509.Certificate, ...] | None = None
        self._chain_lock = asyncio.Lock()
        self._pending: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        #: Number of successful logins (observability and tests).
        self.login_count = 0

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Check lengths, PEMs, passphrase, key/certificate match and that OpenSSL accepts them."""
        build_ssl_context(parse_settings(attributes, credentials))

    @classmethod
    def from_config(
        cls,
        config: IssuerConfig,
        *,
        policy: HttpPolicy | None = None,
        poll: PollPolicy | None = None,
        clock: Clock | None = None,
    ) -> GlobalSignBackend:
        """Validate and build; the keyword arguments override HTTP and polling defaults."""
        return cls(
            parse_settings(config.attributes, config.credentials),
            issuer_name=config.name,
            policy=policy,
            poll=poll,
            clock=clock,
        )

    # -- authentication ------------------------------------------------------------------------

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and self._clock.monotonic() < self._token_renew_at:
            return token
        async with self._login_lock:
            if self._token is not None and self._token is not token:
                return self._token  # someone else logged in while we waited
            if self._token is not None and self._clock.monotonic() < self._token_renew_at:
                return self._token
            return await self._login()

    def _drop_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _login(self) -> str:
        body = json.dumps({"api_key": self.settings.api_key, "api_secret": self.settings.api_secret})
        started = self._clock.monotonic()
        response = await self.http.request(
            "POST",
            self.settings.url("login"),
            body=body.encode(),
            headers={"Content-Type": JSON_CONTENT_TYPE},
            idempotent=True,  # repeating a login has no side effect
        )
        if response.status == 200:
            doc = response.json()
            token = doc.get("access_token") if isinstance(doc, dict) else None
            if not isinstance(token, str) or not token:
                raise BackendMisconfigured("GlobalSign login answer carries no access_token")
            self._token = token
            self._token_renew_at = started + TOKEN_LIFETIME - TOKEN_RENEW_MARGIN
            self.login_count += 1
            self._log.info("globalsign_login")
            return token
        if response.status == 429 or response.status >= 500:
            self._raise_common(response, "login")
        raise BackendMisconfigured(
            f"GlobalSign refused the login (HTTP {response.status}: {_problem(response)}); "
            "check issuer_credentials.api_key, api_secret and client_certificate"
        )

    async def _call(
        self,
        method: str,
        url: URL,
        *,
        body: Mapping[str, Any] | None = None,
        idempotent: bool,
        retry_statuses: frozenset[int] | None = None,
    ) -> HttpResponse:
        """An authenticated call; on 401 log in again and repeat it once (401 means not done)."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        for attempt in (1, 2):
            token = await self._access_token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = JSON_CONTENT_TYPE
            response = await self.http.request(
                method, url, body=data, headers=headers, idempotent=idempotent, retry_statuses=retry_statuses
            )
            if response.status == 401 and attempt == 1:
                self._log.info("globalsign_token_rejected", method=method, path=url.path)
                self._drop_token(token)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_common(self, response: HttpResponse, what: str) -> None:
        """Raise for answers that mean the same on every endpoint."""
        status = response.status
        if status == 429 or status >= 500:
            raise BackendUnavailable(
                f"GlobalSign {what}: HTTP {status} ({_problem(response)})",
                retry_after=self.http.unavailable_retry_after(response),
            )
        if status == 402:
            raise BackendMisconfigured(
                f"GlobalSign issuance quota exhausted (HTTP 402: {_problem(response)}); the account needs "
                "more quota before certificates can be issued"
            )
        if status in (411, 415):
            raise BackendMisconfigured(
                f"GlobalSign refused the request framing (HTTP {status}: {_problem(response)})"
            )
        if status == 401:
            raise BackendMisconfigured(
                f"GlobalSign refused a fresh access token for {what} (HTTP 401); "
                "check the account permissions"
            )
        if status == 403:
            raise BackendMisconfigured(f"GlobalSign forbids {what} (HTTP 403: {_problem(response)})")

    # -- trust chain ---------------------------------------------------------------------------

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """``GET /trustchain``: issuing CA first, root last (fetched once, then cached)."""
        return await self._get_chain(refresh=False)

    async def _get_chain(self, *, refresh: bool) -> tuple[x509.Certificate, ...]:
        stale = self._chain
        if stale is not None and not refresh:
            return stale
        async with self._chain_lock:
            if self._chain is not None and self._chain is not stale:
                return self._chain
            response = await self._call("GET", self.settings.url("trustchain"), idempotent=True)
            if response.status != 200:
                self._raise_common(response, "trustchain")
                raise BackendMisconfigured(
                    f"GlobalSign trustchain answered HTTP {response.status}: {_problem(response)}"
                )
            doc = response.json()
            try:
                if not isinstance(doc, list) or not doc:
                    raise ValueError("not a non-empty array")
                chain = tuple(x509.load_pem_x509_certificate(str(pem).encode()) for pem in doc)
            except ValueError:
                raise BackendMisconfigured(
                    "GlobalSign trustchain is not an array of PEM certificates"
                ) from None
            self._chain = chain
            self._log.info("globalsign_trustchain_loaded", issuing=chain[0].subject.rfc4514_string())
            return chain

    # -- signing -------------------------------------------------------------------------------

    def _public_key_field(self, request: SignRequest) -> str:
        if self.settings.key_format == "PKCS10":
            return request.csr.public_bytes(serialization.Encoding.PEM).decode()
        # SubjectPublicKeyInfo PEM: cryptography writes 64-character lines separated by "\n".
        return request.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def _certificate_body(self, request: SignRequest) -> dict[str, Any]:
        return {
            "validity": {
                "not_before": int(request.not_before.timestamp()),
                "not_after": int(request.not_after.timestamp()),
            },
            "subject_dn": subject_dn(request.subject),
            "public_key": self._public_key_field(request),
        }

    @staticmethod
    def _pending_key(request: SignRequest) -> bytes:
        digest = hashlib.sha256(request.csr.public_bytes(serialization.Encoding.DER))
        digest.update(request.subject.public_bytes())
        return digest.digest()

    def _remember_pending(self, key: bytes, serial_hex: str) -> None:
        now = self._clock.monotonic()
        self._pending[key] = (serial_hex, now)
        self._pending.move_to_end(key)
        while self._pending:
            oldest_key, (_, since) = next(iter(self._pending.items()))
            if len(self._pending) <= 10_000 and now - since < self.poll.remember_for:
                break
            del self._pending[oldest_key]

    def _recall_pending(self, key: bytes) -> str | None:
        entry = self._pending.get(key)
        if entry is None:
            return None
        serial_hex, since = entry
        if self._clock.monotonic() - since >= self.poll.remember_for:
            del self._pending[key]
            return None
        return serial_hex

    async def sign(self, request: SignRequest) -> SignResult:
        """Order the certificate, wait for it to be issued, check it and return it with the chain."""
        log = self._log.bind(request_id=request.request_id, common_name=request.common_name)
        started = time.perf_counter()
        pending_key = self._pending_key(request)
        try:
            body = self._certificate_body(request)
            chain = await self._get_chain(refresh=False)  # before ordering: don't pay for what we can't chain
            serial_hex = self._recall_pending(pending_key)
            if serial_hex is None:
                serial_hex = await self._order(body)
            else:
                log.info("globalsign_resume_pending", serial=serial_hex)
            try:
                certificate = await self._wait_for(serial_hex)
            except BackendUnavailable:
                self._remember_pending(pending_key, serial_hex)
                raise
            self._pending.pop(pending_key, None)
            self._check_certificate(certificate, request)
            chain = await issued_by_chain(
                certificate,
                chain,
                lambda: self._get_chain(refresh=True),
                mismatch="the issued certificate is not signed by the first certificate of /trustchain",
            )
        except (BackendUnavailable, BackendRejected, BackendMisconfigured) as exc:
            log.warning(
                "globalsign_sign_failed", kind=exc.kind, error=exc.message, retry_after=exc.retry_after
            )
            raise
        log.info("globalsign_signed", serial=serial_hex, ms=round((time.perf_counter() - started) * 1000, 1))
        return SignResult(certificate=certificate, chain=chain)

    async def _order(self, body: Mapping[str, Any]) -> str:
        response = await self._call(
            "POST",
            self.settings.url("certificates"),
            body=body,
            idempotent=False,
            # HVCA documents 429 "Rate Limit Reached" and 503 "Service busy, please retry later": nothing
            # was issued, so repeating is safe. Timeouts and dropped connections are never repeated.
            retry_statuses=frozenset({429, 503}),
        )
        if response.status == 201:
            location = response.headers.get("Location", "")
            segment = URL(location).path.rstrip("/").rsplit("/", 1)[-1] if location else ""
            if not _HEX.fullmatch(segment):
                raise BackendMisconfigured("GlobalSign answered 201 without a usable Location header")
            return segment.upper()
        self._raise_common(response, "certificate request")
        if response.status in (400, 422):
            raise BackendRejected(f"GlobalSign rejected the certificate request: {_problem(response)}")
        raise BackendMisconfigured(
            f"GlobalSign certificates answered HTTP {response.status}: {_problem(response)} (check base_url)"
        )

    async def _wait_for(self, serial_hex: str) -> x509.Certificate:
        url = self.settings.url("certificates", serial_hex)
        deadline = self._clock.monotonic() + self.poll.total_wait
        delay = self.poll.initial_delay
        while True:
            response = await self._call("GET", url, idempotent=True)
            if response.status == 200:
                doc = response.json()
                if not isinstance(doc, dict):
                    raise BackendMisconfigured("GlobalSign certificate answer is not a JSON object")
                if doc.get("status", "ISSUED") != "ISSUED":
                    raise BackendRejected(f"GlobalSign certificate {serial_hex} is {doc.get('status')}")
                try:
                    return x509.load_pem_x509_certificate(str(doc.get("certificate", "")).encode())
                except ValueError:
                    raise BackendMisconfigured(
                        "GlobalSign certificate answer carries no PEM certificate"
                    ) from None
            if response.status == 202:
                now = self._clock.monotonic()
                if now + delay > deadline:
                    raise BackendUnavailable(
                        f"GlobalSign certificate {serial_hex} still pending "
                        f"after {self.poll.total_wait:.0f} s",
                        retry_after=self.poll.retry_after,
                    )
                await self._clock.sleep(delay)
                delay = min(self.poll.max_delay, delay * 2)
                continue
            self._raise_common(response, "certificate retrieval")
            if response.status in (404, 422):
                raise BackendRejected(
                    f"GlobalSign did not issue certificate {serial_hex}: {_problem(response)}"
                )
            raise BackendMisconfigured(
                f"GlobalSign certificate retrieval answered HTTP {response.status}: {_problem(response)}"
            )

    def _check_certificate(self, certificate: x509.Certificate, request: SignRequest) -> None:
        if certificate.public_key() != request.public_key:
            raise BackendRejected("GlobalSign returned a certificate for a different public key; discarded")
        got = [_name_value(a) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if got != [request.common_name]:
            raise BackendRejected("GlobalSign issued a certificate with a different common name; discarded")
        if certificate.subject != request.subject:
            # The account's validation policy may add STATIC attributes; that is the operator's choice.
            self._log.info(
                "globalsign_subject_differs",
                requested=request.subject.rfc4514_string(),
                issued=certificate.subject.rfc4514_string(),
            )

    # -- revocation ----------------------------------------------------------------------------

    async def revoke(self, serial_number: int, reason: str) -> None:
        """``PATCH /certificates/{serial}`` with a ``revocation_reason`` such as ``keyCompromise``."""
        hvca_reason = _normalise_reason(reason)
        if hvca_reason is None:
            raise BackendRejected(
                f"unsupported revocation reason {reason!r}; use one of {', '.join(_REVOCATION_REASONS)}"
            )
        serial_hex = format(serial_number, "X")
        response = await self._call(
            "PATCH",
            self.settings.url("certificates", serial_hex),
            body={"revocation_reason": hvca_reason},
            idempotent=True,
        )
        if response.status in (200, 204):
            self._log.info("globalsign_revoked", serial=serial_hex, reason=hvca_reason)
            return
        self._raise_common(response, "revocation")
        if response.status in (400, 404, 409, 422):
            raise BackendRejected(f"GlobalSign did not revoke {serial_hex}: {_problem(response)}")
        raise BackendMisconfigured(
            f"GlobalSign revocation answered HTTP {response.status}: {_problem(response)}"
        )

    async def aclose(self) -> None:
        """Close the HTTP session and forget the access token."""
        self._token = None
        await self.http.aclose()
