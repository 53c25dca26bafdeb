"""Reading the authenticated identity a transport attached to a request's remote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..identity import DeviceIdentity
from ..policy import Requester


class IdentityResolver:
    """Turns ``remote.authenticated_claims`` into the requester the cores reason about.

    Certificate identities name the endpoint by their CN. PSK identities are mapped to the endpoint
    they were registered for (``lwm2m-bootstrap device add``); an identity removed since its
    handshake resolves to nobody. Plain CoAP has no claims and resolves to ``None``.
    """

    def __init__(self, psk_endpoint: Callable[[str], str | None] | None = None) -> None:
        self._psk_endpoint = psk_endpoint

    def __call__(self, remote: Any) -> Requester | None:
        for claim in getattr(remote, "authenticated_claims", ()) or ():
            if not isinstance(claim, DeviceIdentity):
                continue
            if claim.kind == "x509":
                return Requester(endpoint=claim.name, kind="x509", certificate=claim.certificate)
            if claim.kind == "psk" and self._psk_endpoint is not None:
                endpoint = self._psk_endpoint(claim.name)
                return Requester(endpoint=endpoint, kind="psk") if endpoint else None
        return None
