"""Load shapes over long-lived DTLS sessions: many enrollments per session, and idle sessions.

Used by ``lwm2m-bootstrap bench`` to separate the cost of EST signing from the cost of handshakes:
sessions are opened first, then the clock (and the server's CPU meter) starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bootstrap.coap.wire import dotted

from .connection import DeviceConnection
from .device import SimDevice
from .fleet import CHANGED, EstClient, FleetOptions, connect
from .keys import KeyPool
from .report import FleetReport


@dataclass
class OpenSessions:
    """Devices with an established DTLS session each."""

    devices: list[SimDevice]
    connections: list[DeviceConnection]

    async def close(self) -> None:
        """Close every session (close_notify), then give the datagrams a moment to leave."""
        for connection in self.connections:
            connection.close()
        await asyncio.sleep(0)


async def open_sessions(options: FleetOptions, count: int, *, concurrency: int = 50) -> OpenSessions:
    """Handshake ``count`` devices (each fetches ``crts`` once, which completes the handshake)."""
    keys = KeyPool(min(options.key_pool, count), cache_dir=options.key_cache)
    devices = [SimDevice(f"{options.endpoint_prefix}-{i:07d}", keys.key_for(i)) for i in range(count)]
    connections: list[DeviceConnection | None] = [None] * count
    semaphore = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with semaphore:
            connection = await connect(devices[index], options)
            await EstClient(connection, options).ca_certificates()
            connections[index] = connection

    await asyncio.gather(*(one(i) for i in range(count)))
    return OpenSessions(devices, [c for c in connections if c is not None])


async def enroll_repeatedly(
    sessions: OpenSessions,
    options: FleetOptions,
    per_session: int,
    *,
    cpu_meter: Callable[[], float] | None = None,
) -> tuple[FleetReport, float]:
    """Every session enrolls ``per_session`` times back to back; returns the report and the CPU
    seconds ``cpu_meter`` measured over exactly that window."""
    report = FleetReport(devices=len(sessions.devices) * per_session)
    start_cpu = cpu_meter() if cpu_meter else 0.0
    started = time.perf_counter()

    async def run(device: SimDevice, connection: DeviceConnection) -> None:
        client = EstClient(connection, options)
        csr = device.csr_der()
        for _ in range(per_session):
            t0 = time.perf_counter()
            try:
                response = await client.enroll(csr)
            except Exception as exc:  # timeouts, closed sessions
                report.failures[f"transport: {type(exc).__name__}"] += 1
                continue
            if response.code != CHANGED:
                report.failures[dotted(response.code)] += 1
                continue
            report.latencies_ms.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(run(d, c) for d, c in zip(sessions.devices, sessions.connections, strict=True)))
    report.elapsed_s = time.perf_counter() - started
    used = (cpu_meter() - start_cpu) if cpu_meter else 0.0
    return report, used


async def timed(coroutine: Awaitable[object], cpu_meter: Callable[[], float]) -> tuple[float, float]:
    """Wall seconds and metered CPU seconds of one awaited operation."""
    cpu0, t0 = cpu_meter(), time.perf_counter()
    await coroutine
    return time.perf_counter() - t0, cpu_meter() - cpu0
