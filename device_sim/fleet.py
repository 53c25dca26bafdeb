"""Running a simulated fleet against a server: each device enrolls by EST and checks its chain.

Over ``coap://`` all devices share one client context (development servers only, with insecure
enrollment). Over ``coaps://`` every device opens its own DTLS session with its factory credentials:
a certificate from the simulator's manufacturer CA, or a PSK.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiocoap import Code, Context, Message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .device import PKCS7_CERTS_ONLY, SimDevice, VerificationError
from .dtls_client import CertificateCredentials, ClientCredentials, PskCredentials, add_dtls_client_transport
from .keys import KeyPool
from .provisioning import FactoryCa
from .report import FleetReport

PKCS10 = 286


@dataclass(frozen=True, kw_only=True)
class FleetOptions:
    """How to run the fleet."""

    server: str
    """Base URI: ``coap://HOST:PORT`` or ``coaps://HOST:PORT``."""
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
    factory: FactoryCa | None = None
    """Factory credentials for ``coaps://`` (certificates and PSKs come from it)."""
    psk: bool = False
    """Over ``coaps://``: PSK mode instead of certificates."""
    server_trust: tuple[x509.Certificate, ...] = field(default=())
    """CAs to verify the server with over DTLS certificate mode (empty: not verified)."""
    lwm2m_format: int | None = 112
    """Content format the device prefers for bootstrap (``pct`` and the pack's Accept); ``None``
    behaves like an LwM2M 1.0 client (no ``pct``: TLV)."""
    flow: str = "est"
    """``bootstrap``: the full journey (bootstrap by pack or request, then EST when told mode 4);
    ``est``: enrollment only."""

    @property
    def secure(self) -> bool:
        """Whether the fleet speaks DTLS."""
        return self.server.startswith("coaps://")


class EstClient:
    """EST-coaps requests from one client context."""

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

    async def enroll(self, csr_der: bytes, operation: str = "sen") -> Message:
        """POST sen (or sren) with a DER CSR (Content-Format 286); returns the final response."""
        request = Message(
            code=Code.POST, uri=f"{self._base}/{operation}", payload=csr_der, content_format=PKCS10
        )
        request.opt.accept = PKCS7_CERTS_ONLY
        return await asyncio.wait_for(self._context.request(request).response, self._timeout)


def device_credentials(device: SimDevice, options: FleetOptions) -> ClientCredentials:
    """The factory credentials ``device`` presents in its DTLS handshake."""
    assert options.factory is not None
    if options.psk:
        identity, key = options.factory.psk(device.endpoint)
        return PskCredentials(identity=identity.encode(), key=key)
    certificate = options.factory.device_certificate(device.endpoint, device.key.public_key())
    return CertificateCredentials(
        certificate_chain=(certificate,), private_key=device.key, trusted_cas=options.server_trust
    )


async def device_context(device: SimDevice, options: FleetOptions) -> Context:
    """A client context for one device: its own DTLS session over ``coaps://``."""
    context = Context(loop=asyncio.get_running_loop(), serversite=None)
    await add_dtls_client_transport(context, device_credentials(device, options))
    return context


async def wait_until_accepted(options: FleetOptions, *, attempts: int = 50, pause_s: float = 0.1) -> None:
    """After registering factory credentials, wait until the server accepts a device's handshake
    (running servers learn of new trust anchors and PSKs through NOTIFY, within milliseconds)."""
    if not options.secure:
        return
    device = SimDevice(f"{options.endpoint_prefix}-{0:07d}", KeyPool(1).key_for(0))
    last: Exception | None = None
    for _ in range(attempts):
        context = await device_context(device, options)
        try:
            await EstClient(context, options).ca_certificates()
            return
        except Exception as exc:  # refused handshake, timeout: not yet
            last = exc
            await asyncio.sleep(pause_s)
        finally:
            await context.shutdown()
    raise RuntimeError(f"the server never accepted the simulator's factory credentials ({last!r})")


async def run_fleet(options: FleetOptions) -> FleetReport:
    """Enroll ``options.devices`` simulated devices with at most ``options.concurrency`` at once."""
    if options.secure and options.factory is None:
        raise ValueError("coaps:// needs factory credentials (a manufacturer CA)")
    report = FleetReport(devices=options.devices)
    keys = KeyPool(min(options.key_pool, max(1, options.devices)))

    def device(index: int) -> SimDevice:
        return SimDevice(f"{options.endpoint_prefix}-{index:07d}", keys.key_for(index))

    shared = None if options.secure else await Context.create_client_context()
    try:
        probe = shared or await device_context(device(0), options)
        try:
            ca_certificates = await EstClient(probe, options).ca_certificates()
        finally:
            if shared is None:
                await probe.shutdown()
        if not any(c.issuer == c.subject for c in ca_certificates):
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
                    if options.flow == "bootstrap":
                        await _journey(
                            device(index), options, ca_certificates, report, use_pack=index % 2 == 0
                        )
                    else:
                        await _run_device(device(index), options, shared, ca_certificates, report)
                    progress.advance(task)

            await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
            report.elapsed_s = time.perf_counter() - started
    finally:
        if shared is not None:
            await shared.shutdown()
    return report


async def _journey(
    device: SimDevice,
    options: FleetOptions,
    ca_certificates: list[x509.Certificate],
    report: FleetReport,
    *,
    use_pack: bool,
) -> None:
    from .journey import JourneyError, run_journey  # journey builds on this module

    started = time.perf_counter()
    try:
        result = await run_journey(device, options, ca_certificates, use_pack=use_pack)
    except JourneyError as exc:
        report.failures[exc.reason] += 1
        return
    except TimeoutError:
        report.failures["timeout"] += 1
        return
    except Exception as exc:  # transport errors (handshake refused, ...): name them by type
        report.failures[f"transport: {type(exc).__name__}"] += 1
        return
    report.latencies_ms.append((time.perf_counter() - started) * 1000)
    key = f"bootstrapped_by_{result.method}"
    report.extra[key] = int(report.extra.get(key, 0)) + 1


async def _run_device(
    device: SimDevice,
    options: FleetOptions,
    shared: Context | None,
    ca_certificates: Sequence[x509.Certificate],
    report: FleetReport,
) -> None:
    anchors = [c for c in ca_certificates if c.issuer == c.subject]
    started = time.perf_counter()
    context = shared
    try:
        if context is None:
            context = await device_context(device, options)
        response = await EstClient(context, options).enroll(device.csr_der())
    except TimeoutError:
        report.failures["timeout"] += 1
        return
    except Exception as exc:  # transport errors (handshake refused, ...): name them by type
        report.failures[f"transport: {type(exc).__name__}"] += 1
        return
    finally:
        if shared is None and context is not None:
            await context.shutdown()
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
