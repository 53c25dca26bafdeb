"""The ``lwm2m-bootstrap`` command: serve, demo, and management commands.

Every command takes the same storage options (``--data-dir``, ``--database-url``, master key), so a
management command run beside a server on the same data directory talks to the same database;
changes reach running servers through NOTIFY, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from cryptography.hazmat.primitives.serialization import Encoding

from . import __version__, logs
from .config import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_COAP_PORT,
    DEFAULT_COAPS_PORT,
    ENVIRONMENT,
    Settings,
    default_data_dir,
    parse_hostport,
)
from .errors import BootstrapError, ConfigError

if TYPE_CHECKING:
    from .issuer_service import IssuerService
    from .store.database import Database

F = TypeVar("F", bound=Callable[..., Any])


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


T = TypeVar("T")


def run_async(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command body, turning configuration errors into one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(func(*args, **kwargs))  # type: ignore[arg-type]
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
    from .server import open_database

    database = await open_database(settings, min_size=1, max_size=2)
    try:
        yield database
    finally:
        await database.close()


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


@main.command()
@storage_options
@click.option(
    "--coap",
    envvar=ENVIRONMENT["coap"],
    default=f"127.0.0.1:{DEFAULT_COAP_PORT}",
    show_default=True,
    help="Plain CoAP/UDP listener HOST:PORT (development transport), or 'off'.",
)
@click.option(
    "--coaps",
    envvar=ENVIRONMENT["coaps"],
    default=f"0.0.0.0:{DEFAULT_COAPS_PORT}",
    show_default=True,
    help="DTLS 1.2 listener HOST:PORT (certificate and PSK mode), or 'off'.",
)
@click.option(
    "--coaps-tcp",
    envvar=ENVIRONMENT["coaps_tcp"],
    default=f"0.0.0.0:{DEFAULT_COAPS_PORT}",
    show_default=True,
    help="CoAP over TLS (RFC 8323) listener HOST:PORT with client certificates, or 'off'.",
)
@click.option(
    "--server-names",
    envvar=ENVIRONMENT["server_names"],
    default="localhost",
    show_default=True,
    help="Comma-separated DNS names/IPs for the server certificate the built-in CA issues.",
)
@click.option(
    "--tls-cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=ENVIRONMENT["tls_cert_file"],
    default=None,
    help="Server certificate chain (PEM) to use instead of issuing one.",
)
@click.option(
    "--tls-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=ENVIRONMENT["tls_key_file"],
    default=None,
    help="Its EC private key (PEM).",
)
@click.option("--dtls-mtu", type=int, envvar=ENVIRONMENT["dtls_mtu"], default=1280, show_default=True)
@click.option(
    "--dtls-idle-timeout",
    type=float,
    envvar=ENVIRONMENT["dtls_idle_timeout"],
    default=300.0,
    show_default=True,
    help="Seconds of silence before a DTLS session is closed.",
)
@click.option(
    "--dtls-max-sessions",
    type=int,
    envvar=ENVIRONMENT["dtls_max_sessions"],
    default=10_000,
    show_default=True,
    help="DTLS sessions per process before the least recently active is evicted.",
)
@click.option(
    "--insecure-coap-enrollment",
    is_flag=True,
    envvar=ENVIRONMENT["insecure_coap_enrollment"],
    help="DEVELOPMENT ONLY: allow EST over plain CoAP, trusting the CSR's CN as identity.",
)
@click.option(
    "--cert-validity-days",
    type=int,
    envvar=ENVIRONMENT["cert_validity_days"],
    default=365,
    show_default=True,
    help="Validity of issued device certificates.",
)
@click.option(
    "--subject-o",
    "subject_organization",
    envvar=ENVIRONMENT["subject_organization"],
    default=None,
    help="O attribute added to issued certificate subjects.",
)
@click.option(
    "--subject-ou",
    "subject_organizational_unit",
    envvar=ENVIRONMENT["subject_organizational_unit"],
    default=None,
    help="OU attribute added to issued certificate subjects.",
)
@click.option(
    "--admin",
    envvar=ENVIRONMENT["admin"],
    default=f"127.0.0.1:{DEFAULT_ADMIN_PORT}",
    show_default=True,
    help="Admin API listener HOST:PORT (API keys required), or 'off'.",
)
@click.option(
    "--admin-tls-cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=ENVIRONMENT["admin_tls_cert_file"],
    default=None,
    help="Serve the admin API over HTTPS with this certificate chain (PEM).",
)
@click.option(
    "--admin-tls-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=ENVIRONMENT["admin_tls_key_file"],
    default=None,
    help="Private key (PEM) for --admin-tls-cert-file.",
)
@click.option(
    "--workers",
    type=int,
    envvar=ENVIRONMENT["workers"],
    default=lambda: os.cpu_count() or 1,
    show_default="CPU count",
    help="Server processes sharing the ports (SO_REUSEPORT); 1 runs in this process.",
)
@click.option(
    "--max-pending-signatures",
    type=int,
    envvar=ENVIRONMENT["max_pending_signatures"],
    default=512,
    show_default=True,
    help="Signing requests in flight before devices get 5.03 + Max-Age.",
)
def serve(**values: Any) -> None:
    """Run the server until SIGINT/SIGTERM (requests in flight finish first)."""
    from .server import serve_forever

    settings = settings_or_exit(**values)
    if settings.workers > 1:
        from .workers import run_workers

        try:
            sys.exit(run_workers(settings))
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    run_async(serve_forever)(settings)


@main.command()
@storage_options
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Simulated devices to enroll.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Devices in flight at once.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the summary as JSON.",
)
@click.option("--psk", "transport", flag_value="dtls-psk", help="Devices use PSK mode over DTLS.")
@click.option(
    "--insecure-coap",
    "transport",
    flag_value="coap",
    help="Devices use plain CoAP with insecure enrollment (development only).",
)
@click.option(
    "--dtls", "transport", flag_value="dtls", default=True, help="DTLS with certificates (default)."
)
@click.option(
    "--flow",
    type=click.Choice(["bootstrap", "est"]),
    default="bootstrap",
    show_default=True,
    help="bootstrap: the device's whole journey (/bspack or /bs, then EST); est: EST enrollment only.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes for the demo's server.",
)
def demo(
    json_path: Path | None, devices: int, concurrency: int, transport: str, flow: str, **values: Any
) -> None:
    """Start a server on loopback, bootstrap and enroll a simulated fleet through it, print a summary.

    Devices connect over DTLS with factory certificates from a test manufacturer CA that the demo
    registers as trusted. Exit code 0 only if every device enrolled and verified its chain.
    """
    from .demo import run_demo

    settings = settings_or_exit(**values)
    code = run_demo(
        settings,
        devices=devices,
        concurrency=concurrency,
        json_path=json_path,
        transport=transport,
        flow=flow,
    )
    sys.exit(code)


@main.group()
def ca() -> None:
    """The built-in CA."""


@ca.command("export")
@storage_options
def ca_export(**values: Any) -> None:
    """Print the built-in CA chain (issuing CA, then root) as PEM, creating the CA if needed."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .server import open_secret_box
        from .store import builtin_ca

        box = open_secret_box(settings)
        async with database_for(settings) as database:
            active = await builtin_ca.ensure(database.pool, box)
        for certificate in active.chain:
            click.echo(certificate.public_bytes(Encoding.PEM).decode(), nl=False)

    run_async(body)()


@main.group()
def certificates() -> None:
    """Issued certificates (the audit)."""


@certificates.command("list")
@storage_options
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
def certificates_list(endpoint: str | None, limit: int, **values: Any) -> None:
    """List recently issued certificates, newest first."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import audit

        async with database_for(settings) as database:
            rows = await audit.recent(database.pool, limit=limit, endpoint=endpoint)
            total = await audit.count_issued(database.pool)
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

    run_async(body)()


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

    async def body() -> None:
        from .store import trust as trust_store

        async with database_for(settings) as database:
            added = await trust_store.add(
                database.pool,
                name=name or pem_file.name,
                service=service,
                certificate_pem=pem,
                description=description,
            )
        click.echo(
            f"trusted {added.subject} for {added.service} (id {added.id}, sha256 {added.fingerprint_sha256})"
        )

    run_async(body)()


@trust.command("list")
@storage_options
@click.option("--service", type=click.Choice(["bootstrap", "lwm2m"]), default=None)
def trust_list(service: str | None, **values: Any) -> None:
    """List trusted certificates."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import trust as trust_store

        async with database_for(settings) as database:
            rows = await trust_store.list_all(database.pool, service=service)
        print_table(
            f"Trusted certificates ({len(rows)})",
            ["name", "service", "status", "subject", "not after", "id"],
            [[r.name, r.service, r.status, r.subject, r.not_after.date().isoformat(), r.id] for r in rows],
        )

    run_async(body)()


@trust.command("remove")
@storage_options
@click.argument("name_or_id")
def trust_remove(name_or_id: str, **values: Any) -> None:
    """Stop trusting a certificate (by name or id)."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import trust as trust_store

        async with database_for(settings) as database:
            await trust_store.remove(database.pool, name_or_id)
        click.echo(f"removed {name_or_id}")

    run_async(body)()


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

    async def body() -> None:
        from .server import open_secret_box
        from .store import devices

        box = open_secret_box(settings)
        async with database_for(settings) as database:
            await devices.put(database.pool, box, devices.PskCredential(endpoint, psk_identity, key))
        click.echo(f"PSK identity {psk_identity!r} now bootstraps endpoint {endpoint!r}")

    run_async(body)()


@device.command("list")
@storage_options
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
def device_list(limit: int, **values: Any) -> None:
    """List endpoints with PSK credentials (keys are never shown)."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import devices

        async with database_for(settings) as database:
            rows = await devices.list_identities(database.pool, limit=limit)
        for endpoint, identity, updated in rows:
            click.echo(f"{endpoint}\t{identity}\t{updated.isoformat(timespec='seconds')}")

    run_async(body)()


@device.command("remove")
@storage_options
@click.argument("endpoint")
def device_remove(endpoint: str, **values: Any) -> None:
    """Delete ENDPOINT's PSK credentials."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import devices

        async with database_for(settings) as database:
            await devices.remove(database.pool, endpoint)
        click.echo(f"removed PSK credentials of {endpoint}")

    run_async(body)()


@main.command()
@storage_options
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON.")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes under test."
)
@click.option("--journey-devices", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--est-sessions", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--est-per-session", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--idle-sessions", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option(
    "--scale",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also load N per-endpoint bootstrap configurations and PSK identities and compare the PSK "
    "journey's cost per device before and after.",
)
def bench(
    json_path: Path | None,
    journey_devices: int,
    est_sessions: int,
    est_per_session: int,
    idle_sessions: int,
    scale: int,
    **values: Any,
) -> None:
    """Measure the signing path and the device journey against baselines taken in the same run.

    Starts a server on loopback (in --data-dir, by default a fresh temporary one) and prints a
    table: EST certificates/s and server CPU per certificate, the full journey's devices/s,
    latency and CPU per device, DTLS handshake CPU, memory per idle session, and the baselines
    (openssl speed, the cryptography issue floor, CFSSL's CPU per certificate).
    """
    import tempfile

    from .bench import BenchPlan, run_bench

    if values.get("data_dir") == default_data_dir():
        values["data_dir"] = Path(tempfile.mkdtemp(prefix="lwm2m-bootstrap-bench-"))
    settings = settings_or_exit(**values)
    logs.configure(settings.log_format, "warning")
    plan = BenchPlan(
        journey_devices=journey_devices,
        est_sessions=est_sessions,
        est_per_session=est_per_session,
        idle_sessions=idle_sessions,
        scale=scale,
    )
    sys.exit(run_bench(settings, plan=plan, json_path=json_path))


# --- certificate issuers and service configurations --------------------------------------------


def _issuer_service(settings: Settings, database: Database) -> IssuerService:
    from .issuer_service import IssuerService
    from .server import open_secret_box

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

    async def body() -> None:
        async with database_for(settings) as database:
            created = await _issuer_service(settings, database).create_issuer(
                name=name,
                issuer_type=issuer_type,
                description=description,
                attributes={k: v for k, v in attributes.items() if v is not None},
                credentials={k: v for k, v in credentials.items() if v is not None},
            )
        click.echo(f"created {created.issuer_type} issuer {created.name!r} (id {created.id}); not active yet")

    run_async(body)()


@issuer.command("list")
@storage_options
def issuer_list(**values: Any) -> None:
    """List issuers with the services they are active for."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            issuers = await _issuer_service(settings, database).list_issuers()
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

    run_async(body)()


@issuer.command("show")
@storage_options
@click.argument("name_or_id")
def issuer_show(name_or_id: str, **values: Any) -> None:
    """Show one issuer (credentials are never shown)."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            item = await _issuer_service(settings, database).get_issuer(name_or_id)
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

    run_async(body)()


@issuer.command("verify")
@storage_options
@click.argument("name_or_id")
def issuer_verify(name_or_id: str, **values: Any) -> None:
    """Have the CA sign a test certificate (may use CA quota). Exit 1 if it fails."""
    settings = settings_or_exit(**values)

    async def body() -> bool:
        async with database_for(settings) as database:
            outcome = await _issuer_service(settings, database).verify_issuer(name_or_id)
        click.echo(("verified: " if outcome.successful else "verification FAILED: ") + outcome.message)
        return outcome.successful

    if not run_async(body)():
        sys.exit(1)


@issuer.command("delete")
@storage_options
@click.argument("name_or_id")
def issuer_delete(name_or_id: str, **values: Any) -> None:
    """Delete an issuer (refused while any service uses it)."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            await _issuer_service(settings, database).delete_issuer(name_or_id)
        click.echo(f"deleted {name_or_id}")

    run_async(body)()


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
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            config = await _issuer_service(settings, database).set_service_issuer(
                reference,
                None if issuer_name.lower() == "builtin" else issuer_name,
                require_verified=verify,
                create=True,
            )
        click.echo(f"{config.reference} now signs with {issuer_name}")

    run_async(body)()


@service.command("list")
@storage_options
def service_list(**values: Any) -> None:
    """List service configurations and their CAs."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            issuers_service = _issuer_service(settings, database)
            configs = await issuers_service.list_services()
            names = {i.id: i.name for i in await issuers_service.list_issuers()}
        for config in configs:
            ca_name = (
                "builtin" if config.certificate_issuer_id is None else names[config.certificate_issuer_id]
            )
            click.echo(f"{config.reference}\t{ca_name}\t{'custom' if config.is_custom else 'lwm2m'}")

    run_async(body)()


@service.command("delete")
@storage_options
@click.argument("reference")
def service_delete(reference: str, **values: Any) -> None:
    """Delete a custom service configuration."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        async with database_for(settings) as database:
            await _issuer_service(settings, database).delete_service(reference)
        click.echo(f"deleted service configuration {reference}")

    run_async(body)()


# --- bootstrap configurations ---------------------------------------------------------------------


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
    "psk: a generated PSK; nosec: development LwM2M servers only.",
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
def config_set(
    endpoint: str | None,
    server_uri: str,
    security_mode: str,
    server_cert: Path | None,
    certificate_usage: int | None,
    short_server_id: int,
    lifetime: int,
    binding: str,
    **values: Any,
) -> None:
    """Create or replace a bootstrap configuration (validated before it is stored)."""
    from .bootstrap_plan import BootstrapConfig

    settings = settings_or_exit(**values)
    bootstrap_config = BootstrapConfig(
        server_uri=server_uri,
        security_mode=security_mode,  # type: ignore[arg-type]  # click.Choice guarantees it
        short_server_id=short_server_id,
        lifetime=lifetime,
        binding=binding,
        server_certificate_der=_load_certificate_der(server_cert) if server_cert else None,
        certificate_usage=certificate_usage,
    )

    async def body() -> None:
        from .store import bootstrap_configs

        async with database_for(settings) as database:
            stored = await bootstrap_configs.put(
                database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE, bootstrap_config
            )
        scope = "default configuration" if stored.scope == bootstrap_configs.DEFAULT_SCOPE else stored.scope
        click.echo(f"{scope}: {stored.config.security_mode} -> {stored.config.server_uri}")

    run_async(body)()


@config.command("show")
@storage_options
@click.option("--endpoint", default=None, help="This endpoint's own configuration [default: the default].")
def config_show(endpoint: str | None, **values: Any) -> None:
    """Show a bootstrap configuration."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from cryptography import x509

        from .store import bootstrap_configs

        async with database_for(settings) as database:
            stored = await bootstrap_configs.get(database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE)
        item = stored.config
        scope = "default" if stored.scope == bootstrap_configs.DEFAULT_SCOPE else stored.scope
        click.echo(f"scope:             {scope}")
        click.echo(f"server uri:        {item.server_uri}")
        click.echo(f"security mode:     {item.security_mode}")
        click.echo(f"short server id:   {item.short_server_id}")
        click.echo(f"lifetime:          {item.lifetime}")
        click.echo(f"binding:           {item.binding}")
        if item.server_certificate_der:
            certificate = x509.load_der_x509_certificate(item.server_certificate_der)
            click.echo(f"server cert:       {certificate.subject.rfc4514_string()}")
        click.echo(f"certificate usage: {'-' if item.certificate_usage is None else item.certificate_usage}")
        click.echo(f"updated:           {stored.updated_at.isoformat(timespec='seconds')}")

    run_async(body)()


@config.command("list")
@storage_options
def config_list(**values: Any) -> None:
    """List bootstrap configurations (the default first)."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import bootstrap_configs

        async with database_for(settings) as database:
            rows = await bootstrap_configs.list_all(database.pool, limit=10000)
        print_table(
            f"Bootstrap configurations ({len(rows)})",
            ["scope", "security mode", "server uri", "ssid", "lifetime"],
            [
                [
                    "default" if r.scope == bootstrap_configs.DEFAULT_SCOPE else r.scope,
                    r.config.security_mode,
                    r.config.server_uri,
                    str(r.config.short_server_id),
                    str(r.config.lifetime),
                ]
                for r in rows
            ],
        )

    run_async(body)()


@config.command("delete")
@storage_options
@click.option("--endpoint", default=None, help="This endpoint's configuration [default: the default].")
def config_delete(endpoint: str | None, **values: Any) -> None:
    """Delete a bootstrap configuration."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import bootstrap_configs

        async with database_for(settings) as database:
            await bootstrap_configs.delete(database.pool, endpoint or bootstrap_configs.DEFAULT_SCOPE)
        click.echo("deleted")

    run_async(body)()


@main.command("bootstraps")
@storage_options
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
def bootstraps(endpoint: str | None, limit: int, **values: Any) -> None:
    """Recent bootstraps and their outcomes, newest first."""
    settings = settings_or_exit(**values)

    async def body() -> None:
        from .store import bootstrap_configs

        async with database_for(settings) as database:
            rows = await bootstrap_configs.recent(database.pool, endpoint=endpoint, limit=limit)
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

    run_async(body)()


from .admin.cli_commands import apikey  # noqa: E402  (it imports this module's helpers)

main.add_command(apikey)

if __name__ == "__main__":
    main()
