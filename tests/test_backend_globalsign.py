"""GLOBAL_SIGN backend against the HVCA v2 fake (mutual TLS, real signatures)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

import ca_backends
from ca_backends import (
    BackendError,
    BackendMisconfigured,
    BackendRejected,
    BackendUnavailable,
    InvalidIssuerConfig,
    IssuerConfig,
    Revoker,
)
from ca_backends.globalsign import GlobalSignBackend, PollPolicy, subject_dn
from ca_backends.http import HttpPolicy

from .ca_helpers import FakeClock, TestCa, client_identity, key_pem, name, pem, sign_request
from .hvca_fake import PROBLEM_CT, HvcaFake, verify_issued

FAST = HttpPolicy(backoff_base=0.01, backoff_max=0.05, default_retry_after=9.0, breaker_threshold=1000)
FAST_POLL = PollPolicy(initial_delay=0.01, max_delay=0.02, total_wait=2.0, retry_after=12.0)


@pytest_asyncio.fixture
async def hvca() -> AsyncIterator[HvcaFake]:
    async with HvcaFake() as fake:
        yield fake


def config(fake: HvcaFake, credentials: dict[str, str] | None = None, **attrs: str) -> IssuerConfig:
    attributes = {"base_url": fake.base_url, "ca_bundle_pem": fake.tls_root_pem, **attrs}
    return IssuerConfig(
        issuer_id="iss-gs",
        name="globalsign-test",
        attributes=attributes,
        credentials=credentials if credentials is not None else fake.account_credentials(),
    )


def backend(
    cfg: IssuerConfig,
    *,
    policy: HttpPolicy = FAST,
    poll: PollPolicy = FAST_POLL,
    clock: FakeClock | None = None,
) -> GlobalSignBackend:
    return GlobalSignBackend.from_config(cfg, policy=policy, poll=poll, clock=clock)


@pytest_asyncio.fixture
async def gs(hvca: HvcaFake) -> AsyncIterator[GlobalSignBackend]:
    be = backend(config(hvca))
    yield be
    await be.aclose()


def seen(fake: HvcaFake, method: str, path_prefix: str) -> list[Any]:
    return [s for s in fake.seen if s.method == method and s.path.startswith(path_prefix)]


# -- success ------------------------------------------------------------------------------------


async def test_sign_success_and_wire_format(hvca: HvcaFake) -> None:
    be = ca_backends.create("GLOBAL_SIGN", config(hvca))
    assert isinstance(be, GlobalSignBackend) and isinstance(be, Revoker)
    try:
        req = sign_request("urn:dev:ops:acme-0007", validity=dt.timedelta(days=30))
        result = await be.sign(req)
        cert = result.certificate

        verify_issued(cert, result.chain)
        assert result.chain == (hvca.issuing.certificate, hvca.root.certificate)
        assert await be.ca_certificates() == result.chain
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "urn:dev:ops:acme-0007"
        assert cert.public_key() == req.csr.public_key()
        assert cert.not_valid_before_utc == req.not_before and cert.not_valid_after_utc == req.not_after

        (post,) = seen(hvca, "POST", "/v2/certificates")
        assert post.headers["Content-Type"] == "application/json;charset=utf-8"
        assert int(post.headers["Content-Length"]) == len(post.body)
        assert "Transfer-Encoding" not in post.headers
        assert post.headers["Authorization"].startswith("Bearer ")
        body = json.loads(post.body)
        assert body["validity"] == {
            "not_before": int(req.not_before.timestamp()),
            "not_after": int(req.not_after.timestamp()),
        }
        assert body["subject_dn"] == {
            "common_name": "urn:dev:ops:acme-0007",
            "organization": "Acme",
            "organizational_unit": ["IoT"],
        }
        lines = body["public_key"].strip().split("\n")
        assert lines[0] == "-----BEGIN PUBLIC KEY-----" and all(len(x) <= 64 for x in lines)

        # A second certificate reuses the token and the cached trust chain.
        await be.sign(sign_request("urn:dev:ops:acme-0008"))
        assert hvca.calls["login"] == 1 and hvca.calls["trustchain"] == 1
    finally:
        await be.aclose()


async def test_relative_location_and_pkcs10(hvca: HvcaFake) -> None:
    hvca.location_style = "relative"
    hvca.key_format = "PKCS10"
    be = backend(config(hvca, key_format="PKCS10"))
    try:
        req = sign_request("dev-pkcs10")
        result = await be.sign(req)
        verify_issued(result.certificate, result.chain)
        body = json.loads(seen(hvca, "POST", "/v2/certificates")[0].body)
        assert body["public_key"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    finally:
        await be.aclose()


async def test_concurrent_signs_share_one_login(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    results = await asyncio.gather(*(gs.sign(sign_request(f"dev-{i}")) for i in range(10)))
    assert len({r.certificate.serial_number for r in results}) == 10
    assert hvca.calls["login"] == 1 and hvca.calls["trustchain"] == 1


def test_subject_dn_mapping() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@acme.example"),
            x509.NameAttribute(NameOID.SURNAME, "Smith"),
            x509.NameAttribute(NameOID.COMMON_NAME, "dev"),
        ]
    )
    assert subject_dn(subject) == {
        "country": "GB",
        "organization": "Acme",
        "organizational_unit": ["a", "b"],
        "email": "ops@acme.example",
        "common_name": "dev",
        "extra_attributes": [{"type": "2.5.4.4", "value": "Smith"}],
    }
    with pytest.raises(BackendMisconfigured, match="one organization"):
        subject_dn(x509.Name([*name("dev", o="A"), *name(None, o="B")]))


# -- tokens -------------------------------------------------------------------------------------


async def test_token_expiry_mid_run_relogins_once(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    await gs.sign(sign_request("dev-a"))
    hvca.expire_tokens()  # server-side expiry: the cached token is now refused
    result = await gs.sign(sign_request("dev-b"))
    verify_issued(result.certificate, result.chain)
    assert hvca.calls["login"] == 2 and gs.login_count == 2
    assert hvca.answers[("certificates.post", 401)] == 1
    assert hvca.answers[("certificates.post", 201)] == 2


async def test_token_renewed_a_minute_before_expiry(hvca: HvcaFake) -> None:
    clock = FakeClock()
    be = backend(config(hvca), clock=clock)
    try:
        await be.sign(sign_request("dev-a"))
        clock.advance(530)
        await be.sign(sign_request("dev-b"))
        assert hvca.calls["login"] == 1
        clock.advance(15)  # 545 s: inside the last minute of the 10-minute lifetime
        await be.sign(sign_request("dev-c"))
        assert hvca.calls["login"] == 2
        assert sum(n for (_, status), n in hvca.answers.items() if status == 401) == 0
    finally:
        await be.aclose()


async def test_short_lived_tokens_expiring_between_calls(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.token_lifetime = 0.05
    hvca.pending_polls = 2
    await gs.sign(sign_request("dev-a"))
    await asyncio.sleep(0.1)
    await gs.sign(sign_request("dev-b"))
    assert hvca.calls["login"] >= 2


# -- pending ------------------------------------------------------------------------------------


async def test_pending_then_success(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.pending_polls = 3
    result = await gs.sign(sign_request())
    verify_issued(result.certificate, result.chain)
    assert hvca.calls["certificates.get"] == 4
    assert hvca.answers[("certificates.get", 202)] == 3


async def test_pending_too_long_is_unavailable_and_resumed_without_reordering(hvca: HvcaFake) -> None:
    clock = FakeClock()
    be = backend(
        config(hvca),
        poll=PollPolicy(initial_delay=0.5, max_delay=4, total_wait=20, retry_after=12),
        clock=clock,
    )
    try:
        hvca.pending_polls = 1000
        req = sign_request("dev-slow")
        with pytest.raises(BackendUnavailable, match="still pending") as info:
            await be.sign(req)
        assert info.value.retry_after == 12
        polls = hvca.calls["certificates.get"]
        assert 4 <= polls <= 10  # back-off 0.5, 1, 2, 4, 4, 4 ... within 20 s
        assert sum(clock.slept) <= 20

        (serial,) = hvca.issued
        hvca.issued[serial].polls_left = 0
        result = await be.sign(req)  # the device retries with the same CSR
        assert format(result.certificate.serial_number, "X") == serial
        assert hvca.calls["certificates.post"] == 1  # resumed, not ordered twice
    finally:
        await be.aclose()


# -- retryable answers ------------------------------------------------------------------------


async def test_429_then_success(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("login", 429)
    hvca.inject("certificates.post", 429)
    hvca.inject("certificates.get", 429, times=2)
    result = await gs.sign(sign_request())
    verify_issued(result.certificate, result.chain)
    assert hvca.answers[("login", 429)] == 1
    assert hvca.answers[("certificates.post", 429)] == 1 and hvca.answers[("certificates.post", 201)] == 1
    assert hvca.answers[("certificates.get", 429)] == 2
    assert len(hvca.issued) == 1


async def test_retry_after_header_is_honoured(hvca: HvcaFake) -> None:
    clock = FakeClock()
    be = backend(config(hvca), clock=clock, policy=HttpPolicy(backoff_base=0.01, backoff_max=5.0))
    try:
        hvca.inject("certificates.get", 429, retry_after=3)
        await be.sign(sign_request())
        assert max(clock.slept) >= 3
    finally:
        await be.aclose()


async def test_persistent_503_is_unavailable(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("certificates.post", 503, times=50)
    with pytest.raises(BackendUnavailable) as info:
        await gs.sign(sign_request())
    assert info.value.retry_after == 9.0
    assert "Service busy" in info.value.message
    assert hvca.calls["certificates.post"] == FAST.max_attempts
    assert not hvca.issued


async def test_persistent_429_with_long_retry_after_is_not_waited_for(
    hvca: HvcaFake, gs: GlobalSignBackend
) -> None:
    hvca.inject("certificates.post", 429, times=5, retry_after=120)
    with pytest.raises(BackendUnavailable) as info:
        await gs.sign(sign_request())
    assert info.value.retry_after == pytest.approx(120, abs=1)
    assert hvca.calls["certificates.post"] == 1


async def test_circuit_opens_on_repeated_503(hvca: HvcaFake) -> None:
    clock = FakeClock()
    policy = HttpPolicy(backoff_base=0.01, max_attempts=2, breaker_threshold=4, breaker_cooldown=60)
    be = backend(config(hvca), policy=policy, clock=clock)
    try:
        await be.ca_certificates()
        hvca.inject("certificates.post", 503, times=100)
        for _ in range(2):
            with pytest.raises(BackendUnavailable, match="Service busy"):
                await be.sign(sign_request())
        calls = hvca.calls["certificates.post"]
        with pytest.raises(BackendUnavailable, match="circuit open") as info:
            await be.sign(sign_request())
        assert info.value.retry_after == pytest.approx(60, abs=1)
        assert hvca.calls["certificates.post"] == calls
    finally:
        await be.aclose()


# -- refusals -----------------------------------------------------------------------------------


async def test_402_quota_is_misconfigured(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("certificates.post", 402)
    with pytest.raises(BackendMisconfigured, match="quota") as info:
        await gs.sign(sign_request())
    assert info.value.retry_after is None
    assert "Quota Reached" in info.value.message
    assert hvca.calls["certificates.post"] == 1


async def test_422_is_rejected_with_description(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("certificates.post", 422, description="subject_dn.common_name does not match ^dev-")
    with pytest.raises(BackendRejected, match=r"common_name does not match \^dev-") as info:
        await gs.sign(sign_request())
    assert info.value.coap_code == "5.02"
    assert hvca.calls["certificates.post"] == 1


async def test_real_validation_error_is_rejected(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    with pytest.raises(BackendRejected, match=r"country must match"):
        await gs.sign(sign_request("dev-x", subject=name("dev-x", c="gb")))
    p384 = ec.generate_private_key(ec.SECP384R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(name("dev-y")).sign(p384, hashes.SHA256())
    with pytest.raises(BackendRejected, match="ECDSA 256"):
        await gs.sign(sign_request("dev-y", csr=csr))


async def test_422_on_poll_is_rejected(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("certificates.get", 422, description="CA validation error")
    with pytest.raises(BackendRejected, match="CA validation error"):
        await gs.sign(sign_request())


async def test_bad_login_is_misconfigured_and_secret_not_leaked(hvca: HvcaFake) -> None:
    creds = hvca.account_credentials(passphrase="correct horse")
    creds["api_secret"] = "wrong-secret-0123456789"
    be = backend(config(hvca, creds))
    try:
        with capture_logs() as logs, pytest.raises(BackendMisconfigured, match="refused the login") as info:
            await be.sign(sign_request())
        assert "401" in info.value.message
        assert hvca.calls["login"] == 1  # not retried
        dumped = repr(logs) + str(info.value) + repr(be.settings)
        for secret in ("wrong-secret-0123456789", hvca.api_secret, "correct horse"):
            assert secret not in dumped
    finally:
        await be.aclose()


async def test_invalid_login_request_422_is_misconfigured(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    hvca.inject("login", 422, description="Invalid login request")
    with pytest.raises(BackendMisconfigured, match="Invalid login request"):
        await gs.sign(sign_request())


async def test_tokens_never_logged(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    with capture_logs() as logs:
        await gs.sign(sign_request())
    tokens = list(hvca.tokens)
    assert tokens
    dumped = repr(logs)
    assert all(t not in dumped for t in tokens)
    assert hvca.api_secret not in dumped


# -- mutual TLS ---------------------------------------------------------------------------------


async def test_mtls_required(hvca: HvcaFake) -> None:
    context = ssl.create_default_context(cadata=hvca.tls_root_pem)  # trusts the server, no client cert
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(
                f"{hvca.base_url}/login",
                data=json.dumps({"api_key": hvca.api_key, "api_secret": hvca.api_secret}).encode(),
                headers={"Content-Type": "application/json;charset=utf-8"},
                ssl=context,
            ) as resp:
                await resp.read()
    assert hvca.seen == []  # refused at the TLS layer; no HTTP request got through


async def test_client_certificate_from_another_ca_is_refused(hvca: HvcaFake) -> None:
    key, cert = client_identity(TestCa.create("Some Other CA"))
    creds = hvca.account_credentials()
    creds.update(client_certificate=pem(cert), private_key=key_pem(key))
    be = backend(config(hvca, creds), policy=HttpPolicy(max_attempts=1))
    try:
        # A real TLS stack sends an alert (-> BackendMisconfigured); aiohttp's test server just
        # resets the connection (-> BackendUnavailable). Either way nothing is issued.
        with pytest.raises((BackendMisconfigured, BackendUnavailable)):
            await be.sign(sign_request())
        assert hvca.seen == []
    finally:
        await be.aclose()


async def test_untrusted_server_certificate_is_misconfigured(hvca: HvcaFake) -> None:
    cfg = config(hvca)
    attrs = dict(cfg.attributes)
    del attrs["ca_bundle_pem"]
    be = backend(IssuerConfig(issuer_id="x", name="gs", attributes=attrs, credentials=cfg.credentials))
    try:
        with pytest.raises(BackendMisconfigured, match="CERTIFICATE_VERIFY_FAILED"):
            await be.sign(sign_request())
        assert hvca.seen == []
    finally:
        await be.aclose()


async def test_fake_enforces_hvca_framing(hvca: HvcaFake) -> None:
    """The fake must be strict, or the backend tests prove nothing."""
    creds = hvca.account_credentials()
    context = ssl.create_default_context(cadata=hvca.tls_root_pem)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "client.pem"
        path.write_text(creds["client_certificate"] + creds["private_key"])
        context.load_cert_chain(path)
    login = json.dumps({"api_key": hvca.api_key, "api_secret": hvca.api_secret}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield login

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:

        async def call(method: str, path: str, **kw: Any) -> tuple[int, str, Any]:
            async with session.request(method, hvca.base_url + path, **kw) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.json(content_type=None)

        status, ctype, doc = await call(
            "POST", "/login", data=login, headers={"Content-Type": "application/json"}
        )
        assert (status, ctype, doc) == (415, PROBLEM_CT, {"description": "Bad Content-Type"})
        status, _, _ = await call(
            "POST", "/login", data=chunks(), headers={"Content-Type": "application/json;charset=utf-8"}
        )
        assert status == 411
        status, _, doc = await call(
            "POST",
            "/login",
            data=b'{"api_key": 1}',
            headers={"Content-Type": "application/json;charset=utf-8"},
        )
        assert (status, doc["description"]) == (422, "Invalid login request")
        bad = json.dumps({"api_key": hvca.api_key, "api_secret": "nope"}).encode()
        status, _, _ = await call(
            "POST", "/login", data=bad, headers={"Content-Type": "application/json;charset=utf-8"}
        )
        assert status == 401
        status, _, _ = await call("GET", "/trustchain")
        assert status == 401
        status, _, doc = await call(
            "POST", "/login", data=login, headers={"Content-Type": "application/json;charset=utf-8"}
        )
        assert status == 200
        auth = {
            "Authorization": f"Bearer {doc['access_token']}",
            "Content-Type": "application/json;charset=utf-8",
        }
        body = {"validity": {"not_before": "now"}, "subject_dn": {"common_name": "x"}, "public_key": "x"}
        status, _, doc = await call("POST", "/certificates", data=json.dumps(body).encode(), headers=auth)
        assert status == 422 and "not_before" in doc["description"]


# -- revocation ---------------------------------------------------------------------------------


async def test_revoke(hvca: HvcaFake, gs: GlobalSignBackend) -> None:
    result = await gs.sign(sign_request())
    serial = result.certificate.serial_number
    await gs.revoke(serial, "key_compromise")
    issued = hvca.issued[format(serial, "X")]
    assert (issued.status, issued.revocation_reason) == ("REVOKED", "keyCompromise")
    (patch,) = seen(hvca, "PATCH", "/v2/certificates/")
    assert patch.headers["Content-Type"] == "application/json;charset=utf-8"
    with pytest.raises(BackendRejected, match="already revoked"):
        await gs.revoke(serial, "superseded")
    with pytest.raises(BackendRejected, match="Not found"):
        await gs.revoke(0xDEADBEEF, "superseded")
    with pytest.raises(BackendRejected, match="unsupported revocation reason"):
        await gs.revoke(serial, "because")


# -- validation ---------------------------------------------------------------------------------


def _validate(attrs: dict[str, str], creds: dict[str, str]) -> InvalidIssuerConfig:
    with pytest.raises(InvalidIssuerConfig) as info:
        ca_backends.validate("GLOBAL_SIGN", attrs, creds)
    return info.value


async def test_validation_accepts_empty_attributes(hvca: HvcaFake) -> None:
    GlobalSignBackend.validate({}, hvca.account_credentials(passphrase="s3cret"))


async def test_key_certificate_mismatch(hvca: HvcaFake) -> None:
    creds = hvca.account_credentials()
    other_key, _ = client_identity(hvca.account_ca)
    creds["private_key"] = key_pem(other_key)
    err = _validate({}, creds)
    assert err.field == "issuer_credentials.private_key" and "does not match" in err.reason


async def test_wrong_or_missing_passphrase(hvca: HvcaFake) -> None:
    creds = hvca.account_credentials(passphrase="right-passphrase")
    err = _validate({}, {**creds, "passphrase": "wrong-passphrase"})
    assert err.field == "issuer_credentials.passphrase" and "does not decrypt" in err.reason
    assert "wrong-passphrase" not in str(err) and "right-passphrase" not in str(err)
    del creds["passphrase"]
    err = _validate({}, creds)
    assert err.field == "issuer_credentials.passphrase" and "encrypted" in err.reason


async def test_traditional_encrypted_key_and_ec_client_key(hvca: HvcaFake) -> None:
    key, cert = client_identity(hvca.account_ca, rsa_key=False)
    creds = hvca.account_credentials()
    creds.update(
        client_certificate=pem(cert), private_key=key_pem(key, "pw", traditional=True), passphrase="pw"
    )
    GlobalSignBackend.validate({}, creds)
    be = backend(config(hvca, creds))
    try:
        result = await be.sign(sign_request())
        verify_issued(result.certificate, result.chain)
    finally:
        await be.aclose()


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda c, a: c.pop("api_key"), "issuer_credentials.api_key", "required"),
        (lambda c, a: c.update(api_key="k" * 1001), "issuer_credentials.api_key", "longer than 1000"),
        (lambda c, a: c.update(api_secret="s" * 251), "issuer_credentials.api_secret", "longer than 250"),
        (lambda c, a: c.update(passphrase="p" * 1001), "issuer_credentials.passphrase", "longer than 1000"),
        (
            lambda c, a: c.update(client_certificate="x" * 3001),
            "issuer_credentials.client_certificate",
            "3000",
        ),
        (lambda c, a: c.update(client_certificate="not pem"), "issuer_credentials.client_certificate", "PEM"),
        (lambda c, a: c.update(private_key="not pem"), "issuer_credentials.private_key", "PEM"),
        (lambda c, a: c.update(access_key="x"), "issuer_credentials.access_key", "unknown"),
        (lambda c, a: a.update(base_url="http://hvca.example/v2"), "issuer_attributes.base_url", "https"),
        (
            lambda c, a: a.update(base_url="https://u:p@hvca.example/v2"),
            "issuer_attributes.base_url",
            "user info",
        ),
        (lambda c, a: a.update(key_format="DER"), "issuer_attributes.key_format", "PKCS8 or PKCS10"),
        (lambda c, a: a.update(ca_bundle_pem="junk"), "issuer_attributes.ca_bundle_pem", "PEM"),
        (lambda c, a: a.update(host_url="https://x"), "issuer_attributes.host_url", "unknown"),
    ],
)
async def test_validation_errors(hvca: HvcaFake, mutate: Any, field: str, reason: str) -> None:
    creds, attrs = hvca.account_credentials(), dict[str, str]()
    mutate(creds, attrs)
    err = _validate(attrs, creds)
    assert err.field == field and reason in err.reason
    assert hvca.api_secret not in str(err)


async def test_expired_client_certificate(hvca: HvcaFake) -> None:
    key, _ = client_identity(hvca.account_ca)
    now = dt.datetime.now(dt.UTC)
    cert = hvca.account_ca.issue(
        key.public_key(),
        name("old"),
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    creds = hvca.account_credentials()
    creds.update(client_certificate=pem(cert), private_key=key_pem(key))
    err = _validate({}, creds)
    assert err.field == "issuer_credentials.client_certificate" and "expired" in err.reason


def test_backend_error_hierarchy() -> None:
    assert issubclass(BackendUnavailable, BackendError)


# -- client key handling ------------------------------------------------------------------------


async def test_client_key_reaches_openssl_encrypted_and_in_memory(
    hvca: HvcaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[tuple[str, bytes]] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, *args: Any, **kwargs: Any) -> None:
        loads.append((str(certfile), Path(certfile).read_bytes()))
        real_load(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    be = backend(config(hvca))
    await be.aclose()
    ((path, data),) = loads
    assert path.startswith("/proc/self/fd/")  # memfd: never on a file system
    assert b"ENCRYPTED PRIVATE KEY" in data and b"BEGIN PRIVATE KEY" not in data


async def test_client_key_temp_file_fallback(hvca: HvcaFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    seen_files: list[tuple[Path, int, int]] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, *args: Any, **kwargs: Any) -> None:
        p = Path(certfile)
        seen_files.append((p, p.stat().st_mode & 0o777, p.parent.stat().st_mode & 0o777))
        real_load(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    be = backend(config(hvca))
    try:
        result = await be.sign(sign_request())  # the context really works for mutual TLS
        verify_issued(result.certificate, result.chain)
    finally:
        await be.aclose()
    ((path, file_mode, dir_mode),) = seen_files
    assert (file_mode, dir_mode) == (0o600, 0o700)
    assert not path.exists() and not path.parent.exists()
