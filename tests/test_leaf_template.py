"""The built-in CA's DER template produces exactly what cryptography's builder produces."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap import builtin_ca
from ca_backends import der
from ca_backends.leaf_template import LeafTemplate, build_with_cryptography, subject_public_key_info

CA = builtin_ca.generate(
    now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), organization="T", label="L", serials=(1, 2)
)
TEMPLATE = LeafTemplate(CA.issuing_key, CA.chain[0].subject)
PRIVATE_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)] + [
    ec.generate_private_key(ec.SECP384R1())
]
KEYS = [key.public_key() for key in PRIVATE_KEYS]


def request_info(key: ec.EllipticCurvePrivateKey, cn: str = "device") -> bytes:
    """The DER CertificationRequestInfo of a CSR signed by ``key``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.tbs_certrequest_bytes


# Indexed by the objects in KEYS (public_key() makes a new object each time).
REQUEST_INFOS = {
    id(public): request_info(private) for private, public in zip(PRIVATE_KEYS, KEYS, strict=True)
}

names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=16).filter(
    lambda s: s.isprintable()
)
subjects = st.builds(
    lambda cn, o, ou: x509.Name(
        ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)] if o else [])
        + ([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)] if ou else [])
        + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    ),
    names,
    st.none() | names,
    st.none() | names,
)
# Both sides of every length boundary of a DER INTEGER and of the UTCTime/GeneralizedTime switch.
serials = st.integers(min_value=1, max_value=2**159 - 1) | st.sampled_from(
    [1, 127, 128, 255, 256, 2**63, 2**126, 2**127 - 1, 2**127, 2**128 - 1, 2**159 - 1]
)
moments = st.datetimes(
    min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2100, 12, 31), timezones=st.just(dt.UTC)
) | st.sampled_from(
    [dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC), dt.datetime(2050, 1, 1, tzinfo=dt.UTC)]
)


@settings(max_examples=300, deadline=None)
@given(
    subject=subjects,
    key=st.sampled_from(KEYS),
    serial=serials,
    not_before=moments,
    days=st.integers(1, 20000),
)
def test_tbs_matches_cryptography_builder(
    subject: x509.Name, key: ec.EllipticCurvePublicKey, serial: int, not_before: dt.datetime, days: int
) -> None:
    fields = {
        "subject": subject,
        "public_key": key,
        "serial_number": serial,
        "not_before": not_before,
        "not_after": min(not_before + dt.timedelta(days=days), dt.datetime(9999, 1, 1, tzinfo=dt.UTC)),
    }
    reference = build_with_cryptography(issuer_key=CA.issuing_key, issuer_name=CA.chain[0].subject, **fields)
    assert TEMPLATE.tbs_certificate(**fields) == reference.tbs_certificate_bytes
    # The same with the public key taken from the device's request, as the built-in CA does.
    assert (
        TEMPLATE.tbs_certificate(**fields, csr_info=REQUEST_INFOS[id(key)]) == reference.tbs_certificate_bytes
    )


@pytest.mark.parametrize("key", PRIVATE_KEYS, ids=["p256-a", "p256-b", "p256-c", "p384"])
def test_public_key_info_from_the_request_is_the_canonical_encoding(key: ec.EllipticCurvePrivateKey) -> None:
    canonical = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert subject_public_key_info(key.public_key()) == canonical
    info = request_info(key)
    assert subject_public_key_info(key.public_key(), info) == canonical
    assert canonical in info


def test_a_compressed_point_in_the_request_is_encoded_again_uncompressed() -> None:
    """RFC 5480 §2.2 allows compressed points in a request; certificates carry uncompressed ones."""
    key = PRIVATE_KEYS[0]
    canonical = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    subject_public_key_info(key.public_key())  # learn the P-256 prefix
    algorithm_end = der.element(canonical, 2)[2]
    compressed = der.tlv(
        der.SEQUENCE,
        canonical[2:algorithm_end]
        + der.tlv(
            der.BIT_STRING,
            b"\x00" + key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint),
        ),
    )
    info = request_info(key)
    _, start, _ = der.element(info)
    _, _, after_version = der.element(info, start)
    _, _, after_subject = der.element(info, after_version)
    _, _, after_spki = der.element(info, after_subject)
    assert info[after_subject:after_spki] == canonical
    altered = info[start:after_subject] + compressed + info[after_spki:]
    altered_info = der.tlv(der.SEQUENCE, altered)
    assert subject_public_key_info(key.public_key(), altered_info) == canonical


@pytest.mark.parametrize(
    "info", [b"", b"\x30", b"\x30\x85\x01\x01\x01\x01\x01", b"\x02\x01\x00", b"\x1f\x01\x00"]
)
def test_unreadable_request_info_falls_back_to_encoding_the_key(info: bytes) -> None:
    canonical = KEYS[0].public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert subject_public_key_info(KEYS[0], info) == canonical


def signed(**fields: object) -> x509.Certificate:
    return x509.load_der_x509_certificate(TEMPLATE.sign(**fields))  # type: ignore[arg-type]


def test_signed_certificate_verifies_under_the_issuing_ca() -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])
    certificate = signed(
        subject=subject,
        public_key=KEYS[0],
        serial_number=42,
        not_before=now,
        not_after=now + dt.timedelta(days=1),
    )
    certificate.verify_directly_issued_by(CA.chain[0])
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"
    assert certificate.subject == subject
    assert certificate.serial_number == 42
    assert certificate.not_valid_before_utc == now
    assert certificate.public_key() == KEYS[0]
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(KEYS[0])


def test_microseconds_are_dropped_like_the_builder() -> None:
    moment = dt.datetime(2030, 5, 6, 7, 8, 9, 999_999, tzinfo=dt.UTC)
    certificate = signed(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]),
        public_key=KEYS[0],
        serial_number=1,
        not_before=moment,
        not_after=moment + dt.timedelta(days=1),
    )
    assert certificate.not_valid_before_utc == moment.replace(microsecond=0)


@pytest.mark.parametrize("serial", [0, -5])
def test_non_positive_serials_are_refused(serial: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        TEMPLATE.tbs_certificate(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]),
            public_key=KEYS[0],
            serial_number=serial,
            not_before=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        )


def test_only_p256_issuers() -> None:
    with pytest.raises(ValueError, match="P-256"):
        LeafTemplate(ec.generate_private_key(ec.SECP384R1()), CA.chain[0].subject)
