"""``/bs`` and ``/bspack``: the LwM2M Bootstrap Interface over CoAP, thin adapters.

``POST /bs?ep=..&pct=..`` (Bootstrap-Request) is answered 2.04 first; then the server drives the
session by sending requests back to the device over the same (D)TLS session (role reversal) until
Bootstrap-Finish. ``GET /bspack?ep=..`` (Bootstrap-Pack-Request, LwM2M 1.2) answers the whole
configuration in one payload. The protocol decisions are in :mod:`bootstrap.lwm2m.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from aiocoap import Code, Message
from aiocoap import resource as coap_resource

from .. import log_context
from ..bootstrapper import Bootstrapper, check_identity, parse_query
from ..errors import BootstrapError
from ..lwm2m.session import BootstrapSession, Operation, build_pack, request_version
from .direct import DirectLane
from .exchange import INTERNAL_ERROR, CoapReply, CoapRequest, error_reply
from .identity import IdentityResolver
from .replies import coap_request, reply_message
from .wire import dotted

log = structlog.get_logger(__name__)

_METHODS = {"GET": Code.GET, "PUT": Code.PUT, "POST": Code.POST, "DELETE": Code.DELETE}


def _transport(remote: Any) -> str:
    return str(getattr(remote, "scheme", None) or "coap")


def to_message(operation: Operation, remote: Any) -> Message:
    """The CoAP request for a session operation, addressed to the device."""
    path = tuple(part for part in operation.path.split("/") if part)
    message = Message(code=_METHODS[operation.method], uri_path=path, payload=operation.payload)
    if operation.content_format is not None:
        message.opt.content_format = operation.content_format
    if operation.accept is not None:
        message.opt.accept = operation.accept
    message.remote = remote
    return message


class BootstrapEndpoint:
    """The Bootstrap Interface, whatever carried the request (aiocoap or the DTLS direct lane)."""

    def __init__(
        self, bootstrapper: Bootstrapper, identify: IdentityResolver, context: Callable[[], Any]
    ) -> None:
        self._bootstrapper = bootstrapper
        self._identify = identify
        self._context = context

    async def request(self, request: CoapRequest) -> CoapReply:
        """``POST /bs``: 2.04, and the session starts once that answer is sent (Leshan does the same:
        the device hears "accepted" before the first server-to-client request)."""
        request_id = self._bootstrapper.new_request_id()
        with log_context.bound(request_id=request_id, peer=request.peer):
            try:
                if request.method != "POST":
                    return CoapReply("4.05", b"Bootstrap-Request is POST")
                return CoapReply("2.04", after=await self._prepare(request, request_id))
            except BootstrapError as error:
                log.info("Bootstrap-Request refused", code=error.coap_code, reason=error.message)
                return error_reply(error)
            except Exception:
                log.exception("Bootstrap-Request failed")
                return INTERNAL_ERROR

    async def pack(self, request: CoapRequest) -> CoapReply:
        """``GET /bspack``: validate, prepare, encode in the Accept'ed format, record."""
        request_id = self._bootstrapper.new_request_id()
        with log_context.bound(request_id=request_id, peer=request.peer):
            try:
                if request.method != "GET":
                    return CoapReply("4.05", b"Bootstrap-Pack-Request is GET")
                query = parse_query(list(request.query))
                endpoint = check_identity(
                    query,
                    self._identify(request.remote),
                    allow_unauthenticated=self._bootstrapper.allow_unauthenticated,
                )
                log_context.bind(endpoint=endpoint)
                started = self._bootstrapper.now()
                fmt = request.accept
                config, credentials = await self._bootstrapper.prepare(endpoint, request_id)
                payload = build_pack(config, credentials, fmt)
            except BootstrapError as error:
                log.info("Bootstrap-Pack-Request refused", code=error.coap_code, reason=error.message)
                return error_reply(error)
            except Exception:
                log.exception("Bootstrap-Pack-Request failed")
                return INTERNAL_ERROR
            await self._bootstrapper.record(
                endpoint=endpoint,
                method="pack",
                transport=_transport(request.remote),
                started_at=started,
                outcome="success",
                reason=None,
                security_mode=config.security_label,
            )
            return CoapReply("2.05", payload, 112 if fmt is None else fmt)

    async def _prepare(self, request: CoapRequest, request_id: str) -> Callable[[], None]:
        query = parse_query(list(request.query))
        endpoint = check_identity(
            query,
            self._identify(request.remote),
            allow_unauthenticated=self._bootstrapper.allow_unauthenticated,
        )
        log_context.bind(endpoint=endpoint)
        started = self._bootstrapper.now()
        config, credentials = await self._bootstrapper.prepare(endpoint, request_id)
        loop = asyncio.get_running_loop()
        session = BootstrapSession(
            endpoint=endpoint,
            lwm2m_version=request_version(query.preferred_format),
            preferred_format=query.preferred_format,
            config=config,
            credentials=credentials,
            now=loop.time(),
        )
        remote = request.remote

        def start() -> None:
            task = asyncio.create_task(self._drive(session, remote, started, config.security_label))
            self._bootstrapper.register(endpoint, session, task)

        return start

    async def _drive(self, session: BootstrapSession, remote: Any, started: Any, mode: str) -> None:
        loop = asyncio.get_running_loop()
        with log_context.bound(endpoint=session.endpoint):
            try:
                while session.outcome is None:
                    operation = session.next_operation(now=loop.time())
                    if operation is None:
                        timer = session.get_timer()
                        await asyncio.sleep(max(0.0, (timer or loop.time()) - loop.time()))
                        session.handle_timer(loop.time())
                        continue
                    await self._exchange(session, operation, remote)
            except asyncio.CancelledError:
                session.cancel("superseded by a new Bootstrap-Request")
            finally:
                await self._bootstrapper.record(
                    endpoint=session.endpoint,
                    method="request",
                    transport=_transport(remote),
                    started_at=started,
                    outcome=session.outcome or "failed",
                    reason=session.reason,
                    security_mode=mode,
                )

    async def _exchange(self, session: BootstrapSession, operation: Operation, remote: Any) -> None:
        """Send one of the session's requests and hand the answer (or the failure) back to it."""
        loop = asyncio.get_running_loop()
        timer = session.get_timer()
        try:
            code, payload, content_format = await asyncio.wait_for(
                self._send(operation, remote), max(0.0, (timer or loop.time()) - loop.time())
            )
        except TimeoutError:
            session.handle_timer(loop.time())
            return
        except Exception as exc:  # the (D)TLS session ended, the device reset the request, ...
            session.cancel(f"{operation.kind} {operation.path}: {type(exc).__name__} {exc}".strip())
            return
        session.handle_response(operation.op_id, code, payload, content_format, loop.time())

    async def _send(self, operation: Operation, remote: Any) -> tuple[str, bytes, int | None]:
        """(code, payload, Content-Format) of the answer: through the DTLS direct lane when the
        request fits one message, else through aiocoap (block-wise Writes, other transports)."""
        lane: DirectLane | None = getattr(remote, "direct_lane", None)
        if lane is not None and lane.can_carry(remote, operation.payload):
            answer = await lane.request(
                remote,
                method=operation.method,
                path=tuple(part for part in operation.path.split("/") if part),
                payload=operation.payload,
                content_format=operation.content_format,
                accept=operation.accept,
            )
            return dotted(answer.code), answer.payload, answer.content_format
        request = self._context().request(to_message(operation, remote))
        try:
            response = await request.response
        finally:
            if not request.response.done():
                with contextlib.suppress(Exception):
                    request.response.cancel()
        fmt = response.opt.content_format
        return response.code.dotted, response.payload, None if fmt is None else int(fmt)


class BootstrapRequestResource(coap_resource.Resource):  # type: ignore[misc]
    """aiocoap adapter for ``POST /bs``."""

    rt = "oma.lwm2m.bs"

    def __init__(self, endpoint: BootstrapEndpoint) -> None:
        super().__init__()
        self._endpoint = endpoint

    async def render_to_pipe(self, pipe: Any) -> None:
        """Answer, then start the session (its first request must follow the 2.04)."""
        reply = await self._endpoint.request(coap_request(pipe.request))
        pipe.add_response(reply_message(reply), is_last=True)
        if reply.after is not None:
            reply.after()


class BootstrapPackResource(coap_resource.Resource):  # type: ignore[misc]
    """aiocoap adapter for ``GET /bspack`` (LwM2M 1.2)."""

    rt = "oma.lwm2m.bspack"

    def __init__(self, endpoint: BootstrapEndpoint) -> None:
        super().__init__()
        self._endpoint = endpoint

    async def render_get(self, request: Any) -> Message:
        """Decode, handle, encode."""
        return reply_message(await self._endpoint.pack(coap_request(request)))
