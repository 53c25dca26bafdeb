"""Certificate issuers (``issuer``) and the service configurations that choose one (``service``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import main, print_table, settings_or_exit, storage_options, with_database

if TYPE_CHECKING:
    from ..config import Settings
    from ..issuer_service import Issuer, IssuerService, ServiceConfiguration, VerifyResult
    from ..store.database import Database


def _issuer_service(settings: Settings, database: Database) -> IssuerService:
    from ..issuer_service import IssuerService
    from ..server import open_secret_box

    return IssuerService(database.pool, open_secret_box(settings))


def _read_file(path: Path | None) -> str | None:
    return path.read_text() if path is not None else None


@main.group()
def issuer() -> None:
    """Certificate issuers: third-party CAs devices' certificates can be signed by."""


@issuer.command("create")
@storage_options
@click.option("--type", "issuer_type", type=click.Choice(["CFSSL_AUTH", "GLOBAL_SIGN"]), required=True)
@click.option("--name", required=True, help="Unique name (1-50 characters).")
@click.option("--description", default=None)
@click.option("--host-url", default=None, help="CFSSL: base URL of the CFSSL server.")
@click.option("--profile", default=None, help="CFSSL: signing profile.")
@click.option("--label", default=None, help="CFSSL: signer label.")
@click.option(
    "--hmac-hex-key",
    envvar="LWM2M_BOOTSTRAP_CFSSL_HMAC_KEY",
    default=None,
    help="CFSSL: the profile's auth key in hex (or set LWM2M_BOOTSTRAP_CFSSL_HMAC_KEY).",
)
@click.option("--api-key", default=None, help="GlobalSign: HVCA API key.")
@click.option(
    "--api-secret",
    envvar="LWM2M_BOOTSTRAP_HVCA_API_SECRET",
    default=None,
    help="GlobalSign: HVCA API secret (or set LWM2M_BOOTSTRAP_HVCA_API_SECRET).",
)
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="GlobalSign: mutual-TLS client certificate (PEM file).",
)
@click.option(
    "--private-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="GlobalSign: its private key (PEM file, may be encrypted).",
)
@click.option(
    "--passphrase",
    envvar="LWM2M_BOOTSTRAP_HVCA_PASSPHRASE",
    default=None,
    help="GlobalSign: passphrase of the private key (or set LWM2M_BOOTSTRAP_HVCA_PASSPHRASE).",
)
@click.option("--base-url", default=None, help="GlobalSign: HVCA API base URL (default: the EMEA endpoint).")
def issuer_create(
    issuer_type: str,
    name: str,
    description: str | None,
    host_url: str | None,
    profile: str | None,
    label: str | None,
    hmac_hex_key: str | None,
    api_key: str | None,
    api_secret: str | None,
    client_cert: Path | None,
    private_key: Path | None,
    passphrase: str | None,
    base_url: str | None,
    **values: Any,
) -> None:
    """Register a CA without activating it (use `service set` for that)."""
    settings = settings_or_exit(**values)
    if issuer_type == "CFSSL_AUTH":
        attributes = {"host_url": host_url, "cfssl_profile": profile, "cfssl_label": label}
        credentials = {"hmac_hex_key": hmac_hex_key}
    else:
        attributes = {"base_url": base_url}
        credentials = {
            "api_key": api_key,
            "api_secret": api_secret,
            "client_certificate": _read_file(client_cert),
            "private_key": _read_file(private_key),
            "passphrase": passphrase,
        }

    async def create(settings: Settings, database: Database) -> Issuer:
        return await _issuer_service(settings, database).create_issuer(
            name=name,
            issuer_type=issuer_type,
            description=description,
            attributes={k: v for k, v in attributes.items() if v is not None},
            credentials={k: v for k, v in credentials.items() if v is not None},
        )

    created = with_database(settings, create)
    click.echo(f"created {created.issuer_type} issuer {created.name!r} (id {created.id}); not active yet")


@issuer.command("list")
@storage_options
def issuer_list(**values: Any) -> None:
    """List issuers with the services they are active for."""

    async def fetch(settings: Settings, database: Database) -> list[Issuer]:
        return await _issuer_service(settings, database).list_issuers()

    issuers = with_database(values, fetch)
    verify = {None: "never", True: "ok", False: "FAILED"}
    print_table(
        f"Certificate issuers ({len(issuers)})",
        ["name", "type", "active for", "last verify", "created", "id"],
        [
            [
                i.name,
                i.issuer_type,
                ", ".join(i.services) or "-",
                verify[i.verify_successful],
                i.created_at.date().isoformat(),
                i.id,
            ]
            for i in issuers
        ],
    )


@issuer.command("show")
@storage_options
@click.argument("name_or_id")
def issuer_show(name_or_id: str, **values: Any) -> None:
    """Show one issuer (credentials are never shown)."""

    async def fetch(settings: Settings, database: Database) -> Issuer:
        return await _issuer_service(settings, database).get_issuer(name_or_id)

    item = with_database(values, fetch)
    click.echo(f"name:        {item.name}\nid:          {item.id}\ntype:        {item.issuer_type}")
    click.echo(f"description: {item.description or '-'}")
    for key, value in sorted(item.issuer_attributes.items()):
        click.echo(f"attribute:   {key} = {value}")
    click.echo(f"active for:  {', '.join(item.services) or '-'}")
    if item.verified_at is None:
        click.echo("verified:    never")
    else:
        state = "ok" if item.verify_successful else "FAILED"
        when = item.verified_at.isoformat(timespec="seconds")
        click.echo(f"verified:    {state} at {when}: {item.verify_message}")
    click.echo(f"created:     {item.created_at.isoformat(timespec='seconds')}")


@issuer.command("verify")
@storage_options
@click.argument("name_or_id")
def issuer_verify(name_or_id: str, **values: Any) -> None:
    """Have the CA sign a test certificate (may use CA quota). Exit 1 if it fails."""

    async def verify(settings: Settings, database: Database) -> VerifyResult:
        return await _issuer_service(settings, database).verify_issuer(name_or_id)

    outcome = with_database(values, verify)
    click.echo(("verified: " if outcome.successful else "verification FAILED: ") + outcome.message)
    if not outcome.successful:
        sys.exit(1)


@issuer.command("delete")
@storage_options
@click.argument("name_or_id")
def issuer_delete(name_or_id: str, **values: Any) -> None:
    """Delete an issuer (refused while any service uses it)."""

    async def delete(settings: Settings, database: Database) -> None:
        await _issuer_service(settings, database).delete_issuer(name_or_id)

    with_database(values, delete)
    click.echo(f"deleted {name_or_id}")


@main.group()
def service() -> None:
    """Service configurations: which CA signs for LWM2M and for custom services."""


@service.command("set")
@storage_options
@click.argument("reference")
@click.option("--issuer", "issuer_name", required=True, help="Issuer name or id, or 'builtin'.")
@click.option("--verify", is_flag=True, help="Verify the issuer first and refuse to activate it on failure.")
def service_set(reference: str, issuer_name: str, verify: bool, **values: Any) -> None:
    """Make an issuer the CA of REFERENCE (a custom service is created if missing)."""

    async def set_issuer(settings: Settings, database: Database) -> ServiceConfiguration:
        return await _issuer_service(settings, database).set_service_issuer(
            reference,
            None if issuer_name.lower() == "builtin" else issuer_name,
            require_verified=verify,
            create=True,
        )

    config = with_database(values, set_issuer)
    click.echo(f"{config.reference} now signs with {issuer_name}")


@service.command("list")
@storage_options
def service_list(**values: Any) -> None:
    """List service configurations and their CAs."""

    async def fetch(
        settings: Settings, database: Database
    ) -> tuple[list[ServiceConfiguration], dict[str, str]]:
        issuers_service = _issuer_service(settings, database)
        configs = await issuers_service.list_services()
        names = {i.id: i.name for i in await issuers_service.list_issuers()}
        return configs, names

    configs, names = with_database(values, fetch)
    for config in configs:
        ca_name = "builtin" if config.certificate_issuer_id is None else names[config.certificate_issuer_id]
        click.echo(f"{config.reference}\t{ca_name}\t{'custom' if config.is_custom else 'lwm2m'}")


@service.command("delete")
@storage_options
@click.argument("reference")
def service_delete(reference: str, **values: Any) -> None:
    """Delete a custom service configuration."""

    async def delete(settings: Settings, database: Database) -> None:
        await _issuer_service(settings, database).delete_service(reference)

    with_database(values, delete)
    click.echo(f"deleted service configuration {reference}")
