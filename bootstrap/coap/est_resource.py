"""EST-coaps over CoAP: one transport-neutral handler and the aiocoap resource that adapts it.

:class:`EstEndpoint` takes a decoded request (:class:`CoapRequest`: path below the EST root, method,
Content-Format, Accept, payload, the remote the transport authenticated) and returns an
:class:`CoapReply` (dotted CoAP code, payload, options); routing, formats and errors live in
:mod:`bootstrap.est`, the signing path in the enroller, and errors are translated to CoAP codes here,
once. Two adapters call it: :class:`EstResource` under aiocoap (block-wise transfers, every transport),
and the direct lane of :mod:`bootstrap.coap.direct` for whole-message requests on DTLS sessions.

The resource is mounted at every EST root (``/.well-known/est`` and ``/est``); the core parses the
rest of the path, so ``/est/sen`` and the labelled ``/est/<service>/sen`` share one code path.
aiocoap reassembles Block1 requests and serves Block2 slices of the response it already made
(RFC 7959), which RFC 9148 §6 requires of EST servers.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from aiocoap import Message
from aiocoap import resource as coap_resource
from aiocoap.util.linkformat import Link, LinkFormat
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .. import est, log_context
from ..enrollment import Enroller
from ..errors import BootstrapError, Unauthorized
from ..policy import Requester
from .exchange import INTERNAL_ERROR, CoapReply, CoapRequest, error_reply
from .identity import IdentityResolver
from .replies import coap_request, reply_message

log = structlog.get_logger(__name__)


class EstEndpoint:
    """Serves ``crts``, ``sen``, ``sren`` and ``skg``, whatever carried the request."""

    def __init__(self, enroller: Enroller, identify: IdentityResolver) -> None:
        self._enroller = enroller
        self._identify = identify

    async def handle(self, request: CoapRequest) -> CoapReply:
        """Route, call the core, translate errors once (logged with the request's context)."""
        request_id = os.urandom(8).hex()
        try:
            target = est.route(list(request.path), request.method)
        except BootstrapError as error:
            with log_context.bound(request_id=request_id, peer=request.peer):
                return self._refused(error)
        # One context for the whole request (binding costs per call, not per key).
        with log_context.bound(
            request_id=request_id, peer=request.peer, service=target.service, est=target.operation.value
        ):
            try:
                if target.operation is est.Operation.CRTS:
                    return await self._crts(request, target)
                return await self._enroll(request, target, request_id)
            except BootstrapError as error:
                return self._refused(error)
            except Exception:
                log.exception("EST request failed")
                return INTERNAL_ERROR

    @staticmethod
    def _refused(error: BootstrapError) -> CoapReply:
        log.info("EST request refused", code=error.coap_code, reason=error.message)
        return error_reply(error)

    async def _crts(self, request: CoapRequest, target: est.EstTarget) -> CoapReply:
        fmt = est.response_format(request.accept)
        chain = await self._enroller.ca_certificates(target.service)
        return CoapReply("2.05", est.encode_ca_certificates(fmt, chain), fmt)

    async def _server_keygen(
        self, request: CoapRequest, target: est.EstTarget, request_id: str, requester: Requester | None
    ) -> CoapReply:
        fmt = est.server_keygen_format(request.accept)
        if requester is None:
            raise Unauthorized("server-side key generation needs a DTLS/TLS-authenticated client")
        key, enrolled = await self._enroller.enroll_with_generated_key(
            identity=requester.endpoint,
            service=target.service,
            request_id=request_id,
            client_csr_der=request.payload,
        )
        payload = est.encode_server_keygen(
            key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
            enrolled.certificate,
            enrolled.chain,
        )
        return CoapReply("2.04", payload, fmt)

    async def _enroll(self, request: CoapRequest, target: est.EstTarget, request_id: str) -> CoapReply:
        est.check_request_format(request.content_format)
        requester = self._identify(request.remote)
        if target.operation is est.Operation.SKG:
            return await self._server_keygen(request, target, request_id, requester)
        fmt = est.response_format(request.accept)
        if target.operation is est.Operation.SREN:
            enrolled = await self._enroller.reenroll(
                csr_der=request.payload, requester=requester, service=target.service, request_id=request_id
            )
        else:
            enrolled = await self._enroller.enroll(
                csr_der=request.payload,
                identity=requester.endpoint if requester else None,
                service=target.service,
                request_id=request_id,
            )
        payload = est.encode_enrolled(
            fmt, enrolled.certificate, enrolled.chain, leaf_der=enrolled.certificate_der
        )
        return CoapReply("2.04", payload, fmt)


class EstResource(coap_resource.Resource, coap_resource.PathCapable):  # type: ignore[misc]
    """aiocoap adapter: an :class:`EstEndpoint` below one EST root."""

    def __init__(self, endpoint: EstEndpoint) -> None:
        super().__init__()
        self._endpoint = endpoint

    def get_resources_as_linkheader(self) -> LinkFormat:
        """Links for /.well-known/core, with ``rt`` and ``ct`` per RFC 9148 §4.1."""
        return LinkFormat(
            [Link("/" + op.value, **est.LINK_ATTRIBUTES[op]) for op in est.Operation if op in est.SUPPORTED]
        )

    async def render(self, request: Any) -> Message:
        """Decode, handle, encode."""
        return reply_message(await self._endpoint.handle(coap_request(request)))
