"""Enrollment policy, in memory."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap import policy
from bootstrap.errors import BadRequest, Forbidden, Unauthorized

from .pki import NOW, csr_der, p256, rsa_key

POLICY = policy.EnrollmentPolicy(organization="Acme", organizational_unit="IoT")


def approve(der: bytes, identity: str | None = "dev-1", allow: bool = False) -> object:
    return policy.approve(
        der,
        identity=identity,
        allow_unauthenticated=allow,
        service="LWM2M",
        policy=POLICY,
        now=NOW,
        serial_number=1234567,
        request_id="r1",
    )


def test_good_csr_is_approved_with_policy_subject_and_validity() -> None:
    """A P-256 CSR whose CN is the identity yields the policy's subject and validity window."""
    request = policy.approve(
        csr_der("dev-1", extra_names=[x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
        identity="dev-1",
        allow_unauthenticated=False,
        service="LWM2M",
        policy=POLICY,
        now=NOW,
        serial_number=99,
        request_id="r",
    )
    assert request.subject.rfc4514_string() == "CN=dev-1,OU=IoT,O=Acme"
    assert request.common_name == "dev-1"
    assert request.not_before == NOW - dt.timedelta(minutes=5)
    assert request.not_after == NOW + dt.timedelta(days=365)
    assert request.serial_number == 99
    assert request.service == "LWM2M"


def test_serial_numbers_are_positive_and_large() -> None:
    """Serials are positive, odd-forced non-zero, and use more than 64 bits."""
    serial = policy.new_serial_number(lambda n: b"\xff" * n)
    assert 0 < serial < 2**127
    assert serial.bit_length() > 64
    assert policy.new_serial_number(lambda n: b"\x00" * n) == 1


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"", "empty payload"),
        (b"\x30\x03\x02\x01\x00", "not a DER PKCS#10"),
        (b"x" * 5000, "exceeds"),
    ],
)
def test_malformed_payloads_are_bad_requests(der: bytes, message: str) -> None:
    """Garbage, empty and oversized payloads get 4.00 with a specific message."""
    with pytest.raises(policy.BadCsr, match=message) as info:
        approve(der)
    assert info.value.coap_code == "4.00"


def test_tampered_signature_is_refused() -> None:
    """Flipping a byte of the signature breaks proof of possession."""
    der = bytearray(csr_der("dev-1"))
    der[-5] ^= 0x55
    with pytest.raises(BadRequest, match=r"signature|not a DER"):
        approve(bytes(der))


def test_rsa_key_is_refused_naming_allowed_types() -> None:
    """Key type policy: RSA is refused and the message names what is allowed."""
    with pytest.raises(policy.BadCsr, match=r"RSA.*allowed: EC P-256"):
        approve(csr_der("dev-1", rsa_key()))


def test_p384_is_refused_by_default_and_allowed_when_configured() -> None:
    """P-384 needs an explicit policy change."""
    der = csr_der("dev-1", ec.generate_private_key(ec.SECP384R1()), algorithm=hashes.SHA384())
    with pytest.raises(policy.BadCsr, match="secp384r1"):
        approve(der)
    relaxed = policy.EnrollmentPolicy(allowed_curves=frozenset({"secp256r1", "secp384r1"}))
    assert (
        policy.approve(
            der,
            identity="dev-1",
            allow_unauthenticated=False,
            service="LWM2M",
            policy=relaxed,
            now=NOW,
            serial_number=5,
            request_id="r",
        ).common_name
        == "dev-1"
    )


def test_csr_without_cn_is_refused() -> None:
    """The CN carries the endpoint name; without it there is nothing to check."""
    with pytest.raises(policy.BadCsr, match="exactly one CN"):
        approve(csr_der(None, extra_names=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))


def test_overlong_cn_is_refused() -> None:
    """CNs longer than ub-common-name (64) are refused."""
    key = p256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d" * 65, _validate=False)]))
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(policy.BadCsr, match="1-64"):
        approve(csr.public_bytes(Encoding.DER), identity="d" * 65)


def test_cn_must_equal_authenticated_identity() -> None:
    """A device cannot ask for another device's name: 4.03."""
    with pytest.raises(policy.IdentityMismatch) as info:
        approve(csr_der("dev-2"), identity="dev-1")
    assert isinstance(info.value, Forbidden)
    assert info.value.coap_code == "4.03"


def test_unauthenticated_enrollment_needs_the_flag() -> None:
    """Without an authenticated identity, enrollment is 4.01 unless explicitly allowed."""
    with pytest.raises(Unauthorized) as info:
        approve(csr_der("dev-1"), identity=None, allow=False)
    assert info.value.coap_code == "4.01"
    assert approve(csr_der("dev-9"), identity=None, allow=True).common_name == "dev-9"  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_bad_csr(payload: bytes) -> None:
    """No input makes the parser fail with anything but a 4.00."""
    with pytest.raises(policy.BadCsr):
        approve(payload)
