#!/usr/bin/env python3
"""Instructions per certificate and per device journey, server and simulator, counted by callgrind.

CPU time on a shared two-core machine moves by tens of percent within minutes, and by a factor of
two between hours. Instructions executed do not: callgrind counts them whatever else the machine is
doing, so two versions of the server can be compared to within a percent or two, one run each.
Instructions are not time (a cache miss costs more than an add), so this complements
``lwm2m-bootstrap bench``; it does not replace it.

The server runs as ``lwm2m-bootstrap serve`` (one worker, embedded Postgres) under callgrind, about
fifty times slower than native, so the load is light: a few devices at a time. After a warm-up of
each phase, the counters are zeroed (``callgrind_control --zero``) before it and dumped
(``callgrind_control --dump``) after it, and the dump is read with ``callgrind_annotate``:

* ``est``: enrollments (``sen``) over already established DTLS sessions, built-in CA;
* ``journey``: the whole journey of a device (DTLS handshake with its factory certificate,
  bootstrap, EST), devices one after the other at ``--concurrency``;
* ``simulator``: the same journey on the device's side, the devices pinning the server's
  certificate as in the bench. ``python -m device_sim`` runs under callgrind twice against the
  server, with a few devices and with ``--simulator-devices`` more; the difference, divided, is
  what one more device costs the simulator. Server and simulator share the machine's cores in
  ``lwm2m-bootstrap bench``, so both bound its devices per second.

Counts include the event loop, the DTLS records, the database writes and the ECDSA operations:
``ec_share`` is the part spent in OpenSSL's P-256 arithmetic, the floor no Python change moves.

Usage::

    .venv/bin/python scripts/count_instructions.py        # 1000 certificates, 200 + 100 journeys
    .venv/bin/python scripts/count_instructions.py --certificates 400 --devices 100 --json out.json

Needs valgrind (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bootstrap import event_loop, logs
from bootstrap.cli.common import settings_or_exit
from bootstrap.loopback import LoopbackServer, provision
from device_sim.fleet import FleetOptions, prepare_certificates, run_fleet
from device_sim.provisioning import FactoryCa
from device_sim.sessions import enroll_repeatedly, open_sessions

#: OpenSSL's P-256 and big-number routines (cryptography's bundled OpenSSL).
EC_FUNCTIONS = re.compile(r"ecp_nistz256|^bn_|bn2binpad|bin2bn|^BN_|ecdsa|ECDSA|^ec_|^EC_|ossl_ec")
#: A line of ``callgrind_annotate``: count, share, then ``file:function [object]``.
ANNOTATED = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:[^:\s]*:)?(\S+)")


class Counter:
    """Phases of a callgrind-run process: counters zeroed at the start, dumped at the end."""

    def __init__(self, pid: int, profile: Path) -> None:
        self.pid = pid
        self.profile = profile

    def _control(self, *arguments: str) -> None:
        subprocess.run(  # noqa: S603 (fixed arguments)
            ["callgrind_control", *arguments, str(self.pid)],  # noqa: S607 (valgrind's own tool)
            capture_output=True,
            check=True,
        )

    def start(self) -> None:
        """Zero the counters."""
        self._control("--zero")

    def stop(self) -> tuple[int, int]:
        """Dump the phase; return its instructions, in all and in P-256 arithmetic."""
        known = set(self.profile.parent.glob(self.profile.name + ".*"))
        self._control("--dump")
        dumps = set(self.profile.parent.glob(self.profile.name + ".*")) - known
        if len(dumps) != 1:
            raise RuntimeError(f"expected one new callgrind dump, found {sorted(dumps)}")
        return instructions(dumps.pop())


def instructions(dump: Path) -> tuple[int, int]:
    """A callgrind dump's instructions, in all and in P-256 arithmetic."""
    annotated = subprocess.run(  # noqa: S603 (fixed arguments)
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = ec = 0
    for line in annotated.splitlines():
        match = ANNOTATED.match(line)
        if match is None:
            continue
        count, function = int(match.group(1).replace(",", "")), match.group(2)
        if function == "PROGRAM":
            total = count
        elif EC_FUNCTIONS.search(function):
            ec += count
    return total, ec


def simulator_instructions(
    options: FleetOptions, data_dir: Path, factory_dir: Path, devices: int, concurrency: int
) -> tuple[int, float]:
    """The simulator's instructions per device journey, and their P-256 share.

    ``python -m device_sim`` runs under callgrind twice, with a few devices and with ``devices``
    more; the difference divided by ``devices`` leaves out what both runs spend on starting up
    (imports, keys, the first handshake). Factory certificates are issued beforehand."""
    pinned = data_dir / "server-certificate.der"
    pinned.write_bytes(options.server_certificate)
    few = max(2, devices // 5)
    counts = []
    for prefix, count in (("count-sim-few", few), ("count-sim-more", few + devices)):
        prepare_certificates(
            FleetOptions(**{**options.__dict__, "devices": count, "endpoint_prefix": prefix})
        )
        dump = data_dir / f"callgrind.simulator.{prefix}"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}",
            sys.executable, "-m", "device_sim",
            "--server", options.server,
            "--devices", str(count),
            "--concurrency", str(concurrency),
            "--flow", "bootstrap",
            "--endpoint-prefix", prefix,
            "--factory-dir", str(factory_dir),
            "--server-certificate", str(pinned),
            "--timeout", str(options.timeout_s),
            "--no-progress",
        ]  # fmt: skip
        subprocess.run(command, capture_output=True, check=True)  # noqa: S603 (arguments built here)
        counts.append(instructions(dump))
    (few_total, few_ec), (more_total, more_ec) = counts
    return (more_total - few_total) // devices, round((more_ec - few_ec) / (more_total - few_total), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=1000, help="EST enrollments counted")
    parser.add_argument("--devices", type=int, default=200, help="device journeys counted")
    parser.add_argument("--sessions", type=int, default=10, help="DTLS sessions the enrollments share")
    parser.add_argument("--concurrency", type=int, default=5, help="devices in flight in the journey")
    parser.add_argument(
        "--simulator-devices",
        type=int,
        default=100,
        help="device journeys counted in the simulator (python -m device_sim under callgrind); 0: skip",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--data-dir", type=Path, help="the server's data directory (default: a new one)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="lwm2m-bootstrap-instructions-"))
    settings = settings_or_exit(data_dir=data_dir, workers=1)
    logs.configure(settings.log_format, "error")
    profile = data_dir / "callgrind.out"
    factory_dir = data_dir / "device-sim"
    server = LoopbackServer(
        settings,
        wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}"],
        ready_limit_s=600,
    )
    print("starting the server under callgrind (a minute or two) ...", flush=True)
    server.start()
    assert server.process is not None
    counter = Counter(server.process.pid, profile)
    results: dict[str, Any] = {}
    try:
        base = FleetOptions(
            server=server.uri,
            factory=FactoryCa.load_or_create(factory_dir),
            key_cache=factory_dir,
            progress=False,
            timeout_s=120,
            flow="bootstrap",
            endpoint_prefix="count-est",
        )
        base = asyncio.run(provision(settings, base))

        async def est_phase() -> None:
            opened = await open_sessions(base, args.sessions, concurrency=5)
            per_session = max(1, args.certificates // args.sessions)
            await enroll_repeatedly(opened, base, 2)  # warm-up
            counter.start()
            report, _ = await enroll_repeatedly(opened, base, per_session)
            used, ec = counter.stop()
            await opened.close()
            if report.failed:
                raise RuntimeError(f"{report.failed} enrollments failed: {dict(report.failures)}")
            results["est_certificates"] = report.succeeded
            results["est_instructions_per_cert"] = used // report.succeeded
            results["est_ec_share"] = round(ec / used, 3)

        print(f"EST: {args.certificates} certificates ...", flush=True)
        event_loop.run(est_phase())

        def journey(prefix: str, devices: int) -> tuple[int, float]:
            options = FleetOptions(
                **{
                    **base.__dict__,
                    "devices": devices,
                    "concurrency": args.concurrency,
                    "endpoint_prefix": prefix,
                }
            )
            prepare_certificates(options)
            counter.start()
            report = event_loop.run(run_fleet(options))
            used, ec = counter.stop()
            if report.failed:
                raise RuntimeError(f"{report.failed} journeys failed: {dict(report.failures)}")
            return used // max(1, report.succeeded), round(ec / used, 3)

        print(f"journey: {args.devices} devices ...", flush=True)
        journey("count-warm", args.concurrency)
        results["journey_devices"] = args.devices
        (
            results["journey_instructions_per_device"],
            results["journey_ec_share"],
        ) = journey("count-journey", args.devices)
        if args.simulator_devices:
            print(f"simulator: {args.simulator_devices} devices more than a few ...", flush=True)
            results["simulator_devices"] = args.simulator_devices
            (
                results["simulator_instructions_per_device"],
                results["simulator_ec_share"],
            ) = simulator_instructions(base, data_dir, factory_dir, args.simulator_devices, args.concurrency)
    finally:
        server.stop()

    table = "\n".join(f"  {key:34} {value:>14,}" for key, value in results.items())
    print(f"instructions (callgrind):\n{table}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
