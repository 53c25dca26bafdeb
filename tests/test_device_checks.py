"""The checks a simulated device makes on the certificates it receives (device_sim.device): a load
generator that accepted anything would report a broken server as healthy."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap import builtin_ca
from bootstrap.est import pkcs7_certs_only
from ca_backends import der
from device_sim.device import (
    PKCS7_CERTS_ONLY,
    PKIX_CERT,
    SimDevice,
    VerificationError,
    parse_certificates,
    verify_chain,
)

from .pki import NOW, ca_material, p256


def issue(
    ca: builtin_ca.CaMaterial,
    key: ec.EllipticCurvePrivateKey,
    *,
    cn: str = "dev-1",
    signer: ec.EllipticCurvePrivateKey | None = None,
    client_auth: bool = True,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.issuing_certificate.subject)
        .public_key(key.public_key())
        .serial_number(1234)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=30))
    )
    if client_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signer or ca.issuing_key, hashes.SHA256())


def answer(*certificates: x509.Certificate) -> bytes:
    return pkcs7.serialize_certificates(list(certificates), Encoding.DER)


def test_a_good_answer_verifies_whichever_order_the_set_holds() -> None:
    ca, key = ca_material(), p256()
    device = SimDevice("dev-1", key)
    leaf = issue(ca, key)
    anchors = [ca.root_certificate]
    for payload in (answer(leaf, ca.issuing_certificate), answer(ca.issuing_certificate, leaf)):
        assert device.check_enrolled(payload, PKCS7_CERTS_ONLY, anchors, now=NOW) == leaf
    assert device.check_enrolled(
        leaf.public_bytes(Encoding.DER), PKIX_CERT, [ca.issuing_certificate], now=NOW
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("signed by another key under the same name", "bad signature on CN=dev-1"),
        ("issuer not in the answer", "no issuer for CN=dev-1"),
        ("expired", "CN=dev-1 is not valid now"),
        ("another device's name", "certificate CN is not our endpoint name"),
        ("no client authentication", "certificate has no extended key usage"),
        ("someone else's key", "no certificate for our key in the answer"),
        ("not PKCS#7", "answer does not parse as Content-Format 281"),
    ],
)
def test_what_a_device_refuses(case: str, reason: str) -> None:
    ca, key = ca_material(), p256()
    device = SimDevice("dev-1", key)
    chain: tuple[x509.Certificate, ...] = (ca.issuing_certificate,)
    payload: bytes | None = None
    if case == "signed by another key under the same name":
        leaf = issue(ca, key, signer=p256())
    elif case == "issuer not in the answer":
        leaf, chain = issue(ca, key), ()
    elif case == "expired":
        leaf = issue(ca, key, not_after=NOW - dt.timedelta(hours=1))
    elif case == "another device's name":
        leaf = issue(ca, key, cn="dev-2")
    elif case == "no client authentication":
        leaf = issue(ca, key, client_auth=False)
    elif case == "someone else's key":
        leaf = issue(ca, p256())
    else:
        leaf, payload = issue(ca, key), b"\x30\x03\x02\x01\x01"
    with pytest.raises(VerificationError) as caught:
        device.check_enrolled(
            payload or answer(leaf, *chain), PKCS7_CERTS_ONLY, [ca.root_certificate], now=NOW
        )
    assert caught.value.reason == reason


def test_a_chain_must_end_at_a_trust_anchor() -> None:
    ca, other = ca_material(), builtin_ca.generate(now=NOW, organization="Other", label="O", serials=(1, 2))
    leaf = issue(ca, p256())
    with pytest.raises(VerificationError, match="no issuer for CN=LwM2M Bootstrap Issuing CA T"):
        verify_chain(leaf, [ca.issuing_certificate], [other.root_certificate], now=NOW)
    with pytest.raises(VerificationError, match="bad signature on CN=LwM2M Bootstrap Issuing CA T"):
        verify_chain(leaf, [ca.issuing_certificate], [ca_material().root_certificate], now=NOW)


def test_a_verified_ca_link_is_remembered_but_a_leaf_is_always_checked() -> None:
    ca, key = ca_material(), p256()
    verify_chain(issue(ca, key), [ca.issuing_certificate], [ca.root_certificate], now=NOW)
    forged = issue(ca, key, signer=p256())
    with pytest.raises(VerificationError, match="bad signature"):
        verify_chain(forged, [ca.issuing_certificate], [ca.root_certificate], now=NOW)


def _indefinite(payload: bytes) -> bytes:
    """The same ContentInfo with its outer SEQUENCE and [0] in BER's indefinite-length form."""
    _, start, _ = der.element(payload)
    _, oid_start, oid_end = der.element(payload, start)
    _, inner, _ = der.element(payload, oid_end)
    oid = payload[oid_start - 2 : oid_end]
    return b"\x30\x80" + oid + b"\xa0\x80" + payload[inner:] + b"\x00\x00\x00\x00"


def _signed_data(certificates: bytes) -> bytes:
    """A ContentInfo around a SignedData with no signers and these ``certificates`` (RFC 5652 §5.1)."""
    data, signed_data = bytes.fromhex("2a864886f70d010701"), bytes.fromhex("2a864886f70d010702")
    members = der.tlv(der.context(0), certificates) if certificates else b""
    content = (
        der.tlv(der.INTEGER, b"\x01")
        + der.tlv(der.SET, b"")
        + der.tlv(der.SEQUENCE, der.tlv(der.OBJECT_IDENTIFIER, data))
        + members
        + der.tlv(der.SET, b"")
    )
    return der.tlv(
        der.SEQUENCE,
        der.tlv(der.OBJECT_IDENTIFIER, signed_data) + der.tlv(der.context(0), der.tlv(der.SEQUENCE, content)),
    )


def test_pkcs7_answers_read_by_hand_match_cryptography() -> None:
    ca, key = ca_material(), p256()
    leaf = issue(ca, key)
    ders = [leaf.public_bytes(Encoding.DER), ca.issuing_certificate.public_bytes(Encoding.DER)]
    for payload in (
        answer(leaf, ca.issuing_certificate),
        answer(leaf),
        pkcs7_certs_only(ders),
        _signed_data(b"".join(ders)),  # certificates in the order given, not sorted as DER would
    ):
        assert parse_certificates(payload, PKCS7_CERTS_ONLY) == pkcs7.load_der_pkcs7_certificates(payload)
    ber = _indefinite(pkcs7_certs_only(ders))  # not the fast path: cryptography reads it, and warns
    with pytest.warns(UserWarning, match="BER"):
        assert set(parse_certificates(ber, PKCS7_CERTS_ONLY)) == {leaf, ca.issuing_certificate}


@pytest.mark.parametrize(
    "payload",
    [
        _signed_data(b""),
        pkcs7_certs_only([b"\x30\x03\x02\x01\x01"]),
        b"\x30\x0b\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01",
        b"\x30\x82\x01",
    ],
    ids=["no certificates", "a member that is not a certificate", "pkcs7-data", "truncated"],
)
def test_pkcs7_answers_that_hold_no_usable_certificate(payload: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        parse_certificates(payload, PKCS7_CERTS_ONLY)
    assert caught.value.reason == "answer does not parse as Content-Format 281"
