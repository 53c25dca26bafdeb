"""EST-coaps over CoAP: one transport-neutral handler and the aiocoap resource that adapts it.

:class:`EstEndpoint` takes a decoded request (:class:`EstRequest`: path below the EST root, method,
Content-Format, Accept, payload, the remote the transport authenticated) and returns an
:class:`EstReply` (dotted CoAP code, payload, options); routing, formats and errors live in
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
from dataclasses import dataclass
from typing import Any

import structlog
from aiocoap import Message
from aiocoap import resource as coap_resource
from aiocoap.util.linkformat import Link, LinkFormat
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .. import est
from ..enrollment import Enroller
from ..errors import BootstrapError, Unauthorized
from ..policy import Requester
from .identity import IdentityResolver
from .replies import code_from_dotted

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EstRequest:
    """An EST request as any CoAP adapter decodes it."""

    method: str
    """``GET`` or ``POST`` (any other method is refused with 4.05)."""
    path: tuple[str, ...]
    """Uri-Path below the EST root: ``("sen",)`` or ``("<label>", "sen")``."""
    content_format: int | None
    accept: int | None
    payload: bytes
    remote: Any
    """The transport's remote; its ``authenticated_claims`` name the client."""
    peer: str
    """``host:port`` for log lines."""


@dataclass(frozen=True, slots=True)
class EstReply:
    """What to answer: a dotted CoAP code (``"2.04"``), the payload and its options."""

    code: str
    payload: bytes
    content_format: int | None = None
    max_age: int | None = None


def _error(error: BootstrapError) -> EstReply:
    # RFC 7252 §5.5.2: a diagnostic payload is a short UTF-8 message.
    return EstReply(error.coap_code, error.message.encode()[:200], max_age=error.max_age)


_INTERNAL_ERROR = EstReply("5.00", b"internal error")


class EstEndpoint:
    """Serves ``crts``, ``sen``, ``sren`` and ``skg``, whatever carried the request."""

    def __init__(self, enroller: Enroller, identify: IdentityResolver) -> None:
        self._enroller = enroller
        self._identify = identify

    async def handle(self, request: EstRequest) -> EstReply:
        """Route, call the core, translate errors once (logged with the request's context)."""
        request_id = os.urandom(8).hex()
        with structlog.contextvars.bound_contextvars(request_id=request_id, peer=request.peer):
            try:
                target = est.route(list(request.path), request.method)
                with structlog.contextvars.bound_contextvars(
                    service=target.service, est=target.operation.value
                ):
                    if target.operation is est.Operation.CRTS:
                        return await self._crts(request, target)
                    return await self._enroll(request, target, request_id)
            except BootstrapError as error:
                log.info("EST request refused", code=error.coap_code, reason=error.message)
                return _error(error)
            except Exception:
                log.exception("EST request failed")
                return _INTERNAL_ERROR

    async def _crts(self, request: EstRequest, target: est.EstTarget) -> EstReply:
        fmt = est.response_format(request.accept)
        chain = await self._enroller.ca_certificates(target.service)
        return EstReply("2.05", est.encode_ca_certificates(fmt, chain), fmt)

    async def _server_keygen(
        self, request: EstRequest, target: est.EstTarget, request_id: str, requester: Requester | None
    ) -> EstReply:
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
        return EstReply("2.04", payload, fmt)

    async def _enroll(self, request: EstRequest, target: est.EstTarget, request_id: str) -> EstReply:
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
        return EstReply("2.04", est.encode_enrolled(fmt, enrolled.certificate, enrolled.chain), fmt)


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
        reply = await self._endpoint.handle(
            EstRequest(
                method=str(request.code),
                path=tuple(request.opt.uri_path),
                content_format=request.opt.content_format,
                accept=request.opt.accept,
                payload=request.payload,
                remote=request.remote,
                peer=str(getattr(request.remote, "hostinfo", "?")),
            )
        )
        message = Message(code=code_from_dotted(reply.code), payload=reply.payload)
        if reply.content_format is not None:
            message.opt.content_format = reply.content_format
        if reply.max_age is not None:
            message.opt.max_age = reply.max_age
        return message
