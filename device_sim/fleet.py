"""Running a simulated fleet against a server: each device enrolls by EST and checks its chain."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiocoap import Code, Context, Message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .device import PKCS7_CERTS_ONLY, SimDevice, VerificationError
from .keys import KeyPool
from .report import FleetReport

PKCS10 = 286


@dataclass(frozen=True, kw_only=True)
class FleetOptions:
    """How to run the fleet."""

    server: str
    """Base URI, e.g. ``coap://127.0.0.1:5683``."""
    devices: int = 100
    concurrency: int = 20
    est_root: str = "/est"
    """``/est`` (Anjay, Pelion client) or ``/.well-known/est`` (RFC 9148 default)."""
    service: str | None = None
    """EST label (service reference); ``None`` for the unlabelled (LWM2M) form."""
    endpoint_prefix: str = "sim-device"
    key_pool: int = 64
    timeout_s: float = 30.0
    progress: bool = True


class EstClient:
    """EST-coaps requests from the simulator over one aiocoap client context."""

    def __init__(self, context: Context, options: FleetOptions) -> None:
        self._context = context
        label = f"/{options.service}" if options.service else ""
        self._base = options.server.rstrip("/") + options.est_root + label
        self._timeout = options.timeout_s

    async def ca_certificates(self) -> list[x509.Certificate]:
        """GET crts and parse the PKCS#7 answer."""
        request = Message(code=Code.GET, uri=self._base + "/crts")
        response = await asyncio.wait_for(self._context.request(request).response, self._timeout)
        if response.code != Code.CONTENT:
            raise VerificationError(f"crts answered {response.code.dotted}")
        return list(pkcs7.load_der_pkcs7_certificates(response.payload))

    async def enroll(self, csr_der: bytes) -> Message:
        """POST sen with a DER CSR (Content-Format 286); returns the final response."""
        request = Message(code=Code.POST, uri=self._base + "/sen", payload=csr_der, content_format=PKCS10)
        request.opt.accept = PKCS7_CERTS_ONLY
        return await asyncio.wait_for(self._context.request(request).response, self._timeout)


async def run_fleet(options: FleetOptions) -> FleetReport:
    """Enroll ``options.devices`` simulated devices with at most ``options.concurrency`` at once."""
    report = FleetReport(devices=options.devices)
    keys = KeyPool(min(options.key_pool, max(1, options.devices)))
    context = await Context.create_client_context()
    try:
        client = EstClient(context, options)
        anchors = [c for c in await client.ca_certificates() if c.issuer == c.subject]
        if not anchors:
            raise VerificationError("crts holds no trust anchor")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(options.devices):
            queue.put_nowait(index)
        with _progress(options) as progress:
            task = progress.add_task("enrolling", total=options.devices)
            started = time.perf_counter()

            async def worker() -> None:
                while True:
                    try:
                        index = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    device = SimDevice(f"{options.endpoint_prefix}-{index:07d}", keys.key_for(index))
                    await _enroll_one(client, device, anchors, report)
                    progress.advance(task)

            await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
            report.elapsed_s = time.perf_counter() - started
    finally:
        await context.shutdown()
    return report


async def _enroll_one(
    client: EstClient, device: SimDevice, anchors: Sequence[x509.Certificate], report: FleetReport
) -> None:
    started = time.perf_counter()
    try:
        response = await client.enroll(device.csr_der())
    except TimeoutError:
        report.failures["timeout"] += 1
        return
    except Exception as exc:  # transport errors: name them by type
        report.failures[f"transport: {type(exc).__name__}"] += 1
        return
    if response.code != Code.CHANGED:
        detail = response.payload.decode("utf-8", "replace")[:60]
        report.failures[f"{response.code.dotted} {detail}".strip()] += 1
        return
    try:
        device.check_enrolled(
            response.payload, response.opt.content_format, anchors, now=dt.datetime.now(dt.UTC)
        )
    except VerificationError as exc:
        report.failures[f"verify: {exc.reason}"] += 1
        return
    report.latencies_ms.append((time.perf_counter() - started) * 1000)


def _progress(options: FleetOptions) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not options.progress,
        transient=True,
    )
