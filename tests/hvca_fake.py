"""A faithful stand-in for GlobalSign Atlas / HVCA REST API v2, served over mutual TLS.

Modelled on GlobalSign's API documentation v2.1 and ``globalsign/hvclient`` (its official client and
mock): ``/v2/login``, ``/v2/certificates`` (POST 201 + Location, GET 202/200, PATCH revoke 204),
``/v2/trustchain``; framing rules (``Content-Type`` must be exactly
``application/json;charset=utf-8`` -> 415, a body needs ``Content-Length`` -> 411); bearer tokens that
expire; ``application/problem+json`` errors with a ``description``. Certificates are really signed by
an issuing CA under a root (cryptography), and client certificates are required at the TLS layer.

Knobs: ``token_lifetime``, ``pending_polls`` (202s before 200), ``key_format`` (PKCS8 or PKCS10),
``location_style`` (absolute URL or server-relative path), :meth:`HvcaFake.inject` (answer the next
N calls to an endpoint with 429/402/422/503/... ), :meth:`HvcaFake.expire_tokens`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import secrets
import ssl
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ca_helpers import PrivateKey, TestCa, client_identity, key_pem, pem

JSON_CT = re.compile(r"^application/json;charset=utf-8$")
PROBLEM_CT = "application/problem+json;charset=utf-8"
REVOCATION_REASONS = {
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
}
CERT_FIELDS = {
    "validity",
    "subject_dn",
    "san",
    "key_usages",
    "extended_key_usages",
    "subject_da",
    "qualified_statements",
    "ms_extension_template",
    "custom_extensions",
    "signature",
    "public_key",
    "public_key_signature",
}
SUBJECT_FIELDS: dict[str, x509.ObjectIdentifier] = {
    "country": NameOID.COUNTRY_NAME,
    "state": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "street_address": NameOID.STREET_ADDRESS,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "common_name": NameOID.COMMON_NAME,
    "email": NameOID.EMAIL_ADDRESS,
    "serial_number": NameOID.SERIAL_NUMBER,
}
MAX_VALIDITY = 2 * 365 * 86400
ENDPOINTS = ("login", "certificates.post", "certificates.get", "certificates.patch", "trustchain")


class Problem(Exception):
    """An HVCA error answer."""

    def __init__(self, status: int, description: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.errors = errors


def problem_response(status: int, description: str, errors: dict[str, str] | None = None) -> web.Response:
    """An ``application/problem+json`` answer as HVCA sends it."""
    body: dict[str, Any] = {"description": description}
    if errors:
        body["errors"] = errors
    return web.Response(status=status, body=json.dumps(body).encode(), headers={"Content-Type": PROBLEM_CT})


@dataclass
class Injection:
    """One forced answer."""

    status: int
    description: str
    retry_after: int | None = None


@dataclass
class Issued:
    """A certificate the fake has issued."""

    certificate: x509.Certificate
    polls_left: int
    status: str = "ISSUED"
    revocation_reason: str | None = None


@dataclass
class Seen:
    """One request as received (for assertions)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class HvcaFake:
    """The fake server; use as ``async with HvcaFake() as hvca: ...``."""

    api_key: str = "e510e289e6cd8947"
    api_secret: str = field(default_factory=lambda: secrets.token_hex(20))
    token_lifetime: float = 600.0
    pending_polls: int = 0
    key_format: str = "PKCS8"
    location_style: str = "absolute"
    require_ec_p256: bool = True

    def __post_init__(self) -> None:
        self.tls_root = TestCa.create("HVCA Fake TLS Root")
        self.account_ca = TestCa.create("HVCA Fake Account CA", rsa_key=True)
        self.root = TestCa.create("HVCA Fake Root")
        self.issuing = TestCa.create("HVCA Fake Issuing CA", parent=self.root)
        self._server_key = ec.generate_private_key(ec.SECP256R1())
        self._server_cert = self.tls_root.issue(
            self._server_key.public_key(),
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            server_hosts=("127.0.0.1", "localhost"),
            client=False,
        )
        self.tokens: dict[str, float] = {}
        self.issued: dict[str, Issued] = {}
        self.injections: dict[str, deque[Injection]] = {e: deque() for e in ENDPOINTS}
        self.calls: Counter[str] = Counter()
        self.answers: Counter[tuple[str, int]] = Counter()
        self.seen: list[Seen] = []
        self.certificate_requests: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- knobs ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>/v2``."""
        return f"https://127.0.0.1:{self.port}/v2"

    @property
    def tls_root_pem(self) -> str:
        """The CA that issued the server's TLS certificate (clients pass it as ``ca_bundle_pem``)."""
        return pem(self.tls_root.certificate)

    def inject(
        self,
        endpoint: str,
        status: int,
        *,
        times: int = 1,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` calls to ``endpoint`` with ``status`` (endpoints: ``ENDPOINTS``)."""
        if endpoint not in self.injections:
            raise ValueError(f"unknown endpoint {endpoint}; known: {ENDPOINTS}")
        default = {
            402: "Quota Reached",
            422: "Message describing the validation error",
            429: "Rate Limit Reached",
            503: "Service busy, please retry later",
        }.get(status, "Injected error")
        for _ in range(times):
            self.injections[endpoint].append(Injection(status, description or default, retry_after))

    def expire_tokens(self) -> None:
        """Expire every access token issued so far (as if ten minutes had passed)."""
        for token in self.tokens:
            self.tokens[token] = 0.0

    def account_credentials(
        self, *, passphrase: str | None = None, key: PrivateKey | None = None, rsa_key: bool = True
    ) -> dict[str, str]:
        """``issuer_credentials`` for a GLOBAL_SIGN issuer: API key/secret and a fresh mTLS identity."""
        if key is None:
            key, cert = client_identity(self.account_ca, rsa_key=rsa_key)
        else:
            cert = self.account_ca.issue(
                key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hvca-account")])
            )
        creds = {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "client_certificate": pem(cert),
            "private_key": key_pem(key, passphrase),
        }
        if passphrase:
            creds["passphrase"] = passphrase
        return creds

    def server_ssl_context(self, directory: Path) -> ssl.SSLContext:
        """TLS server context requiring client certificates from the account CA."""
        cert_file, key_file = directory / "server.pem", directory / "server-key.pem"
        cert_file.write_text(pem(self._server_cert))
        key_file.write_text(key_pem(self._server_key))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pem(self.account_ca.certificate))
        return context

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port) over mutual TLS."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v2/login", self._login)
        app.router.add_post("/v2/certificates", self._create)
        app.router.add_get("/v2/certificates/{serial}", self._get)
        app.router.add_patch("/v2/certificates/{serial}", self._revoke)
        app.router.add_get("/v2/trustchain", self._trustchain)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with tempfile.TemporaryDirectory(prefix="hvca-fake-") as tmp:
            context = self.server_ssl_context(Path(tmp))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HvcaFake:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _endpoint(request: web.Request) -> str:
        path = request.path
        if path == "/v2/login":
            return "login"
        if path == "/v2/trustchain":
            return "trustchain"
        if path.startswith("/v2/certificates"):
            return "certificates." + request.method.lower()
        return "other"

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.headers), body)
        self.seen.append(seen)
        endpoint = self._endpoint(request)
        self.calls[endpoint] += 1
        response: web.StreamResponse
        try:
            if request.method in ("POST", "PATCH", "PUT"):
                if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
                    raise Problem(411, "Length Required")
                if not request.headers.get("Content-Length") or request.content_length in (None, 0):
                    raise Problem(411, "Length Required")
                if not JSON_CT.match(request.headers.get("Content-Type", "")):
                    raise Problem(415, "Bad Content-Type")
            queue = self.injections.get(endpoint)
            if queue:
                injected = queue.popleft()
                resp = problem_response(injected.status, injected.description)
                if injected.retry_after is not None:
                    resp.headers["Retry-After"] = str(injected.retry_after)
                response = resp
            else:
                if endpoint != "login":
                    self._authenticate(request)
                response = await handler(request)
        except Problem as exc:
            response = problem_response(exc.status, exc.description, exc.errors)
        except web.HTTPException as exc:
            response = problem_response(exc.status, exc.reason)
        seen.status = response.status
        self.answers[(endpoint, response.status)] += 1
        return response

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            raise Problem(401, "Unauthorized")
        expires = self.tokens.get(token)
        if expires is None or time.monotonic() >= expires:
            raise Problem(401, "Unauthorized")

    @staticmethod
    async def _json_object(request: web.Request) -> dict[str, Any]:
        try:
            doc = json.loads(await request.read())
        except ValueError:
            raise Problem(400, "Bad Request: body is not JSON") from None
        if not isinstance(doc, dict):
            raise Problem(400, "Bad Request: body is not a JSON object")
        return doc

    # -- endpoints -----------------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
        except ValueError:
            raise Problem(422, "Invalid login request") from None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("api_key"), str)
            or not isinstance(doc.get("api_secret"), str)
            or set(doc) != {"api_key", "api_secret"}
        ):
            raise Problem(422, "Invalid login request")
        ok_key = secrets.compare_digest(doc["api_key"], self.api_key)
        ok_secret = secrets.compare_digest(doc["api_secret"], self.api_secret)
        if not (ok_key and ok_secret):
            raise Problem(401, "Unauthorized")
        token = "eyJhbGciOiJIUzI1NiJ9." + secrets.token_urlsafe(24) + "." + secrets.token_urlsafe(16)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        return web.json_response({"access_token": token})

    async def _trustchain(self, request: web.Request) -> web.Response:
        return web.json_response([pem(self.issuing.certificate), pem(self.root.certificate)])

    def _public_key(self, value: Any) -> ec.EllipticCurvePublicKey:
        if not isinstance(value, str):
            raise Problem(422, "public_key is required", {"public_key": "required"})
        key: Any
        if self.key_format == "PKCS10":
            try:
                csr = x509.load_pem_x509_csr(value.encode())
            except ValueError:
                raise Problem(422, "public_key must be a PKCS#10 PEM", {"public_key": "bad CSR"}) from None
            if not csr.is_signature_valid:
                raise Problem(422, "CSR signature invalid", {"public_key": "bad signature"})
            key = csr.public_key()
        else:
            lines = value.strip("\n").split("\n")
            if lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
                raise Problem(422, "public_key must be a PEM SubjectPublicKeyInfo", {"public_key": "format"})
            if any(len(line) > 64 for line in lines[1:-1]) or any(len(line) != 64 for line in lines[1:-2]):
                raise Problem(422, "public_key PEM lines must be 64 characters", {"public_key": "format"})
            try:
                key = serialization.load_pem_public_key(value.encode())
            except ValueError:
                raise Problem(422, "public_key does not parse", {"public_key": "format"}) from None
        if self.require_ec_p256 and not (
            isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        ):
            raise Problem(422, "public key type not allowed by the validation policy (ECDSA 256 required)")
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    @staticmethod
    def _subject(value: Any) -> x509.Name:
        if not isinstance(value, dict):
            raise Problem(422, "subject_dn is required", {"subject_dn": "required"})
        unknown = set(value) - set(SUBJECT_FIELDS) - {"extra_attributes"}
        if unknown:
            raise Problem(422, f"subject_dn.{sorted(unknown)[0]} is not a valid field")
        if not isinstance(value.get("common_name"), str) or not value["common_name"]:
            raise Problem(422, "subject_dn.common_name is required", {"subject_dn.common_name": "required"})
        country = value.get("country")
        if country is not None and not (isinstance(country, str) and re.fullmatch(r"[A-Z]{2}", country)):
            raise Problem(422, "subject_dn.country must match ^[A-Z]{2}$", {"subject_dn.country": "format"})
        attrs: list[x509.NameAttribute[str]] = []
        for field_name, oid in SUBJECT_FIELDS.items():
            v = value.get(field_name)
            if v is None:
                continue
            if field_name == "organizational_unit":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise Problem(422, "subject_dn.organizational_unit must be an array of strings")
                attrs.extend(x509.NameAttribute(oid, x) for x in v)
            elif isinstance(v, str):
                attrs.append(x509.NameAttribute(oid, v))
            else:
                raise Problem(422, f"subject_dn.{field_name} must be a string")
        for extra in value.get("extra_attributes") or []:
            if not isinstance(extra, dict) or not isinstance(extra.get("type"), str):
                raise Problem(422, "subject_dn.extra_attributes entries need type and value")
            attrs.append(
                x509.NameAttribute(x509.ObjectIdentifier(extra["type"]), str(extra.get("value", "")))
            )
        return x509.Name(attrs)

    @staticmethod
    def _validity(value: Any) -> tuple[dt.datetime, dt.datetime]:
        if not isinstance(value, dict):
            raise Problem(422, "validity is required", {"validity": "required"})
        nb, na = value.get("not_before"), value.get("not_after", 0)

        if not isinstance(nb, int) or isinstance(nb, bool) or nb <= 0:
            raise Problem(
                422, "validity.not_before must be an integer UNIX time", {"validity.not_before": "type"}
            )
        if not isinstance(na, int) or isinstance(na, bool) or na < 0:
            raise Problem(
                422, "validity.not_after must be an integer UNIX time", {"validity.not_after": "type"}
            )
        if na == 0:
            na = nb + MAX_VALIDITY
        if na <= nb:
            raise Problem(422, "validity.not_after must be after not_before")
        if na - nb > MAX_VALIDITY:
            raise Problem(422, "validity period exceeds the policy maximum")
        return dt.datetime.fromtimestamp(nb, dt.UTC), dt.datetime.fromtimestamp(na, dt.UTC)

    async def _create(self, request: web.Request) -> web.Response:
        doc = await self._json_object(request)
        self.certificate_requests.append(doc)
        unknown = set(doc) - CERT_FIELDS
        if unknown:
            raise Problem(422, f"{sorted(unknown)[0]} is not a valid field")
        if "public_key_signature" in doc:
            raise Problem(422, "public_key_signature is forbidden by the validation policy")
        not_before, not_after = self._validity(doc.get("validity"))
        subject = self._subject(doc.get("subject_dn"))
        public_key = self._public_key(doc.get("public_key"))
        serial = secrets.randbits(63) | (1 << 62)
        certificate = self.issuing.issue(
            public_key, subject, not_before=not_before, not_after=not_after, serial_number=serial
        )
        serial_hex = format(serial, "X")
        self.issued[serial_hex] = Issued(certificate, self.pending_polls)
        path = f"/v2/certificates/{serial_hex}"
        location = path if self.location_style == "relative" else f"{self.base_url}/certificates/{serial_hex}"
        return web.Response(status=201, headers={"Location": location})

    async def _get(self, request: web.Request) -> web.Response:
        issued = self.issued.get(request.match_info["serial"].upper())
        if issued is None:
            raise Problem(404, "Not found")
        if issued.polls_left > 0:
            issued.polls_left -= 1
            return web.json_response({"description": "Operation in progress"}, status=202)
        return web.json_response(
            {
                "certificate": pem(issued.certificate),
                "status": issued.status,
                "updated_at": int(time.time()),
            }
        )

    async def _revoke(self, request: web.Request) -> web.Response:
        issued = self.issued.get(request.match_info["serial"].upper())
        if issued is None:
            raise Problem(404, "Not found")
        doc = await self._json_object(request)
        reason = doc.get("revocation_reason")
        if reason not in REVOCATION_REASONS:
            raise Problem(422, "revocation_reason is not valid", {"revocation_reason": "enum"})
        if issued.status == "REVOKED":
            raise Problem(409, "Certificate already revoked")
        issued.status = "REVOKED"
        issued.revocation_reason = str(reason)
        return web.Response(status=204)


def verify_issued(certificate: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> None:
    """Raise unless ``certificate`` chains through ``chain`` (issuing CA first) to its last element."""
    try:
        certificate.verify_directly_issued_by(chain[0])
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
    except InvalidSignature as exc:
        raise AssertionError("chain does not verify") from exc
