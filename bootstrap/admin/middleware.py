"""The admin API's middlewares, outermost first: request id and access metrics, error translation,
authentication, and the audit of changes.

Errors are translated here and only here: :class:`~bootstrap.errors.BootstrapError` and
:class:`~ca_backends.BackendError` carry ``http_status``, ``message`` and (optionally) ``field``;
aiohttp's own HTTP exceptions (unknown route, wrong method, body too large) keep their status.
Anything else is a 500 whose body says nothing about the cause (the log has the traceback).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from ca_backends import BackendError

from .. import log_context
from ..errors import BootstrapError, Unauthorized
from ..metrics import METRICS
from . import audit_log, keys
from .context import context
from .http import begin_request, end_request, request_state

log = structlog.get_logger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Failures that mean Postgres cannot be reached right now (503, retry), not a bug (500).
_DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
#: Paths probed often by orchestrators and scrapers; their requests are logged at debug level.
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: Paths under /v3 that need no key.
PUBLIC_PATHS = frozenset({"/v3/openapi.json"})
ERROR_TYPES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    424: "failed_dependency",
    500: "internal_server_error",
    503: "service_unavailable",
}


def error_response(
    request: web.Request,
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The error object: ``code``, ``object``, ``type``, ``message``, ``request_id``, ``fields``."""
    body: dict[str, Any] = {
        "code": status,
        "object": "error",
        "type": ERROR_TYPES.get(status, "client_error" if status < 500 else "server_error"),
        "message": message,
        "request_id": request_state().request_id,
        "fields": [{"field": field, "message": message}] if field else [],
    }
    out_headers = dict(headers or {})
    if status == 401:
        out_headers["WWW-Authenticate"] = 'Bearer realm="lwm2m-bootstrap admin"'
    return web.json_response(body, status=status, headers=out_headers)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (a sane incoming ``X-Request-Id`` is kept), bind it into the log
    context, count and time the request."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = begin_request(request_id)
    started = time.perf_counter()
    try:
        with log_context.bound(request_id=request_id):
            response = await handler(request)
            elapsed = time.perf_counter() - started
            (log.debug if request.path in _QUIET_PATHS else log.info)(
                "admin request",
                method=request.method,
                path=request.path,
                status=response.status,
                ms=round(elapsed * 1000, 1),
            )
    finally:
        end_request(token)
    response.headers["X-Request-Id"] = request_id
    route = _route_name(request)
    METRICS.admin_requests.labels(method=request.method, route=route, status=str(response.status)).inc()
    METRICS.admin_request_seconds.labels(method=request.method, route=route).observe(elapsed)
    return response


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no such resource: {request.path}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "the request body is too large"
    return exc.reason


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate every error into the error object (the one place that does)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(request, exc.status, _http_exception_message(request, exc), headers=headers)
    except BootstrapError as exc:
        return error_response(request, exc.http_status, exc.message, field=exc.field)
    except BackendError as exc:
        return error_response(request, exc.http_status, exc.message, field=getattr(exc, "field", None))
    except _DATABASE_DOWN as exc:
        log.error("admin request: database unavailable", error=str(exc) or type(exc).__name__)
        return error_response(
            request, 503, "the database is unavailable; retry later", headers={"Retry-After": "5"}
        )
    except Exception:
        log.exception("admin request failed", method=request.method, path=request.path)
        return error_response(request, 500, "internal error; the server log has the details")


def _protected(path: str) -> bool:
    return (path == "/v3" or path.startswith("/v3/")) and path not in PUBLIC_PATHS


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <API key>`` on ``/v3/*`` (except the OpenAPI document)."""
    if not _protected(request.path):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
    key = await keys.authenticate(context(request).pool, token)
    if key is None:
        log.warning("admin authentication failed", method=request.method, path=request.path)
        raise Unauthorized("the API key is not valid or was revoked")
    request_state().api_key = key
    with log_context.bound(api_key=key.name):
        return await handler(request)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, web.HTTPException):
        return exc.status
    if isinstance(exc, BootstrapError | BackendError):
        return exc.http_status
    return 503 if isinstance(exc, _DATABASE_DOWN) else 500


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every change (POST, PUT, PATCH, DELETE) made with an API key, failed ones included."""
    key = request_state().api_key
    if request.method not in _CHANGES or key is None:
        return await handler(request)
    try:
        response = await handler(request)
    except Exception as exc:
        await _record(request, key, _status_of(exc))
        raise
    await _record(request, key, response.status)
    return response


async def _record(request: web.Request, key: keys.ApiKey, status: int) -> None:
    target = request_state().audit_target
    if target is None:
        target = request.match_info.get("id") or request.match_info.get("endpoint")
    await audit_log.record(
        context(request).pool,
        audit_log.AdminChange(
            api_key_id=key.id,
            api_key_name=key.name,
            method=request.method,
            path=request.path,
            target_id=target,
            status=status,
            request_id=request_state().request_id,
        ),
    )
