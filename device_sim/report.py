"""The fleet summary: counts, failures by reason, rates, latency percentiles and a time series.

Every finished device is also recorded on a timeline (seconds since the start, latency, success), so
per-second latency and throughput can be plotted (:func:`plot_timeline`) and reports of several
simulator processes merged exactly (:func:`merge_reports`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table

#: Failure reason of an arrival refused because ``concurrency`` devices were already in flight.
SHED_REASON = "shed: concurrency cap"


class PlotUnavailable(RuntimeError):
    """``--plot`` was asked for but matplotlib is not installed."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Completion(NamedTuple):
    """One finished device on the timeline."""

    at_s: float
    """Seconds from the start of the run to the device's completion (or, if shed, its arrival)."""
    latency_ms: float
    """How long the device took (0 for a shed arrival)."""
    ok: bool
    """Whether it enrolled (and verified its chain)."""


class Bucket(NamedTuple):
    """Completions within one time bucket."""

    start_s: float
    succeeded: int
    failed: int
    p50_ms: float
    """Latency percentiles of the successful completions (0 if none)."""
    p99_ms: float


@dataclass
class FleetReport:
    """What a fleet run measured."""

    devices: int
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    timeline: list[Completion] = field(default_factory=list)
    """Every finished device, in completion order."""
    processes: int = 1
    """Simulator processes that produced this report (more than one after :func:`merge_reports`)."""
    offered_rate: float | None = None
    """Arrivals per second asked for (``None``: closed loop)."""
    arrivals: int = 0
    """Devices started (shed arrivals not counted)."""
    last_arrival_s: float = 0.0
    """Seconds from the start to the last device start."""
    schedule_lag_ms: list[float] = field(default_factory=list)
    """Open loop: how late each arrival started against its schedule (simulator saturation)."""
    started_at: float = 0.0
    """Wall-clock (epoch) time of the start; lines up the timelines of several processes."""
    simulator_cpu_s: float | None = None
    """CPU seconds the simulator itself used during the run (all its processes)."""

    @property
    def succeeded(self) -> int:
        """Devices that enrolled and verified their chain."""
        return len(self.latencies_ms)

    @property
    def failed(self) -> int:
        """Devices that did not."""
        return sum(self.failures.values())

    @property
    def per_second(self) -> float:
        """Successful enrollments per wall-clock second."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def achieved_rate(self) -> float:
        """Device starts per second, from the start to the last device start (the whole run if all
        started at once): compared with :attr:`offered_rate` it shows whether the simulator kept up."""
        window = self.last_arrival_s if self.last_arrival_s > 0.001 else self.elapsed_s
        return self.arrivals / window if window > 0 else 0.0

    def as_dict(self, *, timeline: bool = False) -> dict[str, Any]:
        """The JSON report (keys documented in the README); ``timeline=True`` adds ``timeline``."""
        ordered = sorted(self.latencies_ms)
        data: dict[str, Any] = {
            "devices": self.devices,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failures": dict(self.failures),
            "elapsed_s": round(self.elapsed_s, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(percentile(ordered, 0.50), 2),
            "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2),
            "offered_rate": self.offered_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "processes": self.processes,
            "arrival_lag_p99_ms": round(percentile(sorted(self.schedule_lag_ms), 0.99), 2)
            if self.offered_rate is not None
            else None,
            "simulator_cpu_ms_per_device": round(self.simulator_cpu_s * 1000 / self.devices, 3)
            if self.simulator_cpu_s is not None and self.devices
            else None,
            **self.extra,
        }
        if timeline:
            data["timeline"] = {
                "bucket_s": 1.0,
                "buckets": [
                    {
                        "start_s": b.start_s,
                        "succeeded": b.succeeded,
                        "failed": b.failed,
                        "p50_ms": round(b.p50_ms, 2),
                        "p99_ms": round(b.p99_ms, 2),
                    }
                    for b in self.buckets()
                ],
                "completions": [[round(c.at_s, 4), round(c.latency_ms, 2), c.ok] for c in self.timeline],
            }
        return data

    def write_json(self, path: Path, *, timeline: bool = False) -> None:
        """Write :meth:`as_dict` to ``path``."""
        path.write_text(json.dumps(self.as_dict(timeline=timeline), indent=2) + "\n")

    def buckets(self, width_s: float = 1.0) -> list[Bucket]:
        """The timeline in buckets of ``width_s`` seconds (by completion time), empty ones included."""
        if not self.timeline:
            return []
        count = int(max(c.at_s for c in self.timeline) // width_s) + 1
        latencies: list[list[float]] = [[] for _ in range(count)]
        failed = [0] * count
        for completion in self.timeline:
            index = max(0, int(completion.at_s // width_s))
            if completion.ok:
                latencies[index].append(completion.latency_ms)
            else:
                failed[index] += 1
        result = []
        for index in range(count):
            ordered = sorted(latencies[index])
            result.append(
                Bucket(
                    start_s=index * width_s,
                    succeeded=len(ordered),
                    failed=failed[index],
                    p50_ms=percentile(ordered, 0.50),
                    p99_ms=percentile(ordered, 0.99),
                )
            )
        return result

    def render(self, console: Console, title: str = "Enrollment summary") -> None:
        """Print the summary table (and failures by reason, if any)."""
        data = self.as_dict()
        table = Table(title=title, show_header=False)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("devices", str(data["devices"]))
        table.add_row("enrolled", str(data["succeeded"]))
        table.add_row("failed", str(data["failed"]))
        table.add_row("certificates per second", f"{data['per_second']:.1f}")
        table.add_row(
            "latency p50 / p95 / p99",
            f"{data['p50_ms']:.1f} / {data['p95_ms']:.1f} / {data['p99_ms']:.1f} ms",
        )
        table.add_row("wall time", f"{data['elapsed_s']:.2f} s")
        offered = "closed loop" if self.offered_rate is None else f"{self.offered_rate:.1f} devices/s"
        table.add_row("offered rate", offered)
        table.add_row("achieved rate", f"{data['achieved_rate']:.1f} devices/s")
        if data["arrival_lag_p99_ms"] is not None:
            table.add_row("arrival lag p99", f"{data['arrival_lag_p99_ms']:.1f} ms")
        table.add_row("processes", str(self.processes))
        if data["simulator_cpu_ms_per_device"] is not None:
            table.add_row("simulator CPU per device", f"{data['simulator_cpu_ms_per_device']:.2f} ms")
        for key, value in self.extra.items():
            table.add_row(key.replace("_", " "), str(value))
        console.print(table)
        if self.failures:
            failures = Table(title="Failures by reason")
            failures.add_column("reason")
            failures.add_column("devices", justify="right")
            for reason, count in self.failures.most_common():
                failures.add_row(reason, str(count))
            console.print(failures)


def merge_reports(reports: Sequence[FleetReport]) -> FleetReport:
    """One report from those of simulator processes that ran side by side.

    Timelines are lined up on the earliest ``started_at`` and merged in time order; latencies,
    failures and schedule lags are pooled (so percentiles are exact, not averaged); numeric
    ``extra`` values are summed, others taken from the first report that has them. Offered rates add
    up (each process offered its share); ``None`` if any process ran closed loop.
    """
    if not reports:
        raise ValueError("no reports to merge")
    origin = min(r.started_at for r in reports)
    merged = FleetReport(devices=sum(r.devices for r in reports), started_at=origin)
    merged.processes = sum(r.processes for r in reports)
    rates = [r.offered_rate for r in reports]
    merged.offered_rate = None if any(rate is None for rate in rates) else sum(r or 0.0 for r in rates)
    cpu = [r.simulator_cpu_s for r in reports]
    merged.simulator_cpu_s = None if any(c is None for c in cpu) else sum(c or 0.0 for c in cpu)
    for report in reports:
        shift = report.started_at - origin
        merged.elapsed_s = max(merged.elapsed_s, shift + report.elapsed_s)
        merged.latencies_ms.extend(report.latencies_ms)
        merged.failures.update(report.failures)
        merged.schedule_lag_ms.extend(report.schedule_lag_ms)
        merged.arrivals += report.arrivals
        if report.arrivals:
            merged.last_arrival_s = max(merged.last_arrival_s, shift + report.last_arrival_s)
        merged.timeline.extend(Completion(c.at_s + shift, c.latency_ms, c.ok) for c in report.timeline)
        for key, value in report.extra.items():
            current = merged.extra.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if current is None or (isinstance(current, int | float) and not isinstance(current, bool)):
                    merged.extra[key] = (current or 0) + value
            elif key not in merged.extra:
                merged.extra[key] = value
    merged.timeline.sort(key=lambda c: c.at_s)
    return merged


def ensure_plotting() -> None:
    """Raise :class:`PlotUnavailable` (one line, how to install) if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'lwm2m-bootstrap[plot]' (or pip install matplotlib)"
        ) from None


def plot_timeline(report: FleetReport, path: Path, *, title: str = "Fleet run", width_s: float = 1.0) -> None:
    """Write a PNG: latency p50/p99 per bucket (top) and completions per second (bottom)."""
    ensure_plotting()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    buckets = report.buckets(width_s)
    starts = [b.start_s for b in buckets]
    figure = Figure(figsize=(10, 6.5), layout="constrained")
    FigureCanvasAgg(figure)  # Agg: no display, no global pyplot state
    latency, throughput = figure.subplots(2, 1, sharex=True)
    with_success = [b for b in buckets if b.succeeded]
    middles = [b.start_s + width_s / 2 for b in with_success]
    latency.plot(middles, [b.p50_ms for b in with_success], marker=".", label="p50")
    latency.plot(middles, [b.p99_ms for b in with_success], marker=".", label="p99")
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    latency.legend(loc="upper left")
    parts = [f"{report.devices} devices", f"{report.processes} process(es)"]
    if report.offered_rate is not None:
        parts.append(f"offered {report.offered_rate:g}/s")
    latency.set_title(f"{title}: " + ", ".join(parts))
    per_second = 1.0 / width_s
    throughput.bar(
        starts,
        [b.succeeded * per_second for b in buckets],
        width=width_s,
        align="edge",
        label="succeeded",
        color="tab:green",
    )
    throughput.bar(
        starts,
        [b.failed * per_second for b in buckets],
        width=width_s,
        align="edge",
        bottom=[b.succeeded * per_second for b in buckets],
        label="failed",
        color="tab:red",
    )
    highest = max([(b.succeeded + b.failed) * per_second for b in buckets] + [report.offered_rate or 0.0])
    if report.offered_rate is not None:
        throughput.axhline(
            report.offered_rate, linestyle="--", color="black", linewidth=1, zorder=3, label="offered rate"
        )
    throughput.set_ylim(0, max(1.0, highest * 1.15))
    throughput.set_ylabel("completions / s")
    throughput.set_xlabel("time since start (s)")
    throughput.set_xlim(0, max(width_s, math.ceil(report.elapsed_s / width_s) * width_s))
    throughput.grid(alpha=0.3)
    throughput.legend(loc="upper left")
    figure.savefig(path, format="png", dpi=100)
