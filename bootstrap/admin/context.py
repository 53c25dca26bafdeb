"""What handlers share: the application context and the resource registry type.

A *resource* bundles the routes of one collection with its part of the OpenAPI document, so adding
a collection (bootstrap configurations, say) is one module and one entry in
:data:`bootstrap.admin.app.DEFAULT_RESOURCES` or the ``extra_resources`` argument of
:func:`~bootstrap.admin.app.create_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from ..issuer_service import IssuerService
from ..secretbox import SecretBox


@dataclass(frozen=True)
class AdminContext:
    """Dependencies of the admin handlers."""

    pool: asyncpg.Pool
    box: SecretBox
    issuers: IssuerService
    ready_check: Callable[[], Awaitable[bool]] | None
    """Extra readiness condition of the host process (transports bound, caches loaded...)."""
    registry: CollectorRegistry
    """Served at ``/metrics``."""


CONTEXT = web.AppKey("lwm2m_bootstrap_admin", AdminContext)


def context(request: web.Request) -> AdminContext:
    """The context of the application serving ``request``."""
    return request.app[CONTEXT]


@dataclass(frozen=True)
class Resource:
    """One collection of the admin API: its routes and its part of the OpenAPI document."""

    tag: str
    """OpenAPI tag grouping the operations."""
    description: str
    add_routes: Callable[[web.UrlDispatcher], None]
    """Registers the handlers on the application router."""
    paths: Mapping[str, Any]
    """OpenAPI path items keyed by path."""
    schemas: Mapping[str, Any] = field(default_factory=dict)
    """OpenAPI component schemas the path items refer to."""
