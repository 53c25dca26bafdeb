"""The fleet summary: counts, failures by reason, rate and latency percentiles."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class FleetReport:
    """What a fleet run measured."""

    devices: int
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)

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

    def as_dict(self) -> dict[str, Any]:
        """The JSON report (keys documented in the README)."""
        ordered = sorted(self.latencies_ms)
        return {
            "devices": self.devices,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failures": dict(self.failures),
            "elapsed_s": round(self.elapsed_s, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(percentile(ordered, 0.50), 2),
            "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2),
            **self.extra,
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`as_dict` to ``path``."""
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

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
