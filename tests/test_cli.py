"""The command line as a user runs it: subprocesses, embedded Postgres, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import free_tcp_port, free_udp_port


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def embedded_env() -> dict[str, str]:
    """The environment of a newcomer: no DATABASE_URL, so the embedded Postgres is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LWM2M_BOOTSTRAP_"))}
    env["LWM2M_BOOTSTRAP_LOG_FORMAT"] = "json"
    return env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--coap", "host:70000"], "--coap: port 70000 is out of range"),
        (["--database-url", "mysql://nope"], "database-url: must start with postgresql://"),
        (["--cert-validity-days", "0"], "cert-validity-days"),
    ],
)
def test_bad_settings_stop_serve_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    """A wrong value exits with code 2 and one clear line, not a traceback."""
    result = cli("serve", "--data-dir", str(tmp_path), *args, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_on_embedded_defaults_then_reuses_the_data_dir(tmp_path: Path) -> None:
    """The README's main job: embedded Postgres, built-in CA, 30 devices, exit 0; a second run reuses it."""
    data = tmp_path / "data"
    report = tmp_path / "report.json"
    first = cli(
        "demo",
        "--data-dir",
        str(data),
        "--devices",
        "30",
        "--concurrency",
        "10",
        "--json",
        str(report),
        env=embedded_env(),
    )
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads(report.read_text())
    assert summary["devices"] == 30 and summary["succeeded"] == 30 and summary["failed"] == 0
    assert {"per_second", "p50_ms", "p95_ms", "p99_ms", "failures"} <= summary.keys()
    assert (data / "master.key").stat().st_mode & 0o777 == 0o600
    second = cli("demo", "--data-dir", str(data), "--devices", "5", env=embedded_env())
    assert second.returncode == 0, second.stdout + second.stderr
    listing = cli("certificates", "list", "--data-dir", str(data), "--limit", "100", env=embedded_env())
    # Piped output is tab-separated: a header, then one line per certificate of both runs.
    assert len(listing.stdout.splitlines()) == 1 + 35, listing.stdout + listing.stderr
    # Postgres was stopped with the last process using it.
    assert not (data / "postgres" / "postmaster.pid").exists()


def test_serve_with_workers_restarts_a_dead_worker_and_stops_cleanly(tmp_path: Path) -> None:
    """serve --workers 2: both share the ports, a killed worker is replaced, a management command
    works beside it, /metrics sums the workers, and SIGTERM drains everything (exit 0)."""
    import urllib.request

    import psutil

    data = tmp_path / "data"
    port, admin = free_udp_port(), free_tcp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bootstrap", "serve", "--data-dir", str(data), "--coap", f"127.0.0.1:{port}",
         "--coaps", f"127.0.0.1:{free_udp_port()}", "--coaps-tcp", "off", "--admin", f"127.0.0.1:{admin}",
         "--workers", "2", "--insecure-coap-enrollment"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=embedded_env(),
    )  # fmt: skip

    def answers() -> bool:
        probe = subprocess.run(
            ["coap-client-notls", "-B", "1", "-m", "get", f"coap://127.0.0.1:{port}/.well-known/core"],
            capture_output=True, timeout=10,
        )  # fmt: skip
        return b"ace.est.crts" in probe.stdout

    def workers() -> list[psutil.Process]:
        found = []
        for child in psutil.Process(process.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:  # exited meanwhile
                continue
        return found

    try:
        deadline = time.monotonic() + 60
        while not (answers() and len(workers()) == 2):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        victim = workers()[0]
        victim.kill()
        deadline = time.monotonic() + 30
        while not (len(workers()) == 2 and victim.pid not in [w.pid for w in workers()]):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
        for _ in range(6):  # the survivors and the replacement all answer on the shared port
            assert answers()
        exported = cli("ca", "export", "--data-dir", str(data), env=embedded_env())
        assert exported.returncode == 0 and exported.stdout.count("BEGIN CERTIFICATE") == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as response:
            assert b"lwm2m_" in response.read()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "worker died; restarting" in output
        assert '"event": "stopped"' in output
        assert not (data / "postgres" / "postmaster.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()


async def test_device_sim_command_writes_json(server_uri: str, tmp_path: Path) -> None:
    """python -m device_sim enrolls against a running server and writes the JSON summary."""
    report = tmp_path / "sim.json"
    # The server runs in this test's event loop, so the simulator must not block it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "--server",
        server_uri,
        "--devices",
        "25",
        "--concurrency",
        "5",
        "--flow",
        "est",
        "--est-root",
        "/.well-known/est",
        "--json",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()
    data = json.loads(report.read_text())
    assert data["succeeded"] == 25 and data["failed"] == 0 and data["per_second"] > 0


def test_bench_reports_every_measure(tmp_path: Path) -> None:
    """lwm2m-bootstrap bench (a small plan) prints and writes every key the README documents."""
    report = tmp_path / "bench.json"
    result = cli(
        "bench", "--data-dir", str(tmp_path / "data"), "--journey-devices", "40", "--est-sessions", "5",
        "--est-per-session", "4", "--idle-sessions", "50", "--journey-processes", "2", "--json", str(report),
        env=embedded_env(), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    for key in (
        "est_certs_per_s", "est_cpu_ms_per_cert", "journey_devices_per_s", "journey_p50_ms", "journey_p99_ms",
        "journey_cpu_ms_per_device", "openssl_sign_per_s", "openssl_verify_per_s", "issue_floor_ms",
        "cfssl_cpu_ms_per_cert", "handshake_cpu_ms", "handshake_psk_cpu_ms", "rss_mib_per_1k_sessions",
        "issue_template_ms", "est_cpu_vs_cfssl", "journey_cpu_vs_issue_floor",
        "journey_simulator_cpu_ms_per_device", "journey_all_cpu_ms_per_device", "rss_mib_with_idle_sessions",
    ):  # fmt: skip
        assert isinstance(data[key], int | float) and data[key] > 0, (key, data[key])
    # Postgres is read in clock ticks (10 ms), more than this small plan may cost it.
    for key in ("est_postgres_cpu_ms_per_cert", "journey_postgres_cpu_ms_per_device"):
        assert isinstance(data[key], int | float) and data[key] >= 0, (key, data[key])
    assert data["est_failed"] == 0 and data["journey_failed"] == 0
    assert data["journey_simulator_processes"] == 2
    # The whole RSS holds the sessions' growth and the process it grew from.
    sessions_mib = data["rss_mib_per_1k_sessions"] * data["idle_sessions"] / 1000
    assert data["rss_mib_with_idle_sessions"] > sessions_mib
    parts = ("journey_cpu_ms_per_device", "journey_simulator_cpu_ms_per_device")
    parts += ("journey_postgres_cpu_ms_per_device",)
    assert abs(data["journey_all_cpu_ms_per_device"] - sum(data[key] for key in parts)) < 0.002


def test_group_commit_cost_script(tmp_path: Path) -> None:
    """scripts/group_commit_cost.py writes audit rows both ways into its own embedded Postgres and
    reports CPU and wall time per row for each batch size."""
    report = tmp_path / "group-commit.json"
    script = Path(__file__).resolve().parent.parent / "scripts" / "group_commit_cost.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rows", "12", "--batch", "1", "--batch", "4", "--rounds", "1",
         "--json", str(report)],
        capture_output=True, text=True, timeout=300, env=embedded_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert sorted(data) == ["1", "4"]
    for figures in data.values():
        for method in ("copy", "unnest_insert"):
            assert figures[method]["cpu_us_per_row"] > 0 and figures[method]["wall_us_per_row"] > 0


def test_instruction_counts_under_callgrind(tmp_path: Path) -> None:
    """scripts/count_instructions.py runs the server under callgrind and counts its instructions per
    certificate and per journey, most of a certificate's in the two ECDSA operations; then the
    simulator's per journey."""
    report = tmp_path / "instructions.json"
    script = Path(__file__).resolve().parent.parent / "scripts" / "count_instructions.py"
    result = subprocess.run(
        [sys.executable, str(script), "--certificates", "20", "--devices", "4", "--sessions", "4",
         "--concurrency", "2", "--simulator-devices", "3", "--data-dir", str(tmp_path / "data"),
         "--json", str(report)],
        capture_output=True, text=True, timeout=600, env=embedded_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["est_certificates"] == 20 and data["journey_devices"] == 4
    # A certificate verifies one signature and makes one; a journey adds a handshake (ECDHE, two
    # verifications, one signature) and the bootstrap exchanges.
    assert 500_000 < data["est_instructions_per_cert"] < data["journey_instructions_per_device"]
    assert 0.2 < data["est_ec_share"] < 0.9 and 0.1 < data["journey_ec_share"] < 0.9
    # The device's side of a journey: its handshake (ECDHE, verifying the server's chain and key
    # exchange, one signature), its CSR, and verifying the certificate it gets.
    assert data["simulator_devices"] == 3
    assert 1_000_000 < data["simulator_instructions_per_device"] and 0.1 < data["simulator_ec_share"] < 0.9
