"""The admin HTTP application: middlewares, the resource table and the operational endpoints.

Adding a collection (for example bootstrap configurations) means writing a module with a
:class:`~bootstrap.admin.context.Resource` (routes + OpenAPI paths and schemas) and listing it in
:data:`DEFAULT_RESOURCES`, or passing it as ``extra_resources`` to :func:`create_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from .. import metrics
from ..issuer_service import IssuerService
from ..secretbox import SecretBox
from . import (
    middleware,
    routes_bootstrap,
    routes_certificates,
    routes_configs,
    routes_console,
    routes_devices,
    routes_issuers,
    routes_keys,
    routes_ops,
    routes_trust,
)
from .context import CONTEXT, AdminContext, Resource
from .openapi import build_document

#: The collections served under ``/v3``, in documentation order.
DEFAULT_RESOURCES: tuple[Resource, ...] = (
    routes_issuers.RESOURCE,
    routes_configs.RESOURCE,
    routes_trust.RESOURCE,
    routes_devices.RESOURCE,
    routes_certificates.RESOURCE,
    routes_keys.RESOURCE,
    routes_bootstrap.CONFIG_RESOURCE,
    routes_bootstrap.SESSION_RESOURCE,
)
#: Largest request body accepted (a PEM chain plus JSON overhead fits easily).
MAX_BODY_BYTES = 256 * 1024


def create_app(
    *,
    pool: asyncpg.Pool,
    box: SecretBox,
    issuers: IssuerService,
    ready_check: Callable[[], Awaitable[bool]] | None = None,
    metrics_registry: CollectorRegistry | None = None,
    extra_resources: Sequence[Resource] = (),
) -> web.Application:
    """Build the admin application.

    Args:
        pool: The server's database pool.
        box: Seals and opens secrets (PSK keys, issuer credentials for revocation).
        issuers: The issuer service layer.
        ready_check: Extra readiness condition for ``/ready`` (transports bound, caches loaded).
        metrics_registry: Registry served at ``/metrics``; default :data:`bootstrap.metrics.REGISTRY`.
        extra_resources: More collections to serve (and document) after the built-in ones.

    Returns:
        The application; serve it with :func:`bootstrap.admin.server.start_admin`.
    """
    app = web.Application(
        middlewares=[
            middleware.request_context,
            middleware.errors,
            middleware.authenticate,
            middleware.audit,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONTEXT] = AdminContext(
        pool=pool,
        box=box,
        issuers=issuers,
        ready_check=ready_check,
        registry=metrics_registry if metrics_registry is not None else metrics.REGISTRY,
    )
    resources = (*DEFAULT_RESOURCES, *extra_resources)
    routes_ops.add_routes(app.router)
    for item in resources:
        item.add_routes(app.router)
    routes_console.add_console_routes(app)
    app[routes_ops.OPENAPI_DOCUMENT] = build_document(resources)
    return app
