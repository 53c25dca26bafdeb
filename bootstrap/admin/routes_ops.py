"""Unauthenticated operational endpoints: ``/health``, ``/ready``, ``/metrics`` and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import context
from .openapi import OPENAPI_PATH

log = structlog.get_logger(__name__)

#: Seconds each readiness check may take.
READY_TIMEOUT = 2.0
OPENAPI_DOCUMENT = web.AppKey("lwm2m_bootstrap_openapi", dict[str, Any])


async def health(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """The database answers ``SELECT 1`` and the host's ``ready_check`` (if any) says yes."""
    ctx = context(request)
    checks: dict[str, bool] = {}
    try:
        checks["database"] = await asyncio.wait_for(ctx.pool.fetchval("SELECT 1"), READY_TIMEOUT) == 1
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("readiness: database check failed", error=str(exc) or type(exc).__name__)
        checks["database"] = False
    if ctx.ready_check is not None:
        try:
            checks["server"] = bool(await asyncio.wait_for(ctx.ready_check(), READY_TIMEOUT))
        except Exception as exc:
            log.warning("readiness: server check failed", error=str(exc) or type(exc).__name__)
            checks["server"] = False
    is_ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if is_ready else "not ready", "checks": checks}, status=200 if is_ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the configured registry."""
    body = generate_latest(context(request).registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of this application."""
    return web.json_response(request.app[OPENAPI_DOCUMENT])


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get("/health", health, allow_head=False)
    router.add_get("/ready", ready, allow_head=False)
    router.add_get("/metrics", metrics, allow_head=False)
    router.add_get(OPENAPI_PATH, openapi, allow_head=False)
