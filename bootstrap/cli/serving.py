"""Commands that run a server: ``serve``, and ``demo`` and ``bench``, which start one on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .. import logs
from ..config import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_COAP_PORT,
    DEFAULT_COAPS_PORT,
    ENVIRONMENT,
    default_data_dir,
)
from ..errors import ConfigError
from .common import main, run_async, server_names_option, settings_or_exit, storage_options


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
@server_names_option
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
    "--dtls-receive-buffer",
    type=int,
    envvar=ENVIRONMENT["dtls_receive_buffer"],
    default=4 * 2**20,
    show_default=True,
    help="SO_RCVBUF of the DTLS socket in bytes (0: system default); capped by net.core.rmem_max.",
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
    from ..server import serve_forever

    settings = settings_or_exit(**values)
    if settings.workers > 1:
        from ..workers import run_workers

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
    from ..demo import run_demo

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


@main.command()
@storage_options
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON.")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes under test."
)
@click.option("--journey-devices", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option(
    "--journey-concurrency",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Devices in flight during the journey.",
)
@click.option(
    "--journey-processes",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Simulator processes driving the journey.",
)
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
    journey_concurrency: int,
    journey_processes: int,
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

    from ..bench import BenchPlan, run_bench

    if values.get("data_dir") == default_data_dir():
        values["data_dir"] = Path(tempfile.mkdtemp(prefix="lwm2m-bootstrap-bench-"))
    settings = settings_or_exit(**values)
    logs.configure(settings.log_format, "warning")
    plan = BenchPlan(
        journey_devices=journey_devices,
        journey_concurrency=journey_concurrency,
        journey_processes=journey_processes,
        est_sessions=est_sessions,
        est_per_session=est_per_session,
        idle_sessions=idle_sessions,
        scale=scale,
    )
    sys.exit(run_bench(settings, plan=plan, json_path=json_path))
