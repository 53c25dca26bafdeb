"""Running a simulated fleet against a server: each device enrolls by EST and checks its chain.

Over ``coap://`` all devices share one client context (development servers only, with insecure
enrollment). Over ``coaps://`` every device opens its own DTLS session with its factory credentials:
a certificate from the simulator's manufacturer CA, or a PSK.

Two load shapes:

* closed loop (the default): ``concurrency`` devices in flight; the next starts when one finishes;
* open loop (``rate``): devices arrive on a schedule (Poisson by default: exponential gaps with mean
  ``1/rate``; or ``fixed``: exactly ``1/rate`` apart) whatever the server's latency; ``concurrency``
  caps the devices in flight, and an arrival that finds the cap reached is dropped and counted as
  the failure ``shed: concurrency cap``. An arrival the simulator starts late (it was saturated) is
  started at once, not skipped, and its lateness recorded (``arrival lag`` in the summary).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bootstrap.coap.wire import WireMessage, code_from_dotted, dotted
from bootstrap.gc_tuning import settle_garbage_collector

from .coap_link import RequestHandler
from .connection import DeviceConnection
from .device import PKCS7_CERTS_ONLY, SimDevice, VerificationError
from .dtls_client import CertificateCredentials, ClientCredentials, PskCredentials, ServerNotPinned
from .keys import KeyPool
from .provisioning import FactoryCa
from .report import SHED_REASON, Completion, FleetReport

PKCS10 = 286
CONTENT, CHANGED = code_from_dotted("2.05"), code_from_dotted("2.04")


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
    """CAs to verify the server's chain with over DTLS certificate mode (LwM2M certificate usage 2)."""
    server_certificate: bytes = b""
    """The server's own certificate (DER), pinned: LwM2M certificate usage 3, the default when the
    Security object does not say (see :class:`~device_sim.dtls_client.CertificateCredentials`).
    Takes the place of ``server_trust``; with neither, the server is not verified."""
    lwm2m_format: int | None = 112
    """Content format the device prefers for bootstrap (``pct`` and the pack's Accept); ``None``
    behaves like an LwM2M 1.0 client (no ``pct``: TLV)."""
    flow: str = "est"
    """``bootstrap``: the full journey (bootstrap by pack or request, then EST when told mode 4);
    ``est``: enrollment only."""
    rate: float | None = None
    """Open loop: device arrivals per second (``None``: closed loop with ``concurrency`` in flight)."""
    arrival: str = "poisson"
    """Open loop schedule: ``poisson`` (exponential gaps, mean ``1/rate``) or ``fixed`` (``1/rate`` apart)."""
    seed: int | None = None
    """Seed of the Poisson schedule (``None``: a different schedule every run)."""
    first_index: int = 0
    """Endpoint index of the first device (a slice of a larger fleet: ``PREFIX-<first_index>`` on)."""
    key_cache: Path | None = None
    """Directory of the on-disk key cache (:class:`~device_sim.keys.KeyPool`); ``None``: keys in memory."""

    @property
    def secure(self) -> bool:
        """Whether the fleet speaks DTLS."""
        return self.server.startswith("coaps://")


class EstClient:
    """EST-coaps requests (RFC 9148) on one device's connection."""

    def __init__(self, connection: DeviceConnection, options: FleetOptions) -> None:
        self._connection = connection
        label = (options.service,) if options.service else ()
        self._base = (*(s for s in options.est_root.split("/") if s), *label)
        self._limit_s = options.timeout_s

    async def ca_certificates(self) -> list[x509.Certificate]:
        """GET crts and parse the PKCS#7 answer."""
        response = await self._connection.request("GET", (*self._base, "crts"), limit_s=self._limit_s)
        if response.code != CONTENT:
            raise VerificationError(f"crts answered {dotted(response.code)}")
        return list(pkcs7.load_der_pkcs7_certificates(response.payload))

    async def enroll(self, csr_der: bytes, operation: str = "sen") -> WireMessage:
        """POST sen (or sren) with a DER CSR (Content-Format 286); returns the whole response."""
        return await self._connection.request(
            "POST",
            (*self._base, operation),
            payload=csr_der,
            content_format=PKCS10,
            accept=PKCS7_CERTS_ONLY,
            limit_s=self._limit_s,
        )


def device_credentials(device: SimDevice, options: FleetOptions) -> ClientCredentials:
    """The factory credentials ``device`` presents in its DTLS handshake."""
    assert options.factory is not None
    if options.psk:
        identity, key = options.factory.psk(device.endpoint)
        return PskCredentials(identity=identity.encode(), key=key)
    certificate = options.factory.device_certificate(device.endpoint, device.key.public_key())
    return CertificateCredentials(
        certificate_chain=(certificate,),
        private_key=device.key,
        trusted_cas=options.server_trust,
        pinned_server_certificate=options.server_certificate,
    )


async def connect(
    device: SimDevice, options: FleetOptions, handler: RequestHandler | None = None
) -> DeviceConnection:
    """``device``'s own connection to the server: a DTLS session with its factory credentials over
    ``coaps://``, a UDP socket over ``coap://``; ``handler`` answers the server's requests."""
    credentials = device_credentials(device, options) if options.secure else None
    return await DeviceConnection.open(
        options.server, credentials, handler=handler, handshake_limit_s=options.timeout_s
    )


def fleet_keys(options: FleetOptions) -> KeyPool:
    """The fleet's device keys. Sized by the end index so that device i gets the same key whichever
    slice of the fleet it runs in."""
    return KeyPool(
        min(options.key_pool, max(1, options.first_index + options.devices)), cache_dir=options.key_cache
    )


def prepare_certificates(options: FleetOptions) -> None:
    """Issue the fleet's factory certificates ahead of a run, into the factory's on-disk cache, so
    that a measured run spends the simulator's CPU on devices rather than on the factory. Only
    with ``key_cache`` (otherwise the run's keys, hence its certificates, are new anyway)."""
    if not options.secure or options.psk or options.factory is None or options.key_cache is None:
        return
    keys = fleet_keys(options)
    for index in range(options.first_index, options.first_index + options.devices):
        endpoint = f"{options.endpoint_prefix}-{index:07d}"
        options.factory.device_certificate(endpoint, keys.key_for(index).public_key())


async def wait_until_accepted(options: FleetOptions, *, attempts: int = 50, pause_s: float = 0.1) -> None:
    """After registering factory credentials, wait until the server accepts a device's handshake
    (running servers learn of new trust anchors and PSKs through NOTIFY, within milliseconds)."""
    if not options.secure:
        return
    device = SimDevice(f"{options.endpoint_prefix}-{0:07d}", KeyPool(1).key_for(0))
    last: Exception | None = None
    for _ in range(attempts):
        connection: DeviceConnection | None = None
        try:
            connection = await connect(device, options)
            await EstClient(connection, options).ca_certificates()
            return
        except ServerNotPinned:
            raise  # the device refuses the server: waiting will not change that
        except Exception as exc:  # refused handshake, timeout: not yet
            last = exc
            await asyncio.sleep(pause_s)
        finally:
            if connection is not None:
                connection.close()
    raise RuntimeError(f"the server never accepted the simulator's factory credentials ({last!r})")


@dataclass(frozen=True)
class FleetHooks:
    """Callbacks for whoever drives :func:`run_fleet` (e.g. the multi-process runner)."""

    ready: Callable[[], Awaitable[None]] | None = None
    """Awaited once set-up is done (keys, CA certificates fetched), just before the clock starts."""
    completed: Callable[[bool], None] | None = None
    """Called per finished (or shed) device with whether it succeeded."""
    schedule: Iterable[float] | None = None
    """Open loop: the arrival offsets to use (one per device, ascending) instead of drawing them
    from ``options.rate`` (a process's lane of a fleet-wide schedule: :func:`arrival_lane`)."""


def arrival_offsets(
    rate: float, count: int, *, kind: str = "poisson", rng: random.Random | None = None
) -> Iterator[float]:
    """Seconds from the start at which ``count`` devices arrive at ``rate`` per second.

    ``poisson``: gaps drawn from an exponential distribution with mean ``1/rate``; ``fixed``: the
    ``k``-th arrival at ``k/rate`` (k from 1). Both start one (mean) gap after the start.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if kind not in ("poisson", "fixed"):
        raise ValueError(f"unknown arrival schedule {kind!r} (poisson or fixed)")
    generator = rng or random.Random()
    at = 0.0
    for k in range(1, count + 1):
        if kind == "poisson":
            at += generator.expovariate(rate)
        else:
            at = k / rate
        yield at


def arrival_lane(rate: float, total: int, *, kind: str, seed: int, lane: int, lanes: int) -> list[float]:
    """Arrivals ``lane``, ``lane + lanes``, ``lane + 2*lanes``, ... of the fleet-wide schedule of
    ``total`` devices at ``rate`` (seeded): ``lanes`` processes together replay exactly the schedule
    one process would run, so runs with different process counts are comparable."""
    if not 0 <= lane < lanes:
        raise ValueError("lane must be in [0, lanes)")
    schedule = arrival_offsets(rate, total, kind=kind, rng=random.Random(seed))
    return list(itertools.islice(schedule, lane, None, lanes))


@dataclass
class ScheduleStats:
    """What :class:`OpenLoop` did."""

    started: int = 0
    shed: int = 0
    last_start_s: float = 0.0
    lags_ms: list[float] = field(default_factory=list)


class OpenLoop:
    """Starts work at scheduled times, never more than ``cap`` at once (the rest is shed).

    ``clock`` and ``sleep`` are injectable so the scheduler can be tested without real time.
    """

    def __init__(
        self,
        *,
        cap: int,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if cap < 1:
            raise ValueError("the in-flight cap must be at least 1")
        self.cap = cap
        self._clock = clock
        self._sleep = sleep
        self.in_flight: set[asyncio.Task[None]] = set()

    async def run(
        self,
        offsets: Iterable[float],
        start: Callable[[int], Awaitable[None]],
        shed: Callable[[int, float], None],
        *,
        origin: float | None = None,
    ) -> ScheduleStats:
        """Call ``start(i)`` at ``origin + offsets[i]`` (as a task), or ``shed(i, at)`` (``at``: seconds
        since ``origin``) if ``cap`` tasks are running; return once every started task has finished.
        ``origin`` defaults to the clock's time at the call."""
        stats = ScheduleStats()
        begin = self._clock() if origin is None else origin
        try:
            for index, offset in enumerate(offsets):
                # Behind schedule, still yield once: the running devices must progress meanwhile.
                await self._sleep(max(0.0, begin + offset - self._clock()))
                now = self._clock() - begin
                if len(self.in_flight) >= self.cap:
                    stats.shed += 1
                    shed(index, now)
                    continue
                stats.lags_ms.append(max(0.0, now - offset) * 1000)
                task = asyncio.create_task(_as_none(start(index)))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
                stats.started += 1
                stats.last_start_s = now
            if self.in_flight:
                await asyncio.gather(*self.in_flight)
        finally:
            for task in self.in_flight:
                task.cancel()
        return stats


async def _as_none(awaitable: Awaitable[None]) -> None:
    await awaitable


async def run_fleet(options: FleetOptions, *, hooks: FleetHooks | None = None) -> FleetReport:
    """Enroll ``options.devices`` simulated devices: closed loop with at most ``options.concurrency``
    at once, or open loop at ``options.rate`` arrivals per second (capped at ``concurrency``).

    Once set up, it tunes the process's garbage collector as ``serve`` does
    (:func:`~bootstrap.gc_tuning.settle_garbage_collector`): with the defaults, collections took
    about 7% of the simulator's CPU."""
    if options.secure and options.factory is None:
        raise ValueError("coaps:// needs factory credentials (a manufacturer CA)")
    if options.rate is not None and options.rate <= 0:
        raise ValueError("rate must be positive")
    hooks = hooks or FleetHooks()
    report = FleetReport(devices=options.devices, offered_rate=options.rate)
    keys = fleet_keys(options)

    def device(index: int) -> SimDevice:
        return SimDevice(f"{options.endpoint_prefix}-{index:07d}", keys.key_for(index))

    probe = await connect(device(options.first_index), options)
    try:
        ca_certificates = await EstClient(probe, options).ca_certificates()
    finally:
        probe.close()
    if not any(c.issuer == c.subject for c in ca_certificates):
        raise VerificationError("crts holds no trust anchor")
    indices = range(options.first_index, options.first_index + options.devices)
    settle_garbage_collector()
    if hooks.ready is not None:
        await hooks.ready()
    with _progress(options) as progress:
        task = progress.add_task("enrolling", total=options.devices)
        started = time.perf_counter()
        report.started_at = time.time()
        cpu_started = time.process_time()

        def finished(ok: bool, latency_ms: float, at: float | None = None) -> None:
            when = time.perf_counter() - started if at is None else at
            report.timeline.append(Completion(when, latency_ms, ok))
            progress.advance(task)
            if hooks.completed is not None:
                hooks.completed(ok)

        async def one(index: int) -> None:
            t0 = time.perf_counter()
            if options.flow == "bootstrap":
                latency = await _journey(
                    device(index), options, ca_certificates, report, use_pack=index % 2 == 0
                )
            else:
                latency = await _run_device(device(index), options, ca_certificates, report)
            finished(latency is not None, (time.perf_counter() - t0) * 1000 if latency is None else latency)

        if options.rate is None:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in indices:
                queue.put_nowait(index)

            async def worker() -> None:
                while True:
                    try:
                        index = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    report.arrivals += 1
                    report.last_arrival_s = time.perf_counter() - started
                    await one(index)

            await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
        else:

            def shed(position: int, at: float) -> None:
                report.failures[SHED_REASON] += 1
                finished(False, 0.0, at)

            rng = random.Random(options.seed) if options.seed is not None else None
            offsets = (
                hooks.schedule
                if hooks.schedule is not None
                else arrival_offsets(options.rate, options.devices, kind=options.arrival, rng=rng)
            )
            stats = await OpenLoop(cap=max(1, options.concurrency)).run(
                offsets, lambda position: one(indices[position]), shed, origin=started
            )
            report.arrivals = stats.started
            report.last_arrival_s = stats.last_start_s
            report.schedule_lag_ms = stats.lags_ms
        report.elapsed_s = time.perf_counter() - started
        report.simulator_cpu_s = time.process_time() - cpu_started
    return report


async def _journey(
    device: SimDevice,
    options: FleetOptions,
    ca_certificates: list[x509.Certificate],
    report: FleetReport,
    *,
    use_pack: bool,
) -> float | None:
    """One device's journey; records it in ``report`` and returns its latency (ms) if it succeeded."""
    from .journey import JourneyError, run_journey  # journey builds on this module

    started = time.perf_counter()
    try:
        result = await run_journey(device, options, ca_certificates, use_pack=use_pack)
    except JourneyError as exc:
        report.failures[exc.reason] += 1
        return None
    except TimeoutError:
        report.failures["timeout"] += 1
        return None
    except Exception as exc:  # transport errors (handshake refused, ...): name them by type
        report.failures[f"transport: {type(exc).__name__}"] += 1
        return None
    latency = (time.perf_counter() - started) * 1000
    report.latencies_ms.append(latency)
    key = f"bootstrapped_by_{result.method}"
    report.extra[key] = int(report.extra.get(key, 0)) + 1
    return latency


async def _run_device(
    device: SimDevice,
    options: FleetOptions,
    ca_certificates: Sequence[x509.Certificate],
    report: FleetReport,
) -> float | None:
    """One device's enrollment; records it in ``report`` and returns its latency (ms) if it succeeded."""
    anchors = [c for c in ca_certificates if c.issuer == c.subject]
    started = time.perf_counter()
    connection: DeviceConnection | None = None
    try:
        connection = await connect(device, options)
        response = await EstClient(connection, options).enroll(device.csr_der())
    except TimeoutError:
        report.failures["timeout"] += 1
        return None
    except Exception as exc:  # transport errors (handshake refused, ...): name them by type
        report.failures[f"transport: {type(exc).__name__}"] += 1
        return None
    finally:
        if connection is not None:
            connection.close()
    if response.code != CHANGED:
        detail = response.payload.decode("utf-8", "replace")[:60]
        report.failures[f"{dotted(response.code)} {detail}".strip()] += 1
        return None
    try:
        device.check_enrolled(response.payload, response.content_format, anchors, now=dt.datetime.now(dt.UTC))
    except VerificationError as exc:
        report.failures[f"verify: {exc.reason}"] += 1
        return None
    latency = (time.perf_counter() - started) * 1000
    report.latencies_ms.append(latency)
    return latency


def _progress(options: FleetOptions) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not options.progress,
        transient=True,
    )
