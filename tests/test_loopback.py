"""Meters of the loopback server that the bench and the demo read."""

from __future__ import annotations

import os
from pathlib import Path

from bootstrap.loopback import postgres_cpu_seconds


def test_postgres_meter_without_a_running_postgres(tmp_path: Path) -> None:
    """No postmaster.pid (an external database, or none started) reads as not applicable, and so
    does a pid file whose number now belongs to a process that is not Postgres: a Postgres killed
    without cleaning up leaves one behind, and its number may be reused."""
    assert postgres_cpu_seconds(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path}\n")
    assert postgres_cpu_seconds(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text("not a pid\n")
    assert postgres_cpu_seconds(tmp_path) is None
