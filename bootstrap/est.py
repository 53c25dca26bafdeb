"""EST over secure CoAP (RFC 9148), sans-I/O: routing, content formats and response encoding.

The CoAP adapter decodes a request into (path below the EST root, method, Content-Format, Accept)
and asks this module what the request means and how to encode the answer. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_backends import der

from .errors import BadRequest, NotAcceptable, NotFound, UnsupportedContentFormat

T = TypeVar("T")

# Content-Format numbers (RFC 9148 §8.1; IANA CoAP Content-Formats).
PKCS7_CERTS_ONLY = 281
MULTIPART_CORE = 62
PKCS8 = 284
CSRATTRS = 285
PKCS10 = 286
PKIX_CERT = 287

#: Service used when the request carries no label (RFC 9148 §3.1 "arbitrary label").
DEFAULT_SERVICE = "LWM2M"

#: Roots the EST resources are served under: the RFC 9148 default and the short root
#: that Anjay and the Pelion client use.
ROOTS: tuple[tuple[str, ...], ...] = ((".well-known", "est"), ("est",))


class Operation(enum.StrEnum):
    """EST functions by their RFC 9148 §3.1 short names."""

    CRTS = "crts"  # /cacerts
    SEN = "sen"  # /simpleenroll
    SREN = "sren"  # /simplereenroll
    SKG = "skg"  # /serverkeygen
    ATT = "att"  # /csrattrs


#: Method each operation answers (RFC 9148 §3.1 table).
METHOD = {
    Operation.CRTS: "GET",
    Operation.SEN: "POST",
    Operation.SREN: "POST",
    Operation.SKG: "POST",
    Operation.ATT: "GET",
}

#: Operations this server implements; the others answer 4.04 (RFC 9148 §4.6: "not available").
SUPPORTED = frozenset({Operation.CRTS, Operation.SEN, Operation.SREN, Operation.SKG})

#: Link attributes for /.well-known/core discovery (RFC 9148 §4.1), per operation.
LINK_ATTRIBUTES = {
    Operation.CRTS: {"rt": "ace.est.crts", "ct": "281 287"},
    Operation.SEN: {"rt": "ace.est.sen", "ct": "281 287"},
    Operation.SREN: {"rt": "ace.est.sren", "ct": "281 287"},
    Operation.SKG: {"rt": "ace.est.skg", "ct": "62"},
    Operation.ATT: {"rt": "ace.est.att", "ct": "285"},
}


@dataclass(frozen=True)
class EstTarget:
    """What an EST request addresses."""

    operation: Operation
    service: str
    """Certificate issuer configuration reference: the label, or ``LWM2M`` when unlabelled."""


def route(path: Sequence[str], method: str) -> EstTarget:
    """Map the path below an EST root (``["sen"]`` or ``["<label>", "sen"]``) and the method."""
    if len(path) == 1:
        label, name = None, path[0]
    elif len(path) == 2:
        label, name = path[0], path[1]
    else:
        raise NotFound("unknown EST resource")
    try:
        operation = Operation(name)
    except ValueError:
        raise NotFound(f"unknown EST resource {name!r}") from None
    if operation not in SUPPORTED:
        raise NotFound(f"EST {operation.value} is not offered by this server")
    if label == "":
        raise NotFound("empty EST label")
    if METHOD[operation] != method:
        raise MethodNotAllowed(f"EST {operation.value} takes {METHOD[operation]}")
    return EstTarget(operation, label or DEFAULT_SERVICE)


class MethodNotAllowed(BadRequest):
    """Wrong method for the EST resource (CoAP 4.05)."""

    coap_code = "4.05"
    http_status = 405


def check_request_format(content_format: int | None) -> None:
    """Enrollment payloads must be ``application/pkcs10`` (286, RFC 9148 §4.2)."""
    if content_format != PKCS10:
        got = "none" if content_format is None else str(content_format)
        raise UnsupportedContentFormat(f"expected Content-Format 286 (application/pkcs10), got {got}")


def response_format(accept: int | None) -> int:
    """Certificates come as 281 by default, 287 when the client asks (RFC 9148 §4.2)."""
    if accept is None or accept == PKCS7_CERTS_ONLY:
        return PKCS7_CERTS_ONLY
    if accept == PKIX_CERT:
        return PKIX_CERT
    raise NotAcceptable(f"cannot answer in Content-Format {accept}; offered: 281, 287")


def server_keygen_format(accept: int | None) -> int:
    """``skg`` answers multipart-core (62): the key and the certificates (RFC 9148 §4.8)."""
    if accept is None or accept == MULTIPART_CORE:
        return MULTIPART_CORE
    raise NotAcceptable(f"serverkeygen answers Content-Format 62 (multipart-core), not {accept}")


def encode_server_keygen(
    private_key_pkcs8: bytes, leaf: x509.Certificate, chain: Sequence[x509.Certificate]
) -> bytes:
    """multipart-core (RFC 8710): ``[284, PKCS#8 key, 281, PKCS#7 certs-only]`` (RFC 9148 §4.8)."""
    return cbor2.dumps(
        [PKCS8, private_key_pkcs8, PKCS7_CERTS_ONLY, encode_enrolled(PKCS7_CERTS_ONLY, leaf, chain)]
    )


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


#: ContentInfo.contentType id-signedData and EncapsulatedContentInfo for id-data (RFC 5652 §3, §5.2).
_ID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_DATA_CONTENT = bytes.fromhex("300b06092a864886f70d010701")
#: SignedData.version 1, empty digestAlgorithms (RFC 5652 §5.1): a certs-only message signs nothing.
_SIGNED_DATA_HEAD = bytes.fromhex("0201013100") + _DATA_CONTENT
_EMPTY_SIGNER_INFOS = bytes.fromhex("3100")


def pkcs7_certs_only(certificates: Sequence[bytes]) -> bytes:
    """A degenerate SignedData carrying DER ``certificates`` (application/pkcs7-mime;
    smime-type=certs-only, RFC 8551 §3.2.2), encoded as ``cryptography``'s
    ``pkcs7.serialize_certificates`` encodes it (the certificates as a DER SET OF, so in DER
    order rather than the given one), without re-encoding every certificate per answer."""
    if not certificates:
        raise ValueError("a certs-only message carries at least one certificate")
    signed_data = der.tlv(
        der.SEQUENCE,
        _SIGNED_DATA_HEAD + der.tlv(der.context(0), b"".join(sorted(certificates))) + _EMPTY_SIGNER_INFOS,
    )
    return der.tlv(der.SEQUENCE, _ID_SIGNED_DATA + der.tlv(der.context(0), signed_data))


def encode_enrolled(
    fmt: int, leaf: x509.Certificate, chain: Sequence[x509.Certificate], *, leaf_der: bytes | None = None
) -> bytes:
    """An enrollment answer: PKCS#7 certs-only with the leaf and the intermediates (roots are left
    to ``crts``), or the leaf alone as DER for 287 (``leaf_der``: the leaf's encoding, if known)."""
    if not leaf_der:
        leaf_der = leaf.public_bytes(Encoding.DER)
    if fmt == PKIX_CERT:
        return leaf_der
    return pkcs7_certs_only([leaf_der, *_intermediates(tuple(chain))])


class _PerChain(Generic[T]):
    """Values computed once per CA chain, found by the chain's identity.

    Backends hand back the same chain tuple with every certificate, and ``functools.lru_cache``
    would hash the certificates in it on every call, which costs about as much as encoding the
    answer. A chain that is not the same object (a CA that sends its chain with each certificate)
    is computed afresh; at most ``size`` chains are kept."""

    def __init__(self, compute: Callable[[tuple[x509.Certificate, ...]], T], size: int = 64) -> None:
        self._compute = compute
        self._size = size
        self._values: dict[int, tuple[tuple[x509.Certificate, ...], T]] = {}

    def __call__(self, chain: tuple[x509.Certificate, ...]) -> T:
        known = self._values.get(id(chain))
        if known is not None and known[0] is chain:
            return known[1]
        value = self._compute(chain)
        if len(self._values) >= self._size:
            self._values.clear()
        self._values[id(chain)] = (chain, value)  # the chain is kept, so its id stays its own
        return value


def _intermediates_of(chain: tuple[x509.Certificate, ...]) -> tuple[bytes, ...]:
    """The DER of the chain's certificates that are not roots (a few chains, asked for per answer)."""
    return tuple(c.public_bytes(Encoding.DER) for c in chain if not _self_signed(c))


_intermediates = _PerChain(_intermediates_of)


def encode_ca_certificates(fmt: int, chain: Sequence[x509.Certificate]) -> bytes:
    """A ``crts`` answer: the whole CA chain as PKCS#7, or, for 287, the trust anchor (the last one)."""
    if not chain:
        raise NotFound("no CA certificates are known for this service")
    # Encoded once per chain and format: many devices ask ``crts`` first, and the answer only
    # changes when the CA does (a new chain is a new key).
    return _ca_answers(tuple(chain))[0 if fmt == PKIX_CERT else 1]


def _ca_answers_of(chain: tuple[x509.Certificate, ...]) -> tuple[bytes, bytes]:
    """The ``crts`` answers for 287 (the trust anchor) and 281 (the chain as PKCS#7)."""
    return chain[-1].public_bytes(Encoding.DER), pkcs7_certs_only(
        [c.public_bytes(Encoding.DER) for c in chain]
    )


_ca_answers = _PerChain(_ca_answers_of)
