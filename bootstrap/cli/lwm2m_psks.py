"""The PSK accounts given to devices in mode ``psk`` (``lwm2m-psk``), for their LwM2M server.

A device bootstrapped in mode ``psk`` gets a generated key, which the bootstrap server keeps sealed
under its master key. The LwM2M server must know the same key to accept the device. The admin API
never returns a secret, so the keys leave only through ``lwm2m-psk export``, run where the master
key is (the bootstrap host), to standard output or to a file only its owner can read; each export
is written to the admin audit. ``lwm2m-psk list`` shows which accounts exist, without keys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from .common import (
    database_for,
    fail,
    main,
    print_table,
    run_with_settings,
    settings_or_exit,
    storage_options,
    with_database,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.bootstrap_configs import LwM2MPskAccount
    from ..store.database import Database


@main.group("lwm2m-psk")
def lwm2m_psk() -> None:
    """PSK accounts provisioned to devices in mode psk, for their LwM2M server."""


@lwm2m_psk.command("list")
@storage_options
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
def lwm2m_psk_list(limit: int, **values: Any) -> None:
    """Endpoints with a PSK account and its identity, newest first (keys are never shown)."""

    async def fetch(settings: Settings, database: Database) -> list[tuple[str, str, dt.datetime]]:
        from ..store import bootstrap_configs

        return await bootstrap_configs.lwm2m_psk_identities(database.pool, limit=limit)

    rows = [
        [endpoint, identity, at.isoformat(timespec="seconds")]
        for endpoint, identity, at in with_database(values, fetch)
    ]
    print_table("LwM2M PSK accounts", ["endpoint", "identity", "provisioned_at"], rows)


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """An ISO 8601 time, as ``provisioned_at`` prints it (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-28T16:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _open_private(path: Path) -> TextIO:
    """``path`` opened for writing, readable by its owner only (mode 0600 even if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _exported(account: LwM2MPskAccount) -> dict[str, str]:
    return {
        "endpoint": account.endpoint,
        "identity": account.identity,
        "key_hex": account.key.hex(),
        "provisioned_at": account.provisioned_at.isoformat(),
    }


@lwm2m_psk.command("export")
@storage_options
@click.option(
    "--endpoint", "endpoints", multiple=True, help="Only this endpoint (repeatable) [default: all]."
)
@click.option(
    "--since",
    metavar="TIME",
    callback=_iso_time,
    default=None,
    help="Only accounts provisioned at or after this time (ISO 8601, as provisioned_at prints it; "
    "UTC when no offset is given).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here, mode 0600 [default: standard output].",
)
def lwm2m_psk_export(
    endpoints: tuple[str, ...], since: dt.datetime | None, output: Path | None, **values: Any
) -> None:
    """Print the PSK accounts with their keys, one JSON object per line:
    {"endpoint", "identity", "key_hex", "provisioned_at"}, oldest first, for the LwM2M server to
    import. A named endpoint without an account fails the command before anything is written."""
    settings = settings_or_exit(**values)

    async def body(settings: Settings) -> int:
        from ..admin import audit_log
        from ..secretbox import SecretError
        from ..server import open_secret_box
        from ..store import bootstrap_configs

        box = open_secret_box(settings)  # before the database: a bad key fails fast
        async with database_for(settings) as database:
            if endpoints:
                missing = await bootstrap_configs.endpoints_without_lwm2m_psk(database.pool, endpoints)
                if missing:
                    fail("no LwM2M PSK account for " + ", ".join(missing))
            # A file appears whole or not at all: written beside it, renamed once complete.
            partial = None if output is None else output.with_name(f".{output.name}.partial")
            count, complete = 0, False
            try:
                with ExitStack() as stack:
                    out = sys.stdout if partial is None else stack.enter_context(_open_private(partial))
                    async with database.pool.acquire() as conn:
                        async for account in bootstrap_configs.export_lwm2m_psks(
                            conn, box, endpoints=endpoints or None, since=since
                        ):
                            out.write(json.dumps(_exported(account)) + "\n")
                            count += 1
                if output is not None and partial is not None:
                    partial.replace(output)
                complete = True
            except SecretError as exc:
                left = "the output is incomplete" if partial is None else "nothing was written"
                fail(f"a PSK does not open with this master key ({exc}); {left}")
            finally:
                if not complete and partial is not None:
                    partial.unlink(missing_ok=True)
                # Audited whatever the outcome: keys may have reached standard output before a failure.
                await audit_log.record_cli(
                    database.pool,
                    path="lwm2m-psk export",
                    target_id=",".join(endpoints) or None,
                    status=200 if complete else 500,
                )
            return count

    count = run_with_settings(settings, body)
    where = f" to {output}" if output is not None else ""
    click.echo(f"exported {count} LwM2M PSK account(s){where}", err=True)
