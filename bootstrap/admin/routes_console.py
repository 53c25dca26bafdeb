"""The operator console: static HTML, CSS and JavaScript (ES modules) served at ``/console/``.

The files in ``bootstrap/admin/console/`` are read once, when the routes are added, and served from
memory with a strict Content-Security-Policy and the usual hardening headers. They need no API key
(they contain no data); the JavaScript calls ``/v3`` with the key the operator signs in with, which
it keeps in ``sessionStorage`` for the browser tab only. None of this is in the OpenAPI document:
the console is a client of the API, not part of it.

Register with :func:`add_console_routes` (idempotent) on the admin application.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web

PREFIX = "/console"
#: Served file names: flat, lower-case, one known extension (nothing else in the directory is served).
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(html|js|css|svg)$")
_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'none'",
        "object-src 'none'",
        "media-src 'none'",
        "worker-src 'none'",
        "manifest-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-src 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=()",
    # Revalidate every time (cheap: ETag -> 304), so an upgraded server never runs stale modules.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class StaticFile:
    """One console file, held in memory."""

    body: bytes
    content_type: str
    etag: str


def console_directory() -> Path:
    """Where the console's files are (package data of :mod:`bootstrap.admin`)."""
    return Path(str(resources.files("bootstrap.admin") / "console"))


def load_files(directory: Path | None = None) -> dict[str, StaticFile]:
    """Read every servable file of ``directory`` (default: :func:`console_directory`)."""
    directory = directory or console_directory()
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        body = path.read_bytes()
        files[path.name] = StaticFile(
            body=body,
            content_type=_CONTENT_TYPES[match.group(1)],
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        )
    if "index.html" not in files:
        raise RuntimeError(f"the console is not installed: no index.html in {directory}")
    return files


CONSOLE_FILES = web.AppKey("lwm2m_bootstrap_console_files", dict[str, StaticFile])


def _respond(request: web.Request, item: StaticFile) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": item.etag}
    if request.headers.get("If-None-Match", "") == item.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=item.body, headers={**headers, "Content-Type": item.content_type})


async def index(request: web.Request) -> web.Response:
    """``GET /console/``: the single page."""
    return _respond(request, request.app[CONSOLE_FILES]["index.html"])


async def static_file(request: web.Request) -> web.Response:
    """``GET /console/{name}``: a module, the style sheet or the icon."""
    item = request.app[CONSOLE_FILES].get(request.match_info["name"])
    if item is None:
        return web.Response(status=404, text="not found\n", headers=SECURITY_HEADERS)
    return _respond(request, item)


async def redirect(request: web.Request) -> web.Response:
    """``GET /console``: to ``/console/`` (relative module URLs need the slash)."""
    raise web.HTTPMovedPermanently(PREFIX + "/", headers=SECURITY_HEADERS)


def add_console_routes(app: web.Application, directory: Path | None = None) -> None:
    """Serve the console on ``app`` (before it starts); a second call does nothing."""
    if CONSOLE_FILES in app:
        return
    app[CONSOLE_FILES] = load_files(directory)
    app.router.add_get(PREFIX, redirect)
    app.router.add_get(PREFIX + "/", index)
    app.router.add_get(PREFIX + "/{name}", static_file)
