"""Running a fleet in several simulator processes, so the simulator is not the bottleneck.

:func:`run_fleet_processes` starts ``P`` processes (``multiprocessing`` spawn). Each runs
:func:`~device_sim.fleet.run_fleet` on a slice of the fleet: a disjoint range of endpoint indices,
its share of the arrivals and ``concurrency/P`` devices in flight. The open-loop schedule is drawn
once for the whole fleet (seeded: ``--seed``, or a random seed shared by all) and dealt out
round-robin, process ``k`` taking arrivals ``k, k+P, k+2P, ...``: together the processes replay
exactly the arrivals a single process would (Poisson at ``rate``, or evenly spaced). The processes
set up (keys, handshake, CA certificates) first; the clock starts for all of them together once
every one is ready. Progress
comes back through a shared counter, reports through a queue, and :func:`merge_reports` makes one
report of them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import queue
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event, Semaphore
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap import event_loop

from .fleet import FleetHooks, FleetOptions, _progress, arrival_lane, fleet_keys, run_fleet
from .provisioning import CertificateCache, FactoryCa
from .report import FleetReport, merge_reports

#: How long a process may take to import, load keys and fetch the CA certificates.
READY_TIMEOUT_S = 120.0


class SimulatorProcessError(RuntimeError):
    """A simulator process failed (its error, or how it exited)."""


@dataclass(frozen=True)
class SliceSpec:
    """What one simulator process runs, in picklable form (keys and certificates as PEM/DER)."""

    number: int
    options: dict[str, Any]
    """:class:`FleetOptions` fields except ``factory`` and ``server_trust``."""
    factory: tuple[bytes, bytes, bytes, str | None] | None
    """Manufacturer CA certificate and key (PEM, PKCS#8), PSK seed, certificate cache file."""
    server_trust: tuple[bytes, ...]
    """DER certificates."""
    lanes: int = 1
    """Processes sharing the open-loop schedule (this one takes every ``lanes``-th arrival)."""
    schedule: tuple[float, int, str, int] | None = None
    """Open loop: the fleet-wide schedule (rate, devices, kind, seed) this process takes a lane of."""

    def arrivals(self) -> list[float] | None:
        """This process's arrival offsets (``None``: closed loop)."""
        if self.schedule is None:
            return None
        rate, total, kind, seed = self.schedule
        return arrival_lane(rate, total, kind=kind, seed=seed, lane=self.number, lanes=self.lanes)

    def build(self) -> FleetOptions:
        """The slice's :class:`FleetOptions`."""
        factory = None
        if self.factory is not None:
            certificate, key_pem, seed, cache = self.factory
            key = serialization.load_pem_private_key(key_pem, password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            factory = FactoryCa(
                x509.load_pem_x509_certificate(certificate),
                key,
                seed,
                None if cache is None else CertificateCache(Path(cache)),
            )
        return FleetOptions(
            **self.options,
            factory=factory,
            server_trust=tuple(x509.load_der_x509_certificate(der) for der in self.server_trust),
        )


def split(total: int, parts: int) -> list[int]:
    """``total`` split in ``parts`` shares that differ by at most one (larger shares first)."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def plan_slices(options: FleetOptions, processes: int) -> list[SliceSpec]:
    """Split ``options`` over ``processes`` (at most one per device): disjoint endpoint ranges,
    a lane of the open-loop schedule (its share of ``rate``) and ``concurrency/P`` each (at least
    one in flight per process)."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    processes = min(processes, options.devices)
    factory = None
    if options.factory is not None:
        factory = (
            options.factory.certificate.public_bytes(serialization.Encoding.PEM),
            options.factory.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            options.factory.psk_seed,
            None if options.factory.certificates is None else str(options.factory.certificates.path),
        )
    trust = tuple(c.public_bytes(serialization.Encoding.DER) for c in options.server_trust)
    plain = {f.name: getattr(options, f.name) for f in fields(options)}
    del plain["factory"], plain["server_trust"]
    devices = split(options.devices, processes)
    concurrency = split(max(options.concurrency, processes), processes)
    schedule = None
    if options.rate is not None:
        seed = options.seed if options.seed is not None else random.randrange(2**32)
        schedule = (options.rate, options.devices, options.arrival, seed)
    specs = []
    first = options.first_index
    for number in range(processes):
        mine = {
            **plain,
            "devices": devices[number],
            "first_index": first,
            "concurrency": concurrency[number],
            "progress": False,
            "rate": None if options.rate is None else options.rate * devices[number] / options.devices,
            "seed": None if schedule is None else schedule[3],
        }
        specs.append(SliceSpec(number, mine, factory, trust, lanes=processes, schedule=schedule))
        first += devices[number]
    return specs


def _child(
    spec: SliceSpec,
    completed: Synchronized[int],
    ready: Semaphore,
    go: Event,
    results: multiprocessing.Queue[tuple[int, FleetReport | None, str | None]],
) -> None:
    """Entry point of a simulator process."""
    try:
        options = spec.build()

        async def wait_for_go() -> None:
            ready.release()
            parent = multiprocessing.parent_process()
            while not await asyncio.to_thread(go.wait, 0.5):
                if parent is not None and not parent.is_alive():
                    raise SimulatorProcessError("the parent process went away")

        def count(ok: bool) -> None:
            with completed.get_lock():
                completed.value += 1

        report = event_loop.run(
            run_fleet(options, hooks=FleetHooks(ready=wait_for_go, completed=count, schedule=spec.arrivals()))
        )
        results.put((spec.number, report, None))
    except BaseException as exc:
        results.put((spec.number, None, f"{type(exc).__name__}: {exc}"))


def run_fleet_processes_sync(options: FleetOptions, processes: int) -> FleetReport:
    """Run the fleet in ``processes`` simulator processes and merge their reports (blocking).

    ``options.progress`` shows one progress bar for all of them. With ``options.key_cache`` the
    cache is filled here first, so the processes only read it.
    """
    specs = plan_slices(options, processes)
    if options.key_cache is not None:  # fill the cache once, before the processes read it
        fleet_keys(options)
    context = multiprocessing.get_context("spawn")
    completed: Synchronized[int] = context.Value("q", 0)
    ready = context.Semaphore(0)
    go = context.Event()
    results: multiprocessing.Queue[tuple[int, FleetReport | None, str | None]] = context.Queue()
    children = [
        context.Process(
            target=_child,
            args=(spec, completed, ready, go, results),
            name=f"device-sim-{spec.number}",
            daemon=True,
        )
        for spec in specs
    ]
    reports: dict[int, FleetReport] = {}
    try:
        for child in children:
            child.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = len(children)
        while waiting:
            if ready.acquire(timeout=0.1):
                waiting -= 1
                continue
            _check(children, results, reports)
            if time.monotonic() > deadline:
                raise SimulatorProcessError(f"simulator processes not ready within {READY_TIMEOUT_S:.0f} s")
        go.set()
        with _progress(options) as progress:
            task = progress.add_task(f"enrolling ({len(children)} processes)", total=options.devices)
            while len(reports) < len(children):
                _check(children, results, reports, timeout=0.2)
                progress.update(task, completed=completed.value)
            progress.update(task, completed=completed.value)
        for child in children:
            child.join(timeout=30)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
        results.close()
    return merge_reports([reports[number] for number in sorted(reports)])


def _check(
    children: Sequence[multiprocessing.process.BaseProcess],
    results: multiprocessing.Queue[tuple[int, FleetReport | None, str | None]],
    reports: dict[int, FleetReport],
    *,
    timeout: float = 0.0,
) -> None:
    """Collect results; raise if a process reported an error or died without a report."""
    try:
        number, report, error = results.get(timeout=timeout) if timeout else results.get_nowait()
    except queue.Empty:
        for number, child in enumerate(children):
            if number not in reports and child.exitcode is not None:
                # It may have put its result just before exiting: give the queue a moment.
                try:
                    number_, report_, error_ = results.get(timeout=1.0)
                except queue.Empty:
                    raise SimulatorProcessError(
                        f"simulator process {number} exited with code {child.exitcode} without a report"
                    ) from None
                _accept(number_, report_, error_, reports)
        return
    _accept(number, report, error, reports)


def _accept(
    number: int, report: FleetReport | None, error: str | None, reports: dict[int, FleetReport]
) -> None:
    if report is None:
        raise SimulatorProcessError(f"simulator process {number}: {error}")
    reports[number] = report


async def run_fleet_processes(options: FleetOptions, processes: int) -> FleetReport:
    """:func:`run_fleet_processes_sync` from async code (it runs in a thread); ``processes=1`` runs
    :func:`~device_sim.fleet.run_fleet` in this process."""
    if processes <= 1:
        return await run_fleet(options)
    return await asyncio.to_thread(run_fleet_processes_sync, options, processes)
