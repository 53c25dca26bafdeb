"""``python -m device_sim``: enroll a simulated fleet against a running server and print a summary.

Over ``coaps://`` each device handshakes with factory credentials from the simulator's test
manufacturer CA (``--factory-dir``), or with a PSK (``--psk``), and checks the server's certificate
against a pinned copy (``--server-certificate``) or its chain against CAs (``--server-ca``). With
``--data-dir`` or ``--database-url`` (the server's storage) the simulator registers that CA, and
the PSKs, itself.

Load shapes: closed loop (default; ``--concurrency`` devices in flight) or open loop (``--rate R``
device arrivals per second, Poisson by default or ``--arrival fixed``, at most ``--concurrency`` in
flight: arrivals beyond it are shed and counted as failures). ``--processes P`` spreads the fleet over
P simulator processes and merges their reports. ``--plot FILE.png`` draws latency and throughput
over time (needs matplotlib: the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console

from bootstrap import event_loop

from .fleet import FleetOptions, run_fleet, wait_until_accepted
from .multiproc import run_fleet_processes_sync
from .provisioning import FactoryCa, register
from .report import PlotUnavailable, ensure_plotting, plot_timeline

#: In-flight cap of the open loop when ``--concurrency`` is not given.
OPEN_LOOP_DEFAULT_CAP = 1000


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the fleet, print (and optionally write) the report; 0 only if all enrolled."""
    parser = argparse.ArgumentParser(prog="python -m device_sim", description=__doc__)
    parser.add_argument("--server", required=True, help="coap://HOST:PORT (development) or coaps://HOST:PORT")
    parser.add_argument("--devices", type=int, default=100, help="number of simulated devices (default 100)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="devices in flight at once (closed loop, default 20); with --rate, the in-flight cap "
        f"beyond which arrivals are shed (default {OPEN_LOOP_DEFAULT_CAP})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: device arrivals per second over all processes (default: closed loop)",
    )
    parser.add_argument(
        "--arrival",
        choices=["poisson", "fixed"],
        default="poisson",
        help="open-loop schedule: poisson (exponential gaps, mean 1/RATE) or fixed (1/RATE apart); "
        "default poisson",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the Poisson schedule")
    parser.add_argument(
        "--processes", type=int, default=1, help="simulator processes, each with a slice of the devices"
    )
    parser.add_argument(
        "--key-pool", type=int, default=64, help="distinct device keys, reused round-robin (default 64)"
    )
    parser.add_argument(
        "--no-key-cache",
        action="store_true",
        help="generate device keys in memory instead of caching them in FACTORY_DIR/keys-p256.pem",
    )
    parser.add_argument(
        "--est-root",
        default="/est",
        choices=["/est", "/.well-known/est"],
        help="EST root path (default /est)",
    )
    parser.add_argument(
        "--service", default=None, help="EST label: a certificate issuer configuration reference"
    )
    parser.add_argument("--endpoint-prefix", default="sim-device", help="endpoint names are PREFIX-NNNNNNN")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    parser.add_argument("--psk", action="store_true", help="coaps:// in PSK mode instead of certificates")
    parser.add_argument(
        "--flow",
        choices=["bootstrap", "est"],
        default="bootstrap",
        help="bootstrap: the full journey (half the devices by /bspack, half by /bs; EST when told "
        "mode 4); est: EST enrollment only (default bootstrap)",
    )
    parser.add_argument(
        "--factory-dir",
        type=Path,
        default=Path(platformdirs.user_cache_dir("lwm2m-bootstrap")) / "device-sim",
        help="where the test manufacturer CA is kept (created on first use), with the device keys "
        "(keys-p256.pem) and the factory certificates issued so far (device-certificates.bin)",
    )
    server_auth = parser.add_mutually_exclusive_group()
    server_auth.add_argument(
        "--server-ca",
        type=Path,
        default=None,
        help="PEM file of CAs to verify the server's chain with (LwM2M certificate usage 2)",
    )
    server_auth.add_argument(
        "--server-certificate",
        type=Path,
        default=None,
        help="the server's own certificate (PEM, first one in the file, or DER), pinned: LwM2M "
        "certificate usage 3, the default when a device's Security object does not say "
        "(lwm2m-bootstrap ca server-certificate prints it)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="server data dir: register CA/PSKs there")
    parser.add_argument("--database-url", default=None, help="server database: register CA/PSKs there")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON to FILE")
    parser.add_argument(
        "--json-timeline",
        action="store_true",
        help="with --json: add the timeline (per-second buckets and every completion)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="draw latency p50/p99 and throughput over time to FILE.png"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 20 if args.rate is None else OPEN_LOOP_DEFAULT_CAP
    if args.devices < 1 or args.concurrency < 1 or args.processes < 1 or args.key_pool < 1:
        parser.error("--devices, --concurrency, --processes and --key-pool must be at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.plot is not None:
        try:
            ensure_plotting()
        except PlotUnavailable as exc:
            print(f"python -m device_sim: {exc}", file=sys.stderr)
            return 2
    try:
        pinned = read_certificate_der(args.server_certificate) if args.server_certificate else b""
    except (OSError, ValueError) as exc:
        parser.error(f"--server-certificate: {exc}")
    console = Console()
    factory = FactoryCa.load_or_create(args.factory_dir) if args.server.startswith("coaps://") else None
    options = FleetOptions(
        server=args.server,
        devices=args.devices,
        concurrency=args.concurrency,
        est_root=args.est_root,
        service=args.service,
        endpoint_prefix=args.endpoint_prefix,
        timeout_s=args.timeout,
        progress=not args.no_progress and sys.stderr.isatty(),
        factory=factory,
        psk=args.psk,
        flow=args.flow,
        rate=args.rate,
        arrival=args.arrival,
        seed=args.seed,
        key_pool=args.key_pool,
        key_cache=None if args.no_key_cache else args.factory_dir,
        server_trust=tuple(x509.load_pem_x509_certificates(args.server_ca.read_bytes()))
        if args.server_ca
        else (),
        server_certificate=pinned,
    )
    try:
        if factory is not None and (args.data_dir or args.database_url):
            endpoints = [f"{args.endpoint_prefix}-{i:07d}" for i in range(args.devices)] if args.psk else None
            asyncio.run(
                register(
                    factory,
                    database_url=args.database_url,
                    data_dir=args.data_dir or Path("."),
                    psk_endpoints=endpoints,
                )
            )
        asyncio.run(wait_until_accepted(options))
        if args.processes > 1:
            report = run_fleet_processes_sync(options, args.processes)
        else:
            report = event_loop.run(run_fleet(options))
    except Exception as exc:
        console.print(f"[red]fleet could not start:[/red] {type(exc).__name__}: {exc}")
        return 2
    report.render(console)
    if args.json:
        report.write_json(args.json, timeline=args.json_timeline)
    if args.plot:
        plot_timeline(report, args.plot, title=f"{args.flow} over {args.server}")
        console.print(f"plot written to {args.plot}")
    return 0 if report.failed == 0 else 1


def read_certificate_der(path: Path) -> bytes:
    """The DER of the certificate in ``path``: PEM (the first certificate) or DER; ``ValueError``
    when it holds neither."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        certificates = x509.load_pem_x509_certificates(data)
        return certificates[0].public_bytes(Encoding.DER)
    return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)


if __name__ == "__main__":
    sys.exit(main())
