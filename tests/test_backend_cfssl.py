"""CFSSL_AUTH backend against the real ``cfssl serve`` (Debian's 1.2.0+git20160825 in CI)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

import ca_backends
from ca_backends import (
    BackendMisconfigured,
    BackendRejected,
    BackendUnavailable,
    InvalidIssuerConfig,
    IssuerConfig,
)
from ca_backends.cfssl import CfsslBackend, cfssl_subject
from ca_backends.http import CircuitBreaker, HttpPolicy

from .ca_helpers import FakeClock, device_csr, name, sign_request
from .cfssl_server import (
    AUTH_PROFILE,
    DEFAULT_EXPIRY_HOURS,
    DEFAULT_HMAC_KEY,
    DEVICE_EXPIRY_HOURS,
    CfsslNotInstalled,
    CfsslServer,
    FaultProxy,
    cfssl_serve,
    free_port,
)

#: Tests that start or talk to the real ``cfssl serve``.
interop = pytest.mark.interop

FAST = HttpPolicy(
    connect_timeout=1.0,
    request_timeout=5.0,
    backoff_base=0.01,
    backoff_max=0.05,
    default_retry_after=7.0,
    breaker_threshold=1000,
)


@pytest_asyncio.fixture(scope="module")
async def cfssl() -> AsyncIterator[CfsslServer]:
    """One real cfssl serve per module: ``device`` profile authenticated, ``default`` not."""
    try:
        async with cfssl_serve() as server:
            yield server
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


def config(
    url: str, *, key: str = DEFAULT_HMAC_KEY, profile: str | None = AUTH_PROFILE, **attrs: str
) -> IssuerConfig:
    attributes = {"host_url": url, **attrs}
    if profile is not None:
        attributes["cfssl_profile"] = profile
    return IssuerConfig(
        issuer_id="iss-cfssl", name="cfssl-test", attributes=attributes, credentials={"hmac_hex_key": key}
    )


def backend(cfg: IssuerConfig, policy: HttpPolicy = FAST, clock: FakeClock | None = None) -> CfsslBackend:
    return CfsslBackend.from_config(cfg, policy=policy, clock=clock)


def state(breaker: CircuitBreaker) -> str:
    """The breaker state, as a plain string (keeps mypy from narrowing a property)."""
    return breaker.state


# -- success ------------------------------------------------------------------------------------


@interop
async def test_sign_success_chain_verifies(cfssl: CfsslServer) -> None:
    be = ca_backends.create("CFSSL_AUTH", config(cfssl.url))
    assert isinstance(be, CfsslBackend)
    try:
        # The CSR asks for a SAN and carries only a CN; the approved subject adds O and OU.
        _, csr = device_csr("urn:dev:ops:acme-0042", dns_sans=["evil.example"])
        req = sign_request("urn:dev:ops:acme-0042", csr=csr)
        result = await be.sign(req)
        leaf = result.certificate

        # The chain is the CA CFSSL reports through /info, and it really signed the leaf.
        assert result.chain == (cfssl.ca_certificate,)
        leaf.verify_directly_issued_by(result.chain[0])
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "urn:dev:ops:acme-0042"
        assert sorted(a.rfc4514_string() for a in leaf.subject) == sorted(
            a.rfc4514_string() for a in req.subject
        )
        assert leaf.public_key() == csr.public_key()
        # "hosts": [] keeps the CSR's SANs out.
        with pytest.raises(x509.ExtensionNotFound):
            leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        # The device profile's usages and expiry were applied.
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=DEVICE_EXPIRY_HOURS)
        # ca_certificates() is the cached /info answer.
        assert await be.ca_certificates() is result.chain
    finally:
        await be.aclose()


@interop
async def test_multiple_ous_and_concurrent_signing(cfssl: CfsslServer) -> None:
    be = backend(config(cfssl.url))
    try:
        subject = name("dev-multi", o="Acme", ou=["IoT", "Sensors"], c="GB", st="England", l="London")
        reqs = [sign_request("dev-multi", subject=subject) for _ in range(8)]
        results = await asyncio.gather(*(be.sign(r) for r in reqs))
        serials = {r.certificate.serial_number for r in results}
        assert len(serials) == 8
        ous = [
            a.value
            for a in results[0].certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        ]
        assert sorted(ous) == ["IoT", "Sensors"]
    finally:
        await be.aclose()


def test_cfssl_subject_json() -> None:
    subject = name("dev-1", o="Acme", ou=["a", "b"], c="GB")
    assert cfssl_subject(subject) == {
        "CN": "dev-1",
        "names": [{"C": "GB", "O": "Acme", "OU": "a"}, {"OU": "b"}],
    }
    with pytest.raises(BackendMisconfigured, match="emailAddress"):
        cfssl_subject(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.example")]))


# -- refusals -----------------------------------------------------------------------------------


@interop
async def test_wrong_hmac_key_is_misconfigured_and_never_leaked(cfssl: CfsslServer) -> None:
    wrong = "00112233445566778899AABBCCDDEEFF"
    be = backend(config(cfssl.url, key=wrong))
    try:
        with capture_logs() as logs, pytest.raises(BackendMisconfigured) as info:
            await be.sign(sign_request())
        assert "HMAC key" in info.value.message and "invalid token" in info.value.message
        assert info.value.retry_after is None
        dumped = repr(logs) + str(info.value) + repr(be.settings)
        assert wrong not in dumped and wrong.lower() not in dumped
    finally:
        await be.aclose()


@interop
async def test_unknown_profile_falls_back_to_unauthenticated_default(cfssl: CfsslServer) -> None:
    """Debian's cfssl maps an unknown profile to ``default``; ours has no auth_key -> 400 surfaced."""
    be = backend(config(cfssl.url, profile="no-such-profile"))
    try:
        with pytest.raises(BackendMisconfigured) as info:
            await be.sign(sign_request())
        message = info.value.message
        assert "'no-such-profile'" in message and "no auth_key" in message and "'default'" in message
    finally:
        await be.aclose()


@interop
async def test_unknown_profile_silently_signs_with_authenticated_default() -> None:
    """When ``default`` has an auth_key, the unknown profile is invisible: the default expiry is used."""
    try:
        async with cfssl_serve(default_auth=True) as server:
            be = backend(config(server.url, profile="no-such-profile"))
            try:
                result = await be.sign(sign_request())
            finally:
                await be.aclose()
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    cert = result.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=DEFAULT_EXPIRY_HOURS)
    cert.verify_directly_issued_by(result.chain[0])


@interop
async def test_csr_subject_extras_are_kept_and_approved_attributes_enforced(cfssl: CfsslServer) -> None:
    """CFSSL copies attributes the request leaves empty from the CSR: the certificate is kept (it
    was issued, and must reach the audit) as long as every approved attribute is there."""
    _, csr = device_csr(subject=name("dev-7", ou=["device-chosen"], c="XX"))
    req = sign_request("dev-7", csr=csr, subject=name("dev-7", o="Acme"))
    be = backend(config(cfssl.url))
    try:
        with capture_logs() as logs:
            result = await be.sign(req)
        subject = result.certificate.subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-7"
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme"
        assert any(entry["event"] == "cfssl_subject_extras_from_csr" for entry in logs)
    finally:
        await be.aclose()


@interop
async def test_bad_csr_signature_is_rejected_with_cfssl_message(cfssl: CfsslServer) -> None:
    _, csr = device_csr("dev-bad")
    der = bytearray(csr.public_bytes(Encoding.DER))
    der[-5] ^= 0xFF  # corrupt the signature
    tampered = x509.load_der_x509_csr(bytes(der))
    be = backend(config(cfssl.url))
    try:
        with pytest.raises(BackendRejected, match=r"CFSSL refused the CSR \(9\d\d\d\)"):
            await be.sign(sign_request("dev-bad", csr=tampered))
    finally:
        await be.aclose()


@interop
async def test_wrong_host_url_path_is_misconfigured(cfssl: CfsslServer) -> None:
    """A host_url path that is not a CFSSL API root gives 404 -> operator must fix it."""
    be = backend(config(cfssl.url + "/not-cfssl"))
    try:
        with pytest.raises(BackendMisconfigured, match="/api/v1/cfssl/info"):
            await be.sign(sign_request())
    finally:
        await be.aclose()


@interop
async def test_authsign_disabled_is_misconfigured() -> None:
    """With no auth_key in any profile CFSSL does not register /authsign (plain 404)."""
    try:
        async with cfssl_serve(no_auth=True) as server:
            be = backend(config(server.url))
            try:
                assert await be.ca_certificates() == (server.ca_certificate,)  # /info still works
                with pytest.raises(BackendMisconfigured, match="no /api/v1/cfssl/authsign"):
                    await be.sign(sign_request())
            finally:
                await be.aclose()
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


# -- unavailability -----------------------------------------------------------------------------


async def test_server_down_is_unavailable_fast() -> None:
    be = backend(config(f"http://127.0.0.1:{free_port()}"))
    try:
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable) as info:
            await be.sign(sign_request())
        assert time.perf_counter() - started < 1.0
        assert info.value.retry_after == pytest.approx(7.0)
        assert info.value.coap_code == "5.03"
        assert "cannot connect" in info.value.message
    finally:
        await be.aclose()


@interop
async def test_authsign_is_not_retried_once_sent(cfssl: CfsslServer) -> None:
    async with FaultProxy(cfssl.port) as proxy:
        be = backend(config(proxy.url), HttpPolicy(request_timeout=0.4, backoff_base=0.01, max_attempts=3))
        try:
            await be.ca_certificates()  # /info through the relay, cached
            await proxy.set_mode("blackhole")
            with pytest.raises(BackendUnavailable, match="timeout"):
                await be.sign(sign_request())
            assert proxy.accepted["blackhole"] == 1  # the request may have issued: no second attempt

            await proxy.set_mode("reset")
            with pytest.raises(BackendUnavailable):
                await be.sign(sign_request())
            assert proxy.accepted["reset"] == 1

            await proxy.set_mode("forward")
            assert (await be.sign(sign_request())).certificate
        finally:
            await be.aclose()


@interop
async def test_refused_connection_is_retried_even_for_authsign(cfssl: CfsslServer) -> None:
    """Nothing was sent when the connection is refused, so authsign may be tried again."""
    async with FaultProxy(cfssl.port) as proxy:
        be = backend(config(proxy.url), HttpPolicy(backoff_base=0.2, backoff_max=0.2, max_attempts=3))
        try:
            await be.ca_certificates()
            await proxy.refuse()

            async def come_back() -> None:
                await asyncio.sleep(0.1)
                await proxy.listen()

            restart = asyncio.create_task(come_back())
            result = await be.sign(sign_request())
            await restart
            result.certificate.verify_directly_issued_by(cfssl.ca_certificate)
        finally:
            await be.aclose()


@interop
async def test_info_is_retried_on_reset(cfssl: CfsslServer) -> None:
    async with FaultProxy(cfssl.port) as proxy:
        await proxy.set_mode("reset")
        be = backend(config(proxy.url))
        try:
            with pytest.raises(BackendUnavailable):
                await be.ca_certificates()
            assert proxy.accepted["reset"] == FAST.max_attempts
        finally:
            await be.aclose()


@interop
async def test_circuit_breaker_opens_fails_fast_and_recovers(cfssl: CfsslServer) -> None:
    clock = FakeClock()
    policy = HttpPolicy(
        connect_timeout=1.0, max_attempts=1, breaker_threshold=3, breaker_cooldown=30.0, backoff_base=0.01
    )
    async with FaultProxy(cfssl.port) as proxy:
        be = backend(config(proxy.url), policy, clock)
        try:
            await proxy.refuse()
            for _ in range(3):
                with pytest.raises(BackendUnavailable, match="cannot connect"):
                    await be.sign(sign_request())
            assert state(be.http.breaker) == "open"

            await proxy.listen()  # the CA is back, but the circuit is still open
            accepted = sum(proxy.accepted.values())
            clock.advance(10)
            with pytest.raises(BackendUnavailable, match="circuit open") as info:
                await be.sign(sign_request())
            assert info.value.retry_after == pytest.approx(20.0)
            assert sum(proxy.accepted.values()) == accepted  # failed fast, no connection

            clock.advance(20)  # cool-down over: the next call is the half-open probe
            assert state(be.http.breaker) == "half_open"
            result = await be.sign(sign_request())
            assert state(be.http.breaker) == "closed"
            result.certificate.verify_directly_issued_by(cfssl.ca_certificate)
        finally:
            await be.aclose()


async def test_circuit_probe_failure_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, cooldown=5.0, clock=clock, log=structlog.get_logger())
    breaker.record_failure(breaker.before_call())
    assert state(breaker) == "closed"
    breaker.record_failure(breaker.before_call())
    assert state(breaker) == "open"
    clock.advance(5)
    probe = breaker.before_call()
    assert probe
    with pytest.raises(BackendUnavailable, match="probe") as info:
        breaker.before_call()  # only one probe at a time
    assert info.value.retry_after == 1.0
    breaker.record_failure(probe)
    assert state(breaker) == "open" and breaker.remaining() == pytest.approx(5.0)
    clock.advance(5)
    probe = breaker.before_call()
    breaker.abandon(probe)  # cancelled probe: the next caller may probe
    probe = breaker.before_call()
    breaker.record_success(probe)
    assert state(breaker) == "closed" and breaker.consecutive_failures == 0


@interop
async def test_concurrency_limit_fails_fast(cfssl: CfsslServer) -> None:
    async with FaultProxy(cfssl.port) as proxy:
        policy = HttpPolicy(max_concurrency=1, slot_wait=0.05, request_timeout=1.0, busy_retry_after=2.0)
        be = backend(config(proxy.url), policy)
        try:
            await be.ca_certificates()
            await proxy.set_mode("blackhole")
            first = asyncio.create_task(be.sign(sign_request()))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            with pytest.raises(BackendUnavailable, match="too many concurrent") as info:
                await be.sign(sign_request())
            assert time.perf_counter() - started < 0.5
            assert info.value.retry_after == 2.0
            with pytest.raises(BackendUnavailable):
                await first
        finally:
            await be.aclose()


@interop
async def test_closed_backend_refuses(cfssl: CfsslServer) -> None:
    be = backend(config(cfssl.url))
    await be.aclose()
    with pytest.raises(BackendUnavailable, match="closed"):
        await be.sign(sign_request())


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "required"),
        ("ABC", "even number"),
        ("0123456789ABCDEG", "hexadecimal"),
        ("zz", "hexadecimal"),
        ("00" * 33, "at most 32 bytes"),
        ("0123 4567", "hexadecimal"),
        ("0123456789abcdef\n", "hexadecimal"),
    ],
)
def test_bad_hmac_hex_key(key: str, reason: str) -> None:
    with pytest.raises(InvalidIssuerConfig) as info:
        ca_backends.validate("CFSSL_AUTH", {"host_url": "http://127.0.0.1:8888"}, {"hmac_hex_key": key})
    assert info.value.field == "issuer_credentials.hmac_hex_key"
    assert reason in info.value.reason
    assert info.value.http_status == 400
    if key.strip():
        assert key.strip() not in str(info.value)


@pytest.mark.parametrize("key", ["00", "aB" * 32, DEFAULT_HMAC_KEY.lower()])
def test_good_hmac_hex_key(key: str) -> None:
    CfsslBackend.validate({"host_url": "https://ca.example:8888/cfssl/"}, {"hmac_hex_key": key})


@pytest.mark.parametrize(
    ("attrs", "field", "reason"),
    [
        ({}, "issuer_attributes.host_url", "required"),
        ({"host_url": "ftp://ca.example"}, "issuer_attributes.host_url", "http"),
        ({"host_url": "ca.example:8888"}, "issuer_attributes.host_url", "http"),
        ({"host_url": "http://"}, "issuer_attributes.host_url", ""),
        ({"host_url": "http://user:pw@ca.example"}, "issuer_attributes.host_url", "user info"),
        ({"host_url": "http://ca.example/?x=1"}, "issuer_attributes.host_url", "query"),
        ({"host_url": "http://ca.example:99999"}, "issuer_attributes.host_url", ""),
        (
            {"host_url": "http://ca.example", "cfssl_proifle": "x"},
            "issuer_attributes.cfssl_proifle",
            "unknown",
        ),
        ({"host_url": "http://ca.example", "ca_bundle_pem": "x"}, "issuer_attributes.ca_bundle_pem", "PEM"),
    ],
)
def test_bad_attributes(attrs: dict[str, str], field: str, reason: str) -> None:
    with pytest.raises(InvalidIssuerConfig) as info:
        CfsslBackend.validate(attrs, {"hmac_hex_key": DEFAULT_HMAC_KEY})
    assert info.value.field == field
    assert reason in info.value.reason


def test_unknown_credential_is_named() -> None:
    with pytest.raises(InvalidIssuerConfig) as info:
        CfsslBackend.validate({"host_url": "http://ca.example"}, {"hmac_hex_key": "00", "hmac_key": "00"})
    assert info.value.field == "issuer_credentials.hmac_key"


def test_registered() -> None:
    assert {"CFSSL_AUTH", "GLOBAL_SIGN", "BUILTIN"} <= set(ca_backends.known_types())
    assert ca_backends.factory_for("CFSSL_AUTH") is CfsslBackend
