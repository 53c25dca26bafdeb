"""The built-in CA and the records of what was done: ``ca export``, ``certificates list``, ``bootstraps``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from cryptography.hazmat.primitives.serialization import Encoding

from .common import (
    database_for,
    main,
    print_table,
    run_with_settings,
    server_names_option,
    storage_options,
    with_database,
)

if TYPE_CHECKING:
    import asyncpg

    from ..config import Settings
    from ..server_identity import ServerCredentials
    from ..store.bootstrap_configs import BootstrapRecord
    from ..store.builtin_ca import ActiveBuiltinCa
    from ..store.database import Database


@main.group()
def ca() -> None:
    """The built-in CA."""


@ca.command("export")
@storage_options
def ca_export(**values: Any) -> None:
    """Print the built-in CA chain (issuing CA, then root) as PEM, creating the CA if needed."""

    async def body(settings: Settings) -> ActiveBuiltinCa:
        from ..server import open_secret_box
        from ..store import builtin_ca

        box = open_secret_box(settings)
        async with database_for(settings) as database:
            return await builtin_ca.ensure(database.pool, box)

    active = run_with_settings(values, body)
    for certificate in active.chain:
        click.echo(certificate.public_bytes(Encoding.PEM).decode(), nl=False)


@ca.command("server-certificate")
@storage_options
@server_names_option
def ca_server_certificate(**values: Any) -> None:
    """Print the certificate serve presents in DTLS and TLS handshakes (PEM), issuing it if needed.

    It is the one the built-in CA issued for --server-names (give the same names as to serve),
    kept until 30 days before it expires, so it can be given to devices before the server first
    runs. Devices pin it as the bootstrap server's certificate (Security object /0/x/4 with
    certificate usage 3, the LwM2M default) or verify it up to the root of `ca export` (usage 2).
    After `ca rotate` this prints the certificate of the new intermediate, which running servers
    present from their next start. Not used when serve is given --tls-cert-file.
    """

    async def body(settings: Settings) -> ServerCredentials:
        from ..server import open_secret_box
        from ..server_identity import ensure_issued

        box = open_secret_box(settings)
        async with database_for(settings) as database:
            return await ensure_issued(database.pool, box, settings.server_names)

    credentials = run_with_settings(values, body)
    click.echo(credentials.chain[0].public_bytes(Encoding.PEM).decode(), nl=False)


@ca.command("rotate")
@storage_options
def ca_rotate(**values: Any) -> None:
    """Roll the built-in CA over to a new issuing intermediate under the same root.

    Devices keep trusting the same root; certificates the old intermediate signed stay valid and
    usable (it remains a trust anchor until it expires). Running servers switch at once.
    """

    async def body(settings: Settings) -> tuple[ActiveBuiltinCa, Any]:
        from ..server import open_secret_box
        from ..store import builtin_ca

        box = open_secret_box(settings)
        async with database_for(settings) as database:
            return await builtin_ca.rotate_issuing(database.pool, box)

    active, previous = run_with_settings(values, body)
    click.echo(
        f"retired: {previous.subject.rfc4514_string()} (valid until {previous.not_valid_after_utc.date()})"
    )
    click.echo(f"active:  {active.chain[0].subject.rfc4514_string()} (generation {active.generation})")


@main.group()
def certificates() -> None:
    """Issued certificates (the audit)."""


@certificates.command("list")
@storage_options
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
def certificates_list(endpoint: str | None, limit: int, **values: Any) -> None:
    """List recently issued certificates, newest first."""

    async def fetch(settings: Settings, database: Database) -> tuple[list[asyncpg.Record], int]:
        from ..store import audit

        rows = await audit.recent(database.pool, limit=limit, endpoint=endpoint)
        return rows, await audit.count_issued(database.pool)

    rows, total = with_database(values, fetch)
    columns = ["issued at", "endpoint", "service", "issuer", "serial", "not after", "revoked"]
    lines = [
        [
            row["issued_at"].isoformat(timespec="seconds"),
            row["endpoint"],
            row["service_reference"],
            f"{row['issuer_name']} ({row['issuer_type']})",
            row["serial_number"],
            row["not_after"].date().isoformat(),
            "yes" if row["revoked_at"] else "",
        ]
        for row in rows
    ]
    print_table(f"Issued certificates ({len(rows)} of {total})", columns, lines)


@main.command("bootstraps")
@storage_options
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
def bootstraps(endpoint: str | None, limit: int, **values: Any) -> None:
    """Recent bootstraps and their outcomes, newest first."""

    async def fetch(settings: Settings, database: Database) -> list[BootstrapRecord]:
        from ..store import bootstrap_configs

        return await bootstrap_configs.recent(database.pool, endpoint=endpoint, limit=limit)

    rows = with_database(values, fetch)
    print_table(
        f"Bootstraps ({len(rows)})",
        ["started", "endpoint", "method", "transport", "mode", "outcome", "reason"],
        [
            [
                r.started_at.isoformat(timespec="seconds"),
                r.endpoint,
                r.method,
                r.transport,
                r.security_mode or "-",
                r.outcome,
                r.reason or "",
            ]
            for r in rows
        ],
    )
