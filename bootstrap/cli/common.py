"""The ``lwm2m-bootstrap`` group and what its commands share: storage options, settings, database.

Every command takes the same storage options (``--data-dir``, ``--database-url``, master key), so a
management command run beside a server on the same data directory talks to the same database;
changes reach running servers through NOTIFY, without a restart.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .. import __version__, event_loop, logs
from ..config import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_COAP_PORT,
    DEFAULT_COAPS_PORT,
    ENVIRONMENT,
    Settings,
    default_data_dir,
    parse_hostport,
)
from ..errors import BootstrapError, ConfigError

if TYPE_CHECKING:
    from ..store.database import Database

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


#: ``--server-names``, for ``serve`` and for ``ca server-certificate``, which must agree.
server_names_option = click.option(
    "--server-names",
    envvar=ENVIRONMENT["server_names"],
    default="localhost",
    show_default=True,
    help="Comma-separated DNS names/IPs for the server certificate the built-in CA issues.",
)


def storage_options(func: F) -> F:
    """``--data-dir``, ``--database-url``, ``--master-key-file`` and logging options."""
    options = [
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            envvar=ENVIRONMENT["data_dir"],
            default=default_data_dir,
            show_default="per-user data directory",
            help="Embedded Postgres and master key live here.",
        ),
        click.option(
            "--database-url",
            envvar=ENVIRONMENT["database_url"],
            default=None,
            help="External Postgres (postgresql://...); default: embedded Postgres in the data dir.",
        ),
        click.option(
            "--master-key-file",
            type=click.Path(path_type=Path),
            envvar=ENVIRONMENT["master_key_file"],
            default=None,
            help="File with the base64 master key [default: DATA_DIR/master.key, created 0600].",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["auto", "json", "console"]),
            envvar=ENVIRONMENT["log_format"],
            default="auto",
            show_default=True,
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            envvar=ENVIRONMENT["log_level"],
            default="info",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_settings(**values: Any) -> Settings:
    """Build validated settings from CLI values; exit with one line on a bad value."""
    for option, key, port in (
        ("coap", "coap_bind", DEFAULT_COAP_PORT),
        ("coaps", "coaps_bind", DEFAULT_COAPS_PORT),
        ("coaps_tcp", "coaps_tcp_bind", DEFAULT_COAPS_PORT),
        ("admin", "admin_bind", DEFAULT_ADMIN_PORT),
    ):
        text = values.pop(option, None)
        if text is not None:
            flag = "--" + option.replace("_", "-")
            values[key] = None if text == "off" else parse_hostport(text, port, option=flag)
    names = values.pop("server_names", None)
    if names is not None:
        values["server_names"] = tuple(n.strip() for n in names.split(",") if n.strip())
    values.setdefault("master_key", os.environ.get(ENVIRONMENT["master_key"]) or None)
    return Settings(**values)


def run_async(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command body, turning configuration errors into one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return event_loop.run(func(*args, **kwargs))  # type: ignore[arg-type]
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except BootstrapError as exc:
            fail(exc.message)

    return wrapper


def settings_or_exit(**values: Any) -> Settings:
    """Like :func:`make_settings`, exiting with code 2 and one line on error."""
    try:
        settings = make_settings(**values)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    logs.configure(settings.log_format, settings.log_level)
    return settings


@contextlib.asynccontextmanager
async def database_for(settings: Settings) -> AsyncIterator[Database]:
    """Open the settings' database for one management command."""
    from ..server import open_database

    database = await open_database(settings, min_size=1, max_size=2)
    try:
        yield database
    finally:
        await database.close()


def run_with_settings(settings: Settings | Mapping[str, Any], body: Callable[[Settings], Awaitable[T]]) -> T:
    """Run a management command's async *body* with its settings; return what it returns.

    *settings* is either the command's option values (made into settings by
    :func:`settings_or_exit` first, so a bad value exits 2 before anything else happens) or settings
    the command already made. Errors end the command as in :func:`run_async`.
    """
    resolved = settings if isinstance(settings, Settings) else settings_or_exit(**settings)
    return run_async(body)(resolved)


def with_database(
    settings: Settings | Mapping[str, Any], action: Callable[[Settings, Database], Awaitable[T]]
) -> T:
    """Like :func:`run_with_settings`, running ``action(settings, database)`` on an open database.

    The database is closed before this returns, so the command prints what *action* returned
    afterwards.
    """

    async def body(resolved: Settings) -> T:
        async with database_for(resolved) as database:
            return await action(resolved, database)

    return run_with_settings(settings, body)


def fail(message: str) -> NoReturn:
    """Print one error line and exit with code 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal; tab-separated lines (header first) when piped, for scripts."""
    if not sys.stdout.isatty():
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lwm2m-bootstrap")
def main() -> None:
    """LwM2M bootstrap server with EST certificate enrollment."""
