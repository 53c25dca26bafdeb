"""The admin HTTP API: certificate issuers, service configurations, trusted certificates, device
credentials, the issued-certificate audit and API keys under ``/v3``, plus ``/health``, ``/ready``,
``/metrics`` and ``/v3/openapi.json``.

Handlers are thin (decode, call the service layer or store, encode); errors are translated once, in
:mod:`bootstrap.admin.middleware`. The CLI group lives in :mod:`bootstrap.admin.cli_commands` (not
imported here, so the server does not need click's command tree).
"""

from .app import DEFAULT_RESOURCES, create_app
from .context import Resource
from .server import bound_port, server_ssl_context, start_admin

__all__ = ["DEFAULT_RESOURCES", "Resource", "bound_port", "create_app", "server_ssl_context", "start_admin"]
