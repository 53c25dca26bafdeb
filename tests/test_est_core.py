"""EST-coaps core (routing, content formats, encoding), in memory."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from bootstrap import est
from bootstrap.errors import NotAcceptable, NotFound, UnsupportedContentFormat

from .pki import ca_material, leaf_certificate


@pytest.mark.parametrize(
    ("path", "method", "operation", "service"),
    [
        (["crts"], "GET", est.Operation.CRTS, "LWM2M"),
        (["sen"], "POST", est.Operation.SEN, "LWM2M"),
        (["LWM2M", "sen"], "POST", est.Operation.SEN, "LWM2M"),
        (["renewal-1", "sen"], "POST", est.Operation.SEN, "renewal-1"),
        (["renewal-1", "crts"], "GET", est.Operation.CRTS, "renewal-1"),
    ],
)
def test_routes(path: list[str], method: str, operation: est.Operation, service: str) -> None:
    """Short names, with and without a label, map to the operation and service."""
    assert est.route(path, method) == est.EstTarget(operation, service)


@pytest.mark.parametrize("path", [[], ["nope"], ["a", "b", "sen"], ["", "sen"], ["att"], ["label", "att"]])
def test_unknown_or_unoffered_resources_are_404(path: list[str]) -> None:
    """Unknown names, deep paths and functions not offered are 4.04."""
    with pytest.raises(NotFound):
        est.route(path, "POST")


def test_wrong_method_is_405() -> None:
    """GET on sen is 4.05."""
    with pytest.raises(est.MethodNotAllowed) as info:
        est.route(["sen"], "GET")
    assert info.value.coap_code == "4.05"


def test_request_must_be_pkcs10() -> None:
    """Only Content-Format 286 is accepted for enrollment."""
    est.check_request_format(286)
    for bad in (None, 0, 42, 281):
        with pytest.raises(UnsupportedContentFormat):
            est.check_request_format(bad)


def test_response_format_negotiation() -> None:
    """281 by default, 287 on request, anything else 4.06."""
    assert est.response_format(None) == 281
    assert est.response_format(281) == 281
    assert est.response_format(287) == 287
    with pytest.raises(NotAcceptable):
        est.response_format(50)


def test_enrolled_encoding_leaves_roots_out() -> None:
    """PKCS#7 answers carry the leaf and intermediates, not the self-signed root."""
    ca = ca_material()
    leaf = leaf_certificate(ca)
    certs = pkcs7.load_der_pkcs7_certificates(est.encode_enrolled(281, leaf, ca.chain))
    assert set(certs) == {leaf, ca.issuing_certificate}
    assert x509.load_der_x509_certificate(est.encode_enrolled(287, leaf, ca.chain)) == leaf


def test_ca_certificates_encoding() -> None:
    """crts gives the whole chain in 281 and the trust anchor in 287."""
    ca = ca_material()
    # PKCS#7 'certificates' is a SET OF: order is not meaningful (RFC 5652 §5.1).
    assert set(pkcs7.load_der_pkcs7_certificates(est.encode_ca_certificates(281, ca.chain))) == set(ca.chain)
    assert x509.load_der_x509_certificate(est.encode_ca_certificates(287, ca.chain)) == ca.root_certificate
    with pytest.raises(NotFound):
        est.encode_ca_certificates(281, ())


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_certs_only_encoding_is_cryptographys(count: int) -> None:
    """The hand-assembled PKCS#7 is byte for byte what cryptography serializes (including the DER
    order of the SET OF), for one to several certificates of different sizes."""
    ca = ca_material()
    pool = [leaf_certificate(ca, cn="d" * (i * 13 + 1)) for i in range(3)] + list(ca.chain)
    chosen = pool[:count]
    reference = pkcs7.serialize_certificates(chosen, Encoding.DER)
    assert est.pkcs7_certs_only([c.public_bytes(Encoding.DER) for c in chosen]) == reference
    assert est.pkcs7_certs_only([c.public_bytes(Encoding.DER) for c in reversed(chosen)]) == reference
    with pytest.raises(ValueError):
        est.pkcs7_certs_only([])
