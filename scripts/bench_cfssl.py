#!/usr/bin/env python3
"""CPU per certificate for the CFSSL_AUTH backend against the real ``cfssl serve``.

Starts ``cfssl serve`` (tests/cfssl_server.py: fresh ECDSA P-256 CA, HMAC-authenticated profile),
pre-builds N SignRequests (key and CSR generation is not counted), signs them through
:class:`ca_backends.cfssl.CfsslBackend`, and reports:

* server CPU per certificate: ``(user + system)`` of the ``cfssl serve`` process (psutil, by pid)
  over the measured calls, divided by N;
* client CPU per certificate: this process's CPU time (``time.process_time``: event loop, aiohttp,
  JSON, HMAC, certificate parsing and the leaf-signature/subject checks), divided by N;
* wall time and throughput.

Usage::

    .venv/bin/python scripts/bench_cfssl.py                 # 1000 calls, 1 and 8 in flight
    .venv/bin/python scripts/bench_cfssl.py -n 2000 -c 1 -c 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ca_backends import IssuerConfig
from ca_backends.cfssl import CfsslBackend
from ca_backends.http import HttpPolicy
from tests.ca_helpers import sign_request
from tests.cfssl_server import AUTH_PROFILE, CfsslServer, cfssl_serve


async def measure(server: CfsslServer, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """Sign ``n`` certificates with ``concurrency`` calls in flight; return the figures."""
    backend = CfsslBackend.from_config(
        IssuerConfig(
            issuer_id="bench",
            name="cfssl-bench",
            attributes={"host_url": server.url, "cfssl_profile": AUTH_PROFILE},
            credentials={"hmac_hex_key": server.hmac_key_hex},
        ),
        policy=HttpPolicy(max_concurrency=max(16, concurrency), slot_wait=30.0),
    )
    requests = [sign_request(f"urn:dev:bench-{i:05d}") for i in range(n + warmup)]
    try:
        for request in requests[:warmup]:  # connection, /info cache, code paths warm
            await backend.sign(request)
        cfssl_proc = psutil.Process(server.pid)
        gate = asyncio.Semaphore(concurrency)

        async def one(request: Any) -> None:
            async with gate:
                await backend.sign(request)

        s0 = cfssl_proc.cpu_times()
        c0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests[warmup:]))
        wall = time.perf_counter() - t0
        c1 = time.process_time()
        s1 = cfssl_proc.cpu_times()
    finally:
        await backend.aclose()
    server_cpu = (s1.user - s0.user) + (s1.system - s0.system)
    client_cpu = c1 - c0
    return {
        "certificates": n,
        "concurrency": concurrency,
        "server_cpu_ms_per_cert": round(server_cpu / n * 1000, 3),
        "client_cpu_ms_per_cert": round(client_cpu / n * 1000, 3),
        "wall_s": round(wall, 3),
        "certs_per_s": round(n / wall, 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--count", type=int, default=1000, help="certificates per run (default 1000)")
    parser.add_argument(
        "-c", "--concurrency", type=int, action="append", help="calls in flight; repeatable (default 1 and 8)"
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args()
    # Per-certificate info logs would dominate the client CPU; keep warnings and errors only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    results = []
    async with cfssl_serve() as server:
        for concurrency in args.concurrency or [1, 8]:
            result = await measure(server, args.count, concurrency, args.warmup)
            results.append(result)
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"n={result['certificates']} concurrency={concurrency}: "
                    f"cfssl serve {result['server_cpu_ms_per_cert']} ms CPU/cert, "
                    f"client {result['client_cpu_ms_per_cert']} ms CPU/cert, "
                    f"{result['certs_per_s']} certs/s ({result['wall_s']} s wall)"
                )
    if not args.json:
        print(
            f"host: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
