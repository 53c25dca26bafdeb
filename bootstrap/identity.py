"""The authenticated identity of a device, as established by the transport.

Protocol cores receive a :class:`DeviceIdentity` (for example from
``request.remote.authenticated_claims`` in the CoAP adapter) and never touch the
DTLS layer. This module deliberately imports nothing from aiocoap or OpenSSL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography import x509

__all__ = ["DeviceIdentity", "IdentityKind"]

IdentityKind = Literal["x509", "psk"]


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who the peer proved to be during the (D)TLS handshake.

    ``kind`` is ``"x509"`` for a client certificate verified against the trusted
    bootstrap CAs (``name`` is the subject common name, ``certificate`` the leaf)
    or ``"psk"`` for a pre-shared key (``name`` is the PSK identity decoded as
    UTF-8, ``certificate`` is ``None``).
    """

    kind: IdentityKind
    name: str
    certificate: x509.Certificate | None = None

    def __repr__(self) -> str:
        return f"DeviceIdentity(kind={self.kind!r}, name={self.name!r})"
