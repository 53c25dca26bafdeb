"""``lwm2m-bootstrap demo``: a server on loopback, a simulated fleet through it, one summary.

The server runs as a child process (exactly what ``serve`` runs) so the summary can report its CPU
time per certificate separately from the simulator's. By default devices connect over DTLS with
factory certificates from the simulator's test manufacturer CA, which the demo registers as a
trusted bootstrap CA (``--psk``: PSK mode; ``--insecure-coap``: plain CoAP, development only).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from device_sim.fleet import FleetOptions, run_fleet
from device_sim.provisioning import FactoryCa

from . import event_loop, logs
from .config import Settings
from .loopback import LoopbackServer, provision

MODES = {"dtls": "DTLS, certificates", "dtls-psk": "DTLS, PSK", "coap": "plain CoAP (insecure)"}


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
    server = LoopbackServer(settings, dtls=transport != "coap")
    console.print(f"data directory: {settings.data_dir}")
    console.print(f"starting the server on {server.uri} (log: {server.log_path}) ...")
    try:
        server.start()
        options = FleetOptions(
            server=server.uri,
            devices=devices,
            concurrency=concurrency,
            progress=console.is_terminal,
            factory=FactoryCa.load_or_create(settings.data_dir / "device-sim") if server.coaps_port else None,
            # Stable device keys, so the factory certificates issued in an earlier run are reused.
            key_cache=settings.data_dir / "device-sim",
            psk=transport == "dtls-psk",
            flow=flow if server.coaps_port else "est",
        )
        if server.coaps_port:
            console.print("registering the simulator's manufacturer CA as a trusted bootstrap CA ...")
            options = asyncio.run(provision(settings, options))
        cpu_before = server.cpu_seconds()
        mode = MODES[transport]
        what = "bootstrapping and enrolling" if options.flow == "bootstrap" else "enrolling"
        console.print(f"{what} {devices} simulated devices over {mode} (concurrency {concurrency}) ...")
        report = event_loop.run(run_fleet(options))
        cpu_used = server.cpu_seconds() - cpu_before
        report.extra["transport"] = mode
        report.extra["flow"] = "bootstrap + EST" if options.flow == "bootstrap" else "EST only"
        if report.succeeded:
            report.extra["server_cpu_ms_per_device"] = round(cpu_used * 1000 / report.succeeded, 3)
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {type(exc).__name__}: {exc}")
        return 1
    finally:
        server.stop()
    report.render(console, title="Demo: bootstrap and EST enrollment through the built-in CA")
    if json_path:
        report.write_json(json_path)
    if report.failed:
        console.print(f"[red]{report.failed} device(s) failed[/red]; server log: {server.log_path}")
        return 1
    return 0
