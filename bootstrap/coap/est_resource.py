"""The EST-coaps resource: a thin aiocoap adapter around :mod:`bootstrap.est` and the enroller.

Mounted at every EST root (``/.well-known/est`` and ``/est``); the core parses the rest of the path,
so ``/est/sen`` and the labelled ``/est/<service>/sen`` share one code path. aiocoap reassembles
Block1 requests and serves Block2 slices of the response it already made (RFC 7959), which RFC 9148
§6 requires of EST servers.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from aiocoap import Code, Message
from aiocoap import resource as coap_resource
from aiocoap.util.linkformat import Link, LinkFormat
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .. import est
from ..enrollment import Enroller
from ..errors import BootstrapError, Unauthorized
from ..policy import Requester
from .identity import IdentityResolver
from .replies import error_reply, internal_error

log = structlog.get_logger(__name__)


class EstResource(coap_resource.Resource, coap_resource.PathCapable):  # type: ignore[misc]
    """Serves ``crts``, ``sen``, ``sren`` and ``skg`` below one EST root."""

    def __init__(self, enroller: Enroller, identify: IdentityResolver) -> None:
        super().__init__()
        self._enroller = enroller
        self._identify = identify

    def get_resources_as_linkheader(self) -> LinkFormat:
        """Links for /.well-known/core, with ``rt`` and ``ct`` per RFC 9148 §4.1."""
        return LinkFormat(
            [Link("/" + op.value, **est.LINK_ATTRIBUTES[op]) for op in est.Operation if op in est.SUPPORTED]
        )

    async def render(self, request: Any) -> Message:
        """Route, call the core, translate errors once."""
        request_id = os.urandom(8).hex()
        peer = str(getattr(request.remote, "hostinfo", "?"))
        with structlog.contextvars.bound_contextvars(request_id=request_id, peer=peer):
            try:
                target = est.route(list(request.opt.uri_path), str(request.code))
                with structlog.contextvars.bound_contextvars(
                    service=target.service, est=target.operation.value
                ):
                    if target.operation is est.Operation.CRTS:
                        return await self._crts(request, target)
                    return await self._enroll(request, target, request_id)
            except BootstrapError as error:
                log.info("EST request refused", code=error.coap_code, reason=error.message)
                return error_reply(error)
            except Exception:
                log.exception("EST request failed")
                return internal_error()

    async def _crts(self, request: Any, target: est.EstTarget) -> Message:
        fmt = est.response_format(request.opt.accept)
        chain = await self._enroller.ca_certificates(target.service)
        return Message(code=Code.CONTENT, payload=est.encode_ca_certificates(fmt, chain), content_format=fmt)

    async def _server_keygen(
        self, request: Any, target: est.EstTarget, request_id: str, requester: Requester | None
    ) -> Message:
        fmt = est.server_keygen_format(request.opt.accept)
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
        return Message(code=Code.CHANGED, payload=payload, content_format=fmt)

    async def _enroll(self, request: Any, target: est.EstTarget, request_id: str) -> Message:
        est.check_request_format(request.opt.content_format)
        requester = self._identify(request.remote)
        if target.operation is est.Operation.SKG:
            return await self._server_keygen(request, target, request_id, requester)
        fmt = est.response_format(request.opt.accept)
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
        return Message(
            code=Code.CHANGED,
            payload=est.encode_enrolled(fmt, enrolled.certificate, enrolled.chain),
            content_format=fmt,
        )
