"""What devices may present: trusted certificates (``trust``) and per-device PSKs (``device``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    import datetime as dt

    from ..config import Settings
    from ..store.database import Database
    from ..store.trust import TrustedCertificate


@main.group()
def trust() -> None:
    """Trusted certificates: factory CAs whose devices may bootstrap (service bootstrap), or lwm2m."""


@trust.command("add")
@storage_options
@click.argument("pem_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", type=click.Choice(["bootstrap", "lwm2m"]), default="bootstrap", show_default=True)
@click.option("--name", default=None, help="Unique name [default: the file name].")
@click.option("--description", default=None)
def trust_add(pem_file: Path, service: str, name: str | None, description: str | None, **values: Any) -> None:
    """Trust the certificate (or chain) in PEM_FILE; running servers pick it up at once."""
    settings = settings_or_exit(**values)
    pem = pem_file.read_text()

    async def add(settings: Settings, database: Database) -> TrustedCertificate:
        from ..store import trust as trust_store

        return await trust_store.add(
            database.pool,
            name=name or pem_file.name,
            service=service,
            certificate_pem=pem,
            description=description,
        )

    added = with_database(settings, add)
    click.echo(
        f"trusted {added.subject} for {added.service} (id {added.id}, sha256 {added.fingerprint_sha256})"
    )


@trust.command("list")
@storage_options
@click.option("--service", type=click.Choice(["bootstrap", "lwm2m"]), default=None)
def trust_list(service: str | None, **values: Any) -> None:
    """List trusted certificates."""

    async def fetch(settings: Settings, database: Database) -> list[TrustedCertificate]:
        from ..store import trust as trust_store

        return await trust_store.list_all(database.pool, service=service)

    rows = with_database(values, fetch)
    print_table(
        f"Trusted certificates ({len(rows)})",
        ["name", "service", "status", "subject", "not after", "id"],
        [[r.name, r.service, r.status, r.subject, r.not_after.date().isoformat(), r.id] for r in rows],
    )


@trust.command("remove")
@storage_options
@click.argument("name_or_id")
def trust_remove(name_or_id: str, **values: Any) -> None:
    """Stop trusting a certificate (by name or id)."""

    async def remove(settings: Settings, database: Database) -> None:
        from ..store import trust as trust_store

        await trust_store.remove(database.pool, name_or_id)

    with_database(values, remove)
    click.echo(f"removed {name_or_id}")


@main.group()
def device() -> None:
    """Per-device credentials (PSK-mode bootstrap)."""


@device.command("add")
@storage_options
@click.argument("endpoint")
@click.option("--psk-identity", required=True, help="PSK identity the device presents in the handshake.")
@click.option("--psk-key", required=True, help="The PSK as hex (16-64 bytes).")
def device_add(endpoint: str, psk_identity: str, psk_key: str, **values: Any) -> None:
    """Create or replace ENDPOINT's PSK credentials (the key is stored sealed)."""
    settings = settings_or_exit(**values)
    try:
        key = bytes.fromhex(psk_key)
    except ValueError:
        fail("--psk-key must be hexadecimal")

    async def body(settings: Settings) -> None:
        from ..server import open_secret_box
        from ..store import devices

        box = open_secret_box(settings)  # before the database: a bad key fails fast
        async with database_for(settings) as database:
            await devices.put(database.pool, box, devices.PskCredential(endpoint, psk_identity, key))

    run_with_settings(settings, body)
    click.echo(f"PSK identity {psk_identity!r} now bootstraps endpoint {endpoint!r}")


@device.command("list")
@storage_options
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
def device_list(limit: int, **values: Any) -> None:
    """List endpoints with PSK credentials (keys are never shown)."""

    async def fetch(settings: Settings, database: Database) -> list[tuple[str, str, dt.datetime]]:
        from ..store import devices

        return await devices.list_identities(database.pool, limit=limit)

    for endpoint, identity, updated in with_database(values, fetch):
        click.echo(f"{endpoint}\t{identity}\t{updated.isoformat(timespec='seconds')}")


@device.command("remove")
@storage_options
@click.argument("endpoint")
def device_remove(endpoint: str, **values: Any) -> None:
    """Delete ENDPOINT's PSK credentials."""

    async def remove(settings: Settings, database: Database) -> None:
        from ..store import devices

        await devices.remove(database.pool, endpoint)

    with_database(values, remove)
    click.echo(f"removed PSK credentials of {endpoint}")
