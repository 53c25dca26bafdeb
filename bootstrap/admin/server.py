"""Serving the admin application on one address, over HTTPS when given a TLS context."""

from __future__ import annotations

import ssl

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)


async def start_admin(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    reuse_port: bool = False,
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port``; stop it with ``await runner.cleanup()``.

    Args:
        app: From :func:`bootstrap.admin.app.create_app`.
        host: Address to bind (``127.0.0.1`` by default in the CLI; bind wider only with TLS).
        port: TCP port; 0 picks a free one (see :func:`bound_port`).
        ssl_context: Server TLS context for HTTPS, or ``None`` for plain HTTP.
        reuse_port: Bind with SO_REUSEPORT (server workers share the admin port).

    Returns:
        The running runner.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(
        runner, host, port, ssl_context=ssl_context, reuse_address=True, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "listening",
        transport="https" if ssl_context is not None else "http",
        host=host,
        port=bound_port(runner),
        api="admin",
    )
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the first site of ``runner`` listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the admin server is not listening")


def server_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the admin API from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context
