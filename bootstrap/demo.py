"""``lwm2m-bootstrap demo``: a server on loopback, a simulated fleet through it, one summary.

The server runs as a child process (exactly what ``serve`` runs) so the summary can report its CPU
time per certificate separately from the simulator's. By default devices connect over DTLS with
factory certificates from the simulator's test manufacturer CA, which the demo registers as a
trusted bootstrap CA (``--psk``: PSK mode; ``--insecure-coap``: plain CoAP, development only).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from aiocoap import Code, Context, Message
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console

from device_sim.fleet import FleetOptions, run_fleet, wait_until_accepted
from device_sim.provisioning import FactoryCa, register

from . import logs
from .bootstrap_plan import BootstrapConfig
from .config import Settings
from .store import bootstrap_configs, builtin_ca
from .store.database import Database

MODES = {"dtls": "DTLS, certificates", "dtls-psk": "DTLS, PSK", "coap": "plain CoAP (insecure)"}

#: LwM2M server URI of the default bootstrap configuration the demo creates on first run.
DEMO_LWM2M_SERVER = "coaps://localhost:5784"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of the server: the process and its workers (Postgres runs apart)."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def server_command(settings: Settings, coap_port: int, coaps_port: int | None) -> list[str]:
    """The ``serve`` invocation for the demo's child server."""
    command = [
        sys.executable, "-m", "bootstrap", "serve",
        "--data-dir", str(settings.data_dir),
        "--coap", f"127.0.0.1:{coap_port}",
        "--coaps", f"127.0.0.1:{coaps_port}" if coaps_port else "off",
        "--coaps-tcp", "off",
        "--log-format", "json",
        "--log-level", "warning",
        "--workers", str(settings.workers),
    ]  # fmt: skip
    if coaps_port is None:
        command.append("--insecure-coap-enrollment")
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    if settings.master_key_file:
        command += ["--master-key-file", str(settings.master_key_file)]
    return command


async def wait_until_ready(uri: str, process: subprocess.Popen[bytes], limit_s: float = 60.0) -> None:
    """Poll ``/.well-known/core`` until the server answers (or it exits, or time runs out)."""
    context = await Context.create_client_context()
    try:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with code {process.returncode} during start-up")
            try:
                request = Message(code=Code.GET, uri=uri + "/.well-known/core")
                response = await asyncio.wait_for(context.request(request).response, 1.0)
                if response.code == Code.CONTENT:
                    return
            except Exception:  # not up yet
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server did not answer within {limit_s:.0f} s")
    finally:
        await context.shutdown()


async def provision(settings: Settings, options: FleetOptions) -> FleetOptions:
    """Register the factory CA (and PSKs) with the server's database; learn the server's CA."""
    assert options.factory is not None
    endpoints = (
        [f"{options.endpoint_prefix}-{i:07d}" for i in range(options.devices)] if options.psk else None
    )
    await register(
        options.factory,
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        psk_endpoints=endpoints,
        master_key_file=settings.master_key_file,
    )
    database = await Database.open(
        database_url=settings.database_url, data_dir=settings.data_dir, min_size=1, max_size=2
    )
    try:
        chain = await builtin_ca.active_chain(database.pool)
        if options.flow == "bootstrap" and await bootstrap_configs.effective(database.pool, "-") is None:
            # First run: give devices an LwM2M server account to bootstrap into. The demo has no
            # LwM2M server; the account names one whose certificate the built-in CA would issue.
            root = next(c for c in chain if c.issuer == c.subject)
            await bootstrap_configs.put(
                database.pool,
                bootstrap_configs.DEFAULT_SCOPE,
                BootstrapConfig(
                    server_uri=DEMO_LWM2M_SERVER,
                    security_mode="est",
                    server_certificate_der=root.public_bytes(Encoding.DER),
                    certificate_usage=2,
                ),
            )
    finally:
        await database.close()
    roots = tuple(c for c in chain if c.issuer == c.subject)
    options = FleetOptions(**{**options.__dict__, "server_trust": roots})
    await wait_until_accepted(options)
    return options


def run_demo(
    settings: Settings,
    *,
    devices: int,
    concurrency: int,
    json_path: Path | None,
    transport: str = "dtls",
    flow: str = "bootstrap",
) -> int:
    """Run the demo; return the exit code (0 only if every device enrolled).

    ``transport`` is ``dtls`` (certificates), ``dtls-psk`` or ``coap`` (insecure, development).
    """
    console = Console()
    logs.configure(settings.log_format, "warning")  # the summary is the demo's output
    coap_port = free_udp_port()
    coaps_port = None if transport == "coap" else free_udp_port()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "demo-server.log"
    uri = f"coaps://127.0.0.1:{coaps_port}" if coaps_port else f"coap://127.0.0.1:{coap_port}"
    console.print(f"data directory: {settings.data_dir}")
    console.print(f"starting the server on {uri} (log: {log_path}) ...")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            server_command(settings, coap_port, coaps_port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        asyncio.run(wait_until_ready(f"coap://127.0.0.1:{coap_port}", process))
        options = FleetOptions(
            server=uri,
            devices=devices,
            concurrency=concurrency,
            progress=console.is_terminal,
            factory=FactoryCa.load_or_create(settings.data_dir / "device-sim") if coaps_port else None,
            psk=transport == "dtls-psk",
            flow=flow if coaps_port else "est",
        )
        if coaps_port:
            console.print("registering the simulator's manufacturer CA as a trusted bootstrap CA ...")
            options = asyncio.run(provision(settings, options))
        server = psutil.Process(process.pid)
        cpu_before = server_cpu_seconds(server)
        mode = MODES[transport]
        what = "bootstrapping and enrolling" if options.flow == "bootstrap" else "enrolling"
        console.print(f"{what} {devices} simulated devices over {mode} (concurrency {concurrency}) ...")
        report = asyncio.run(run_fleet(options))
        cpu_used = server_cpu_seconds(server) - cpu_before
        report.extra["transport"] = mode
        report.extra["flow"] = "bootstrap + EST" if options.flow == "bootstrap" else "EST only"
        if report.succeeded:
            report.extra["server_cpu_ms_per_device"] = round(cpu_used * 1000 / report.succeeded, 3)
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {type(exc).__name__}: {exc}")
        return 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    report.render(console, title="Demo: bootstrap and EST enrollment through the built-in CA")
    if json_path:
        report.write_json(json_path)
    if report.failed:
        console.print(f"[red]{report.failed} device(s) failed[/red]; server log: {log_path}")
        return 1
    return 0
