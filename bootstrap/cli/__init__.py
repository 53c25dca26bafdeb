"""The ``lwm2m-bootstrap`` command: serve, demo, and management commands.

Every command takes the same storage options (``--data-dir``, ``--database-url``, master key), so a
management command run beside a server on the same data directory talks to the same database;
changes reach running servers through NOTIFY, without a restart.

The group and the helpers commands share live in :mod:`.common`; each other module registers its
commands on :data:`main` when imported:

- :mod:`.serving`: ``serve``, ``demo``, ``bench``
- :mod:`.audit`: ``ca export``, ``certificates list``, ``bootstraps``
- :mod:`.issuers`: ``issuer``, ``service``
- :mod:`.credentials`: ``trust``, ``device``
- :mod:`.configs`: ``config``
- :mod:`.lwm2m_accounts`: ``lwm2m-psk``, ``lwm2m-oscore``
- :mod:`bootstrap.admin.cli_commands`: ``apikey``
- :mod:`bootstrap.keys_cli`: ``keys``
"""

from __future__ import annotations

from .common import (
    database_for,
    fail,
    main,
    make_settings,
    print_table,
    run_async,
    run_with_settings,
    settings_or_exit,
    storage_options,
    with_database,
)

# Importing a command module registers its commands on ``main``.
from .audit import bootstraps, ca, ca_export, certificates, certificates_list  # isort: skip
from .configs import config, config_delete, config_list, config_set, config_show  # isort: skip
from .credentials import (  # isort: skip
    device,
    device_add,
    device_list,
    device_remove,
    trust,
    trust_add,
    trust_list,
    trust_remove,
)
from .lwm2m_accounts import (  # isort: skip
    lwm2m_oscore,
    lwm2m_oscore_export,
    lwm2m_oscore_list,
    lwm2m_psk,
    lwm2m_psk_export,
    lwm2m_psk_list,
)
from .issuers import (  # isort: skip
    issuer,
    issuer_create,
    issuer_delete,
    issuer_list,
    issuer_show,
    issuer_verify,
    service,
    service_delete,
    service_list,
    service_set,
)
from .serving import bench, demo, serve  # isort: skip

# Last: it imports the helpers above from ``bootstrap.cli`` when its commands are defined.
from ..admin.cli_commands import apikey  # isort: skip
from ..keys_cli import keys  # isort: skip

main.add_command(apikey)
main.add_command(keys)

__all__ = [
    "apikey",
    "bench",
    "bootstraps",
    "ca",
    "ca_export",
    "certificates",
    "certificates_list",
    "config",
    "config_delete",
    "config_list",
    "config_set",
    "config_show",
    "database_for",
    "demo",
    "device",
    "device_add",
    "device_list",
    "device_remove",
    "fail",
    "issuer",
    "issuer_create",
    "issuer_delete",
    "issuer_list",
    "issuer_show",
    "issuer_verify",
    "keys",
    "lwm2m_oscore",
    "lwm2m_oscore_export",
    "lwm2m_oscore_list",
    "lwm2m_psk",
    "lwm2m_psk_export",
    "lwm2m_psk_list",
    "main",
    "make_settings",
    "print_table",
    "run_async",
    "run_with_settings",
    "serve",
    "service",
    "service_delete",
    "service_list",
    "service_set",
    "settings_or_exit",
    "storage_options",
    "trust",
    "trust_add",
    "trust_list",
    "trust_remove",
    "with_database",
]
