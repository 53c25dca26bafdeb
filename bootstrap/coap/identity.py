"""Reading the authenticated identity a transport attached to a request's remote."""

from __future__ import annotations

from typing import Any


def identity_name(remote: Any) -> str | None:
    """The endpoint name the (D)TLS handshake authenticated, or ``None`` (plain CoAP).

    Transports put claims on ``remote.authenticated_claims``; ours put one object with a ``name``
    (the certificate CN or the PSK identity). The cores only ever see that string.
    """
    for claim in getattr(remote, "authenticated_claims", ()) or ():
        name = getattr(claim, "name", None)
        if isinstance(name, str) and name:
            return name
    return None
