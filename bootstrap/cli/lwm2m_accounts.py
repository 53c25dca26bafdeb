"""Credentials given to devices for their LwM2M server: PSK accounts (``lwm2m-psk``, security mode
``psk``) and OSCORE contexts (``lwm2m-oscore``, ``nosec`` with ``oscore``).

The bootstrap server generates them per device and keeps their secrets sealed under its master
key; the LwM2M server must know the same secrets to accept the device. The admin API never returns
a secret, so they leave only through ``export``, run where the master key is (the bootstrap host),
to standard output or to a file only its owner can read; each export is written to the admin
audit. ``list`` shows which accounts exist, without secrets.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

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
    from ..secretbox import SecretBox
    from ..store import Queryable
    from ..store.bootstrap_configs import LwM2MOscoreAccount, LwM2MPskAccount
    from ..store.database import Database

A = TypeVar("A")


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """An ISO 8601 time, as ``provisioned_at`` prints it (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-28T16:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _export_options(func: Callable[..., None]) -> Callable[..., None]:
    """``--endpoint``, ``--since`` and ``--output``, shared by both exports."""
    func = click.option(
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write here, mode 0600, complete or not at all [default: standard output].",
    )(func)
    func = click.option(
        "--since",
        metavar="TIME",
        callback=_iso_time,
        default=None,
        help="Only accounts provisioned at or after this time (ISO 8601, as provisioned_at prints it; "
        "UTC when no offset is given).",
    )(func)
    func = click.option(
        "--endpoint", "endpoints", multiple=True, help="Only this endpoint (repeatable) [default: all]."
    )(func)
    return storage_options(func)


def _open_private(path: Path) -> TextIO:
    """``path`` opened for writing, readable by its owner only (mode 0600 even if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _export(
    values: dict[str, Any],
    *,
    command: str,
    what: str,
    endpoints: tuple[str, ...],
    since: dt.datetime | None,
    output: Path | None,
    missing: Callable[[Queryable, Sequence[str]], Any],
    accounts: Callable[..., AsyncIterator[A]],
    line: Callable[[A], dict[str, Any]],
) -> None:
    """Write ``accounts`` (secrets opened) as JSON lines; audit the export, whatever its outcome.

    A named endpoint without an account fails the command before anything is written; a secret
    that does not open fails it, and a file is then not left behind (standard output may hold the
    lines before it)."""
    settings = settings_or_exit(**values)
    if output is not None and not output.parent.is_dir():
        fail(f"cannot write {output}: {output.parent} is not a directory")

    async def body(settings: Settings) -> int:
        from ..admin import audit_log
        from ..secretbox import SecretError
        from ..server import open_secret_box

        box: SecretBox = open_secret_box(settings)  # before the database: a bad key fails fast
        async with database_for(settings) as database:
            if endpoints:
                absent = await missing(database.pool, endpoints)
                if absent:
                    fail(f"no {what} for " + ", ".join(absent))
            # A file appears whole or not at all: written beside it, renamed once complete.
            partial = None if output is None else output.with_name(f".{output.name}.partial")
            count, complete = 0, False
            try:
                with ExitStack() as stack:
                    out = sys.stdout if partial is None else stack.enter_context(_open_private(partial))
                    async with database.pool.acquire() as conn:
                        async for account in accounts(conn, box, endpoints=endpoints or None, since=since):
                            out.write(json.dumps(line(account)) + "\n")
                            count += 1
                if output is not None and partial is not None:
                    partial.replace(output)
                complete = True
            except SecretError as exc:
                left = "the output is incomplete" if partial is None else "nothing was written"
                fail(f"a secret does not open with this master key ({exc}); {left}")
            except OSError as exc:  # the file (permissions, a full disk) or a closed standard output
                fail(f"cannot write {output or 'standard output'}: {exc.strerror}")
            finally:
                if not complete and partial is not None:
                    partial.unlink(missing_ok=True)
                # Audited whatever the outcome: secrets may have reached standard output before a failure.
                await audit_log.record_cli(
                    database.pool,
                    path=command,
                    target_id=",".join(endpoints) or None,
                    status=200 if complete else 500,
                )
            return count

    count = run_with_settings(settings, body)
    where = f" to {output}" if output is not None else ""
    click.echo(f"exported {count} {what}(s){where}", err=True)


# --- PSK accounts --------------------------------------------------------------------------------


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


def _psk_line(account: LwM2MPskAccount) -> dict[str, Any]:
    return {
        "endpoint": account.endpoint,
        "identity": account.identity,
        "key_hex": account.key.hex(),
        "provisioned_at": account.provisioned_at.isoformat(),
    }


@lwm2m_psk.command("export")
@_export_options
def lwm2m_psk_export(
    endpoints: tuple[str, ...], since: dt.datetime | None, output: Path | None, **values: Any
) -> None:
    """Print the PSK accounts with their keys, one JSON object per line:
    {"endpoint", "identity", "key_hex", "provisioned_at"}, oldest first, for the LwM2M server to
    import. A named endpoint without an account fails the command before anything is written."""
    from ..store import bootstrap_configs

    _export(
        values,
        command="lwm2m-psk export",
        what="LwM2M PSK account",
        endpoints=endpoints,
        since=since,
        output=output,
        missing=functools.partial(bootstrap_configs.endpoints_without_account, table="lwm2m_psk_accounts"),
        accounts=bootstrap_configs.export_lwm2m_psks,
        line=_psk_line,
    )


# --- OSCORE contexts -----------------------------------------------------------------------------


@main.group("lwm2m-oscore")
def lwm2m_oscore() -> None:
    """OSCORE contexts (RFC 8613) provisioned to devices, for their LwM2M server."""


@lwm2m_oscore.command("list")
@storage_options
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
def lwm2m_oscore_list(limit: int, **values: Any) -> None:
    """Endpoints with an OSCORE context and the device's Sender ID, newest first (no secrets)."""

    async def fetch(settings: Settings, database: Database) -> list[tuple[str, bytes, dt.datetime]]:
        from ..store import bootstrap_configs

        return await bootstrap_configs.lwm2m_oscore_ids(database.pool, limit=limit)

    rows = [
        [endpoint, sender_id.hex(), at.isoformat(timespec="seconds")]
        for endpoint, sender_id, at in with_database(values, fetch)
    ]
    print_table("LwM2M OSCORE contexts", ["endpoint", "sender_id_hex", "provisioned_at"], rows)


def _oscore_line(account: LwM2MOscoreAccount) -> dict[str, Any]:
    context = account.context
    return {
        "endpoint": account.endpoint,
        "sender_id_hex": context.sender_id.hex(),
        "recipient_id_hex": context.recipient_id.hex(),
        "master_secret_hex": context.master_secret.hex(),
        "master_salt_hex": context.master_salt.hex(),
        "aead_algorithm": context.aead_algorithm,
        "hmac_algorithm": context.hmac_algorithm,
        "provisioned_at": account.provisioned_at.isoformat(),
    }


@lwm2m_oscore.command("export")
@_export_options
def lwm2m_oscore_export(
    endpoints: tuple[str, ...], since: dt.datetime | None, output: Path | None, **values: Any
) -> None:
    """Print the OSCORE contexts with their master secrets, one JSON object per line: {"endpoint",
    "sender_id_hex", "recipient_id_hex", "master_secret_hex", "master_salt_hex", "aead_algorithm",
    "hmac_algorithm", "provisioned_at"}, oldest first. IDs are the device's: the LwM2M server's
    Sender ID is the device's Recipient ID, and the device's Sender ID is the kid it looks the
    context up by."""
    from ..store import bootstrap_configs

    _export(
        values,
        command="lwm2m-oscore export",
        what="LwM2M OSCORE context",
        endpoints=endpoints,
        since=since,
        output=output,
        missing=functools.partial(bootstrap_configs.endpoints_without_account, table="lwm2m_oscore_accounts"),
        accounts=bootstrap_configs.export_lwm2m_oscore,
        line=_oscore_line,
    )
