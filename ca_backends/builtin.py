"""``BUILTIN``: the server's own CA, signing in-process with ``cryptography``.

The CA key and chain are loaded once when the backend is created; a certificate is assembled from
a DER template (:mod:`ca_backends.leaf_template`) and signed inline on the event loop: well under
0.1 ms of CPU, less than handing it to a thread would cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .base import CaBackend, IssuerConfig, SignRequest, SignResult
from .errors import InvalidIssuerConfig
from .leaf_template import LeafTemplate
from .registry import register

#: Credential holding the issuing CA's private key (PKCS#8 PEM, unencrypted once decrypted at rest).
KEY_FIELD = "private_key"
#: Attribute holding the CA chain as concatenated PEM, issuing CA first.
CHAIN_FIELD = "certificate_chain"


def _load(
    attributes: Mapping[str, str], credentials: Mapping[str, str]
) -> tuple[ec.EllipticCurvePrivateKey, tuple[x509.Certificate, ...]]:
    pem_key = credentials.get(KEY_FIELD)
    if not pem_key:
        raise InvalidIssuerConfig(f"issuer_credentials.{KEY_FIELD}", "required")
    try:
        key = serialization.load_pem_private_key(pem_key.encode(), password=None)
    except ValueError as exc:
        raise InvalidIssuerConfig(
            f"issuer_credentials.{KEY_FIELD}", f"not a PEM private key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidIssuerConfig(f"issuer_credentials.{KEY_FIELD}", "the built-in CA uses an EC P-256 key")
    pem_chain = attributes.get(CHAIN_FIELD, "")
    try:
        chain = tuple(x509.load_pem_x509_certificates(pem_chain.encode()))
    except ValueError:
        raise InvalidIssuerConfig(f"issuer_attributes.{CHAIN_FIELD}", "not a PEM certificate chain") from None
    if chain[0].public_key() != key.public_key():
        raise InvalidIssuerConfig(
            f"issuer_attributes.{CHAIN_FIELD}", "the first certificate does not match the private key"
        )
    return key, chain


@register
class BuiltinBackend(CaBackend):
    """Signs with the built-in issuing CA (an intermediate under the built-in root)."""

    issuer_type: ClassVar[str] = "BUILTIN"

    def __init__(self, key: ec.EllipticCurvePrivateKey, chain: tuple[x509.Certificate, ...]) -> None:
        self._key = key
        self._chain = chain
        # Issuer, algorithm and extensions are encoded once; see leaf_template for the layout.
        self._template = LeafTemplate(key, chain[0].subject)

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Check that the key and chain parse and belong together."""
        _load(attributes, credentials)

    @classmethod
    def from_config(cls, config: IssuerConfig) -> BuiltinBackend:
        """Load the key and chain once."""
        key, chain = _load(config.attributes, config.credentials)
        return cls(key, chain)

    async def sign(self, request: SignRequest) -> SignResult:
        """Sign the certificate exactly as the policy decided, with ECDSA-SHA256."""
        der = self._template.sign(
            subject=request.subject,
            public_key=request.public_key,
            serial_number=request.serial_number,
            not_before=request.not_before,
            not_after=request.not_after,
            csr_info=request.csr.tbs_certrequest_bytes,
        )
        return SignResult(
            certificate=x509.load_der_x509_certificate(der), chain=self._chain, certificate_der=der
        )

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """The built-in chain: issuing intermediate, then root."""
        return self._chain

    async def aclose(self) -> None:
        """Nothing to release."""
