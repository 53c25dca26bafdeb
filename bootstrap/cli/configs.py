"""Bootstrap configurations (``config``): the LwM2M server account devices are given."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography.hazmat.primitives.serialization import Encoding

from .common import fail, main, print_table, settings_or_exit, storage_options, with_database

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.bootstrap_configs import StoredConfig
    from ..store.database import Database


def _load_certificate_der(path: Path) -> bytes:
    """A certificate from a PEM or DER file, as DER."""
    from cryptography import x509

    data = path.read_bytes()
    try:
        certificate = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        fail(f"{path}: not a PEM or DER certificate")
    return certificate.public_bytes(Encoding.DER)


@main.group()
def config() -> None:
    """Bootstrap configurations: the LwM2M server account devices are given (a default and per-endpoint)."""


@config.command("set")
@storage_options
@click.option("--endpoint", default=None, help="Only for this endpoint [default: the default configuration].")
@click.option(
    "--server-uri", required=True, help="LwM2M server URI (coaps://, coaps+tcp://; coap:// for nosec)."
)
@click.option(
    "--security-mode",
    type=click.Choice(["est", "certificate", "psk", "nosec"]),
    required=True,
    help="est: device makes a key and enrolls by EST; certificate: server-side key generation; "
    "psk: a generated PSK; nosec: no DTLS (development LwM2M servers, or with --oscore).",
)
@click.option(
    "--server-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The LwM2M server's certificate or trust anchor (PEM or DER); needed for est and certificate.",
)
@click.option("--certificate-usage", type=click.IntRange(0, 3), default=None, help="/0/x/15 (default: 3).")
@click.option("--short-server-id", type=click.IntRange(1, 65534), default=1, show_default=True)
@click.option("--lifetime", type=click.IntRange(min=1), default=86400, show_default=True, help="Seconds.")
@click.option("--binding", default="U", show_default=True)
@click.option(
    "--oscore",
    is_flag=True,
    help="With --security-mode nosec: each device gets its own OSCORE context (/21, RFC 8613) "
    "protecting its coap:// connection; the LwM2M server gets it from lwm2m-oscore export.",
)
def config_set(
    endpoint: str | None,
    server_uri: str,
    security_mode: str,
    server_cert: Path | None,
    certificate_usage: int | None,
    short_server_id: int,
    lifetime: int,
    binding: str,
    oscore: bool,
    **values: Any,
) -> None:
    """Create or replace a bootstrap configuration (validated before it is stored)."""
    from ..bootstrap_plan import BootstrapConfig
    from ..store import bootstrap_configs

    settings = settings_or_exit(**values)
    bootstrap_config = BootstrapConfig(
        server_uri=server_uri,
        security_mode=security_mode,  # type: ignore[arg-type]  # click.Choice guarantees it
        short_server_id=short_server_id,
        lifetime=lifetime,
        binding=binding,
        server_certificate_der=_load_certificate_der(server_cert) if server_cert else None,
        certificate_usage=certificate_usage,
        oscore=oscore,
    )

    async def put(settings: Settings, database: Database) -> StoredConfig:
        return await bootstrap_configs.put(
            database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE, bootstrap_config
        )

    stored = with_database(settings, put)
    scope = "default configuration" if stored.scope == bootstrap_configs.DEFAULT_SCOPE else stored.scope
    oscore_note = " with OSCORE" if stored.config.oscore else ""
    click.echo(f"{scope}: {stored.config.security_mode}{oscore_note} -> {stored.config.server_uri}")


@config.command("show")
@storage_options
@click.option("--endpoint", default=None, help="This endpoint's own configuration [default: the default].")
def config_show(endpoint: str | None, **values: Any) -> None:
    """Show a bootstrap configuration."""
    from ..store import bootstrap_configs

    async def fetch(settings: Settings, database: Database) -> StoredConfig:
        return await bootstrap_configs.get(database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE)

    stored = with_database(values, fetch)
    item = stored.config
    scope = "default" if stored.scope == bootstrap_configs.DEFAULT_SCOPE else stored.scope
    click.echo(f"scope:             {scope}")
    click.echo(f"server uri:        {item.server_uri}")
    click.echo(f"security mode:     {item.security_mode}")
    click.echo(f"oscore:            {'yes' if item.oscore else 'no'}")
    click.echo(f"short server id:   {item.short_server_id}")
    click.echo(f"lifetime:          {item.lifetime}")
    click.echo(f"binding:           {item.binding}")
    if item.server_certificate_der:
        from cryptography import x509

        certificate = x509.load_der_x509_certificate(item.server_certificate_der)
        click.echo(f"server cert:       {certificate.subject.rfc4514_string()}")
    click.echo(f"certificate usage: {'-' if item.certificate_usage is None else item.certificate_usage}")
    click.echo(f"updated:           {stored.updated_at.isoformat(timespec='seconds')}")


@config.command("list")
@storage_options
def config_list(**values: Any) -> None:
    """List bootstrap configurations (the default first)."""
    from ..store import bootstrap_configs

    async def fetch(settings: Settings, database: Database) -> list[StoredConfig]:
        return await bootstrap_configs.list_all(database.pool, limit=10000)

    rows = with_database(values, fetch)
    print_table(
        f"Bootstrap configurations ({len(rows)})",
        ["scope", "security mode", "server uri", "ssid", "lifetime"],
        [
            [
                "default" if r.scope == bootstrap_configs.DEFAULT_SCOPE else r.scope,
                r.config.security_mode + (" + oscore" if r.config.oscore else ""),
                r.config.server_uri,
                str(r.config.short_server_id),
                str(r.config.lifetime),
            ]
            for r in rows
        ],
    )


@config.command("delete")
@storage_options
@click.option("--endpoint", default=None, help="This endpoint's configuration [default: the default].")
def config_delete(endpoint: str | None, **values: Any) -> None:
    """Delete a bootstrap configuration."""
    from ..store import bootstrap_configs

    async def delete(settings: Settings, database: Database) -> None:
        await bootstrap_configs.delete(database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE)

    with_database(values, delete)
    click.echo("deleted")
