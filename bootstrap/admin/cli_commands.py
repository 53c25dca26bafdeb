"""``lwm2m-bootstrap apikey``: create, list and revoke admin API keys from the command line.

The bootstrap helpers of :mod:`bootstrap.cli` are imported inside the commands, so importing this
module from :mod:`bootstrap.cli` (``main.add_command(apikey)``) creates no import cycle. Key changes made here
are written to the admin audit as the CLI (``cli:<user>``).
"""

from __future__ import annotations

from typing import Any

import click

from ..store import Queryable


def _storage_options(func: Any) -> Any:
    from ..cli import storage_options

    return storage_options(func)


async def _audit(conn: Queryable, action: str, target_id: str) -> None:
    from . import audit_log

    await audit_log.record_cli(conn, path=f"apikey {action}", target_id=target_id)


@click.group()
def apikey() -> None:
    """Admin API keys (Authorization: Bearer <key>)."""


@apikey.command("create")
@_storage_options
@click.argument("name")
def apikey_create(name: str, **values: Any) -> None:
    """Create a key named NAME and print it; it cannot be shown again."""
    from ..cli import database_for, run_async, settings_or_exit
    from . import keys

    settings = settings_or_exit(**values)

    async def body() -> str:
        async with database_for(settings) as database:
            key, plaintext = await keys.create(database.pool, name)
            await _audit(database.pool, "create", key.id)
        click.echo(
            f"created API key {key.name!r} (id {key.id}, prefix {key.prefix}); store it now:", err=True
        )
        return plaintext

    click.echo(run_async(body)())


@apikey.command("list")
@_storage_options
def apikey_list(**values: Any) -> None:
    """List keys (never the keys themselves), live and revoked."""
    from ..cli import database_for, run_async, settings_or_exit
    from . import keys

    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            rows = await keys.list_keys(database.pool)
        for key in sorted(rows, key=lambda k: k.created_at):
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            state = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "active"
            click.echo(f"{key.name}\t{key.prefix}\t{state}\tlast used {used}\t{key.id}")

    run_async(body)()


@apikey.command("revoke")
@_storage_options
@click.argument("name_or_id")
def apikey_revoke(name_or_id: str, **values: Any) -> None:
    """Revoke the live key with this name, id or prefix."""
    from ..cli import database_for, run_async, settings_or_exit
    from . import keys

    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            key = await keys.revoke(database.pool, name_or_id)
            await _audit(database.pool, "revoke", key.id)
        click.echo(f"revoked API key {key.name!r} (id {key.id})")

    run_async(body)()
