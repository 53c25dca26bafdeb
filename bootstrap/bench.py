"""``lwm2m-bootstrap bench``: the signing path and the device journey measured against baselines
taken in the same run, on the same machine.

What is measured (keys of the JSON report):

* ``openssl_sign_per_s``, ``openssl_verify_per_s``: P-256 ECDSA with ``openssl speed`` (one core).
* ``issue_template_ms``: the same with the built-in CA's DER template instead of the builder.
* ``issue_floor_ms``: ``cryptography`` parsing and verifying a CSR, then building and signing a
  certificate, in a loop on one core: the least any Python issuer can spend per certificate.
* ``cfssl_cpu_ms_per_cert``: the real ``cfssl serve`` signing the same kind of CSR over HTTP
  (authsign): its process CPU divided by certificates.
* ``handshake_cpu_ms``, ``handshake_psk_cpu_ms``: server CPU per DTLS handshake in certificate and
  in PSK mode (each followed by one GET; PSK keys are fetched from Postgres on first use).
* ``est_certs_per_s``, ``est_cpu_ms_per_cert``: EST enrollment over already established DTLS
  sessions through the built-in CA: certificates per wall second, server CPU per certificate.
* ``rss_mib_per_1k_sessions``: server memory per thousand idle DTLS sessions;
  ``rss_mib_with_idle_sessions``: the server's whole RSS while ``idle_sessions`` of them are open
  (``--idle-sessions``; issue 7's target is 10,000 within 1 GiB).
* ``journey_devices_per_s``, ``journey_p50_ms``, ``journey_p99_ms``, ``journey_cpu_ms_per_device``:
  the full journey (handshake, bootstrap by pack or request, EST), driven by
  ``journey_simulator_processes`` simulator processes (1 by default, ``--journey-processes``) with
  ``journey_concurrency`` devices in flight (100 by default, ``--journey-concurrency``).
  ``journey_simulator_cpu_ms_per_device`` is what the simulator spent on the same devices: server
  and simulator share the machine's cores, so the two together bound ``journey_devices_per_s``.
* ``est_postgres_cpu_ms_per_cert``, ``journey_postgres_cpu_ms_per_device``: what the embedded
  Postgres spent on the same certificates and devices (audit rows, bootstrap records, lookups);
  it shares the cores too. Absent with an external database (``--database-url``), whose CPU this
  machine may not see. ``journey_all_cpu_ms_per_device`` adds the three: on a machine of ``C``
  cores, ``journey_devices_per_s`` cannot exceed ``C * 1000`` divided by it.

Server CPU is read from ``/proc`` for the server process and its workers, apart from the
simulator's; on a shared machine wall-clock rates vary more than CPU per operation does.
``est_cpu_vs_cfssl`` and ``journey_cpu_vs_issue_floor`` divide CPU costs by baselines of the same
run, which move with the machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from ca_backends import IssuerConfig, SignRequest
from ca_backends.leaf_template import LeafTemplate, build_with_cryptography
from device_sim.fleet import FleetOptions, prepare_certificates, run_fleet
from device_sim.multiproc import run_fleet_processes
from device_sim.provisioning import FactoryCa, register
from device_sim.sessions import enroll_repeatedly, open_sessions

from . import builtin_ca, event_loop, logs
from .config import Settings
from .loopback import LoopbackServer, provision


@dataclass(frozen=True, kw_only=True)
class BenchPlan:
    """How much work each measurement does."""

    est_sessions: int = 50
    est_per_session: int = 40
    handshakes: int = 300
    idle_sessions: int = 2000
    journey_devices: int = 2000
    journey_concurrency: int = 100
    """Devices in flight during the journey. At 50 the journey was partly bound by latency (each
    device waits on a dozen round trips) rather than by CPU: 405 devices/s against 558 at 100."""
    journey_processes: int = 1
    """Simulator processes for the journey. A simulated device costs about as much CPU as the server
    spends on it, so on two cores one simulator process and one server worker each get a core;
    more simulator processes only take CPU from the server there."""
    cfssl_certs: int = 1000
    floor_seconds: float = 2.0
    scale: int = 0
    """With N > 0: load N per-endpoint bootstrap configurations and N PSK identities, and compare
    the PSK journey's cost per device before and after."""


# --- baselines ------------------------------------------------------------------------------------


def openssl_speed(seconds: int = 2) -> tuple[float | None, float | None]:
    """P-256 sign/s and verify/s from ``openssl speed`` (``None`` if openssl is missing)."""
    binary = shutil.which("openssl")
    if binary is None:
        return None, None
    output = subprocess.run(  # noqa: S603 (fixed arguments)
        [binary, "speed", "-seconds", str(seconds), "ecdsap256"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)", output)
    if not match:
        return None, None
    return float(match.group(1)), float(match.group(2))


def issue_floor_ms(seconds: float, *, template: bool = False) -> float:
    """ms of one core per (parse + verify CSR, build + sign certificate).

    With ``cryptography``'s certificate builder this is the issue's ``issue_floor_ms``; with
    ``template`` it is the built-in CA's own way (:mod:`ca_backends.leaf_template`), the same
    certificate assembled from pre-encoded parts."""
    ca = builtin_ca.generate(now=dt.datetime.now(dt.UTC), organization="bench", label="F", serials=(1, 2))
    key = ec.generate_private_key(ec.SECP256R1())
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    leaf = LeafTemplate(ca.issuing_key, ca.chain[0].subject)
    now = dt.datetime.now(dt.UTC)
    count = 0
    started = time.process_time()
    deadline = started + seconds
    while time.process_time() < deadline:
        csr = x509.load_der_x509_csr(der)
        assert csr.is_signature_valid
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        fields: dict[str, Any] = {
            "subject": csr.subject,
            "public_key": public_key,
            "serial_number": count + 1,
            "not_before": now,
            "not_after": now + dt.timedelta(days=1),
        }
        if template:  # as the built-in backend does
            x509.load_der_x509_certificate(leaf.sign(**fields, csr_info=csr.tbs_certrequest_bytes))
        else:
            build_with_cryptography(issuer_key=ca.issuing_key, issuer_name=ca.chain[0].subject, **fields)
        count += 1
    return (time.process_time() - started) * 1000 / count


def cfssl_cpu_ms_per_cert(count: int) -> float | None:
    """CPU of a real ``cfssl serve`` per certificate signed through our CFSSL backend (authsign)."""
    binary = shutil.which("cfssl")
    if binary is None:
        return None
    from ca_backends.cfssl import CfsslBackend

    hmac_key = os.urandom(16).hex()
    with tempfile.TemporaryDirectory(prefix="bench-cfssl-") as tmp:
        workdir = Path(tmp)
        ca = builtin_ca.generate(now=dt.datetime.now(dt.UTC), organization="bench", label="C", serials=(3, 4))
        (workdir / "ca.pem").write_bytes(ca.root_certificate.public_bytes(serialization.Encoding.PEM))
        (workdir / "ca-key.pem").write_bytes(builtin_ca.key_pem(ca.root_key))
        config = {
            "signing": {
                "default": {"expiry": "8760h", "usages": ["digital signature", "client auth"]},
                "profiles": {
                    "device": {
                        "expiry": "8760h",
                        "usages": ["digital signature", "client auth"],
                        "auth_key": "primary",
                    }
                },
            },
            "auth_keys": {"primary": {"type": "standard", "key": hmac_key}},
        }
        (workdir / "config.json").write_text(json.dumps(config))
        port = free_tcp_port()
        process = subprocess.Popen(  # noqa: S603 (our arguments)
            [binary, "serve", "-address", "127.0.0.1", "-port", str(port), "-ca", str(workdir / "ca.pem"),
             "-ca-key", str(workdir / "ca-key.pem"), "-config", str(workdir / "config.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            backend = CfsslBackend.from_config(
                IssuerConfig(
                    issuer_id="bench",
                    name="bench-cfssl",
                    attributes={"host_url": f"http://127.0.0.1:{port}", "cfssl_profile": "device"},
                    credentials={"hmac_hex_key": hmac_key},
                )
            )
            return asyncio.run(_cfssl_run(backend, process.pid, count))
        finally:
            process.terminate()
            process.wait(timeout=10)


def free_tcp_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _cfssl_run(backend: Any, pid: int, count: int) -> float:
    from ca_backends.errors import BackendUnavailable

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
    )
    now = dt.datetime.now(dt.UTC)
    request = SignRequest(
        csr=csr,
        public_key=key.public_key(),
        subject=csr.subject,
        common_name="bench",
        not_before=now,
        not_after=now + dt.timedelta(days=1),
        serial_number=1,
        service="LWM2M",
        request_id="bench",
    )
    for _ in range(100):  # until cfssl listens
        try:
            await backend.sign(request)
            break
        except BackendUnavailable:
            await asyncio.sleep(0.1)
    cfssl = psutil.Process(pid)
    before = sum(cfssl.cpu_times()[:2])
    semaphore = asyncio.Semaphore(8)

    async def one() -> None:
        async with semaphore:
            await backend.sign(request)

    await asyncio.gather(*(one() for _ in range(count)))
    used = sum(cfssl.cpu_times()[:2]) - before
    await backend.aclose()
    return used * 1000 / count


# --- scale ----------------------------------------------------------------------------------------


async def populate(settings: Settings, factory: FactoryCa, count: int, prefix: str) -> float:
    """Bulk-load ``count`` endpoints: each with its own bootstrap configuration (est mode) and the
    PSK the simulator derives for it. Returns the seconds it took."""
    from .server import open_database, open_secret_box
    from .store import builtin_ca as builtin_store
    from .store import devices

    box = open_secret_box(settings)
    started = time.perf_counter()
    database = await open_database(settings, min_size=1, max_size=2)
    try:
        chain = await builtin_store.active_chain(database.pool)
        root = next(c for c in chain if c.issuer == c.subject).public_bytes(serialization.Encoding.DER)
        now = dt.datetime.now(dt.UTC)
        config_row = ("coaps://localhost:5784", "est", 1, 86400, "U", root, 2, now, now, "bulk")
        batch = 50_000
        for first in range(0, count, batch):
            endpoints = [f"{prefix}-{i:07d}" for i in range(first, min(count, first + batch))]
            psk = [factory.psk(e) for e in endpoints]
            await database.pool.copy_records_to_table(
                "bootstrap_configs",
                records=[(e, *config_row) for e in endpoints],
                columns=[
                    "scope", "server_uri", "security_mode", "short_server_id", "lifetime", "binding",
                    "server_certificate", "certificate_usage", "created_at", "updated_at", "etag",
                ],
            )  # fmt: skip
            await database.pool.copy_records_to_table(
                "device_credentials",
                records=[
                    (e, identity, devices.sealed_key(box, e, key), now, now)
                    for e, (identity, key) in zip(endpoints, psk, strict=True)
                ],
                columns=["endpoint", "psk_identity", "psk_key", "created_at", "updated_at"],
            )
        await database.pool.execute("ANALYZE bootstrap_configs; ANALYZE device_credentials")
    finally:
        await database.close()
    return time.perf_counter() - started


def psk_journey(server: LoopbackServer, options: FleetOptions) -> tuple[float, float]:
    """Devices/s and server CPU ms per device of a PSK journey."""
    before = server.cpu_seconds()
    report = event_loop.run(run_fleet(options))
    used = server.cpu_seconds() - before
    if report.failed:
        raise RuntimeError(f"PSK journey failed: {dict(report.failures)}")
    return report.per_second, used * 1000 / report.succeeded


def measure_scale(settings: Settings, plan: BenchPlan, console: Console) -> dict[str, Any]:
    """The PSK journey on a small database, then among ``plan.scale`` endpoints."""
    results: dict[str, Any] = {"scale_endpoints": plan.scale}
    factory = FactoryCa.load_or_create(settings.data_dir / "device-sim")
    server = LoopbackServer(settings)
    server.start()
    try:
        devices = min(plan.journey_devices, plan.scale)
        base = FleetOptions(
            server=server.uri, factory=factory, psk=True, flow="bootstrap", progress=False, timeout_s=60,
            devices=devices, concurrency=plan.journey_concurrency, endpoint_prefix="bench-psk-small",
        )  # fmt: skip
        # The small database gets per-endpoint configurations too, so both runs take the same path
        # (one indexed lookup per device) and differ only in the size of the tables.
        asyncio.run(populate(settings, factory, devices, "bench-psk-small"))
        base = asyncio.run(provision(settings, FleetOptions(**{**base.__dict__, "psk": False})))
        base = FleetOptions(**{**base.__dict__, "psk": True})
        console.print(f"  PSK journey, {devices} devices, small database ...")
        rate, cpu = psk_journey(server, base)
        results["journey_psk_devices_per_s_small"] = round(rate, 1)
        results["journey_psk_cpu_ms_per_device_small"] = round(cpu, 3)
        console.print(f"  loading {plan.scale} bootstrap configurations and PSK identities ...")
        results["scale_load_seconds"] = round(
            asyncio.run(populate(settings, factory, plan.scale, "bench-scale")), 1
        )
        console.print(f"  PSK journey, {devices} of {plan.scale} endpoints ...")
        rate, cpu = psk_journey(server, FleetOptions(**{**base.__dict__, "endpoint_prefix": "bench-scale"}))
        results["journey_psk_devices_per_s_at_scale"] = round(rate, 1)
        results["journey_psk_cpu_ms_per_device_at_scale"] = round(cpu, 3)
    finally:
        server.stop()
    return results


# --- the server ---------------------------------------------------------------------------------


async def until_quiet(server: LoopbackServer, *, limit_s: float = 10.0) -> None:
    """Wait until the server is idle (under 5% of a core over 200 ms), so that the work a phase
    leaves behind (closing thousands of sessions) is not billed to the next phase."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(0.2)
        if server.cpu_seconds() - before <= 0.01:
            return


def _used_since(before: float | None, after: float | None) -> float | None:
    """CPU seconds between two readings of a meter that may not apply (``None``)."""
    return None if before is None or after is None else after - before


def _ms_each(seconds: float, count: int) -> float:
    """``seconds`` spread over ``count`` operations, in milliseconds (3 decimals)."""
    return round(seconds * 1000 / max(1, count), 3)


def measure_server(settings: Settings, plan: BenchPlan, console: Console) -> dict[str, Any]:
    """Start a loopback server and measure handshakes, EST, idle sessions and the journey."""
    results: dict[str, Any] = {}
    server = LoopbackServer(settings)
    server.start()
    try:
        base = FleetOptions(
            server=server.uri,
            factory=FactoryCa.load_or_create(settings.data_dir / "device-sim"),
            key_cache=settings.data_dir / "device-sim",
            progress=False,
            timeout_s=60,
            flow="bootstrap",
            endpoint_prefix="bench",
        )
        base = asyncio.run(provision(settings, base))

        async def sessions_phase() -> None:
            # Idle sessions first, on a fresh process: later phases free memory the allocator would
            # reuse for them, hiding their cost.
            console.print(f"  {plan.idle_sessions} idle sessions ...")
            await asyncio.sleep(1)
            rss_before = server.rss_bytes()
            options = FleetOptions(**{**base.__dict__, "endpoint_prefix": "bench-idle"})
            opened = await open_sessions(options, plan.idle_sessions)
            await asyncio.sleep(1)
            rss_with_sessions = server.rss_bytes()
            grown = rss_with_sessions - rss_before
            results["idle_sessions"] = plan.idle_sessions
            results["rss_mib_per_1k_sessions"] = round(grown / 2**20 * 1000 / plan.idle_sessions, 1)
            results["rss_mib_with_idle_sessions"] = round(rss_with_sessions / 2**20, 1)
            await opened.close()
            await until_quiet(server)

            console.print(f"  {plan.handshakes} DTLS handshakes ...")
            options = FleetOptions(**{**base.__dict__, "endpoint_prefix": "bench-hs"})
            before = server.cpu_seconds()
            opened = await open_sessions(options, plan.handshakes)
            results["handshake_cpu_ms"] = round((server.cpu_seconds() - before) * 1000 / plan.handshakes, 3)
            await opened.close()
            await until_quiet(server)

            console.print(f"  {plan.handshakes} DTLS handshakes, PSK ...")
            options = FleetOptions(**{**base.__dict__, "endpoint_prefix": "bench-hs-psk", "psk": True})
            assert options.factory is not None
            await register(
                options.factory,
                database_url=settings.database_url,
                data_dir=settings.data_dir,
                psk_endpoints=[f"bench-hs-psk-{i:07d}" for i in range(plan.handshakes)],
                master_key_file=settings.master_key_file,
            )
            before = server.cpu_seconds()
            opened = await open_sessions(options, plan.handshakes)
            results["handshake_psk_cpu_ms"] = round(
                (server.cpu_seconds() - before) * 1000 / plan.handshakes, 3
            )
            await opened.close()
            await until_quiet(server)

            count = plan.est_sessions * plan.est_per_session
            console.print(f"  EST over {plan.est_sessions} established sessions, {count} certificates ...")
            options = FleetOptions(**{**base.__dict__, "endpoint_prefix": "bench-est"})
            opened = await open_sessions(options, plan.est_sessions)
            postgres_before = server.postgres_cpu_seconds()
            report, used = await enroll_repeatedly(
                opened, options, plan.est_per_session, cpu_meter=server.cpu_seconds
            )
            postgres_used = _used_since(postgres_before, server.postgres_cpu_seconds())
            await opened.close()
            await until_quiet(server)
            results["est_certs_per_s"] = round(report.per_second, 1)
            results["est_cpu_ms_per_cert"] = _ms_each(used, report.succeeded)
            if postgres_used is not None:
                results["est_postgres_cpu_ms_per_cert"] = _ms_each(postgres_used, report.succeeded)
            results["est_p50_ms"] = report.as_dict()["p50_ms"]
            results["est_p99_ms"] = report.as_dict()["p99_ms"]
            results["est_failed"] = report.failed

        event_loop.run(sessions_phase())
        console.print(f"  full journey, {plan.journey_devices} devices ...")
        options = FleetOptions(
            **{
                **base.__dict__,
                "devices": plan.journey_devices,
                "concurrency": plan.journey_concurrency,
                "endpoint_prefix": "bench-journey",
            }
        )
        prepare_certificates(options)  # the factory's work, not the devices'
        before, postgres_before = server.cpu_seconds(), server.postgres_cpu_seconds()
        report = event_loop.run(run_fleet_processes(options, plan.journey_processes))
        used = server.cpu_seconds() - before
        postgres_used = _used_since(postgres_before, server.postgres_cpu_seconds())
        summary = report.as_dict()
        results["journey_simulator_processes"] = plan.journey_processes
        results["journey_concurrency"] = plan.journey_concurrency
        results["journey_devices_per_s"] = summary["per_second"]
        results["journey_p50_ms"] = summary["p50_ms"]
        results["journey_p99_ms"] = summary["p99_ms"]
        results["journey_cpu_ms_per_device"] = _ms_each(used, report.succeeded)
        results["journey_simulator_cpu_ms_per_device"] = summary["simulator_cpu_ms_per_device"]
        if postgres_used is not None:
            results["journey_postgres_cpu_ms_per_device"] = _ms_each(postgres_used, report.succeeded)
            results["journey_all_cpu_ms_per_device"] = round(
                results["journey_cpu_ms_per_device"]
                + results["journey_simulator_cpu_ms_per_device"]
                + results["journey_postgres_cpu_ms_per_device"],
                3,
            )
        results["journey_failed"] = report.failed
    finally:
        server.stop()
    return results


def same_run_ratios(results: dict[str, Any]) -> dict[str, float]:
    """CPU costs divided by baselines measured in the same run. On a shared machine the absolute
    figures move by tens of percent within minutes, and the baselines move with them."""
    ratios: dict[str, float] = {}
    cfssl, floor = results.get("cfssl_cpu_ms_per_cert"), results.get("issue_floor_ms")
    est, journey = results.get("est_cpu_ms_per_cert"), results.get("journey_cpu_ms_per_device")
    if est and cfssl:
        ratios["est_cpu_vs_cfssl"] = round(est / cfssl, 2)
    if journey and floor:
        ratios["journey_cpu_vs_issue_floor"] = round(journey / floor, 2)
    return ratios


def run_bench(settings: Settings, *, plan: BenchPlan, json_path: Path | None) -> int:
    """Run every measurement, print the table, write the JSON; 0 if nothing failed."""
    console = Console()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "server_workers": settings.workers,
    }
    console.print("baselines ...")
    logs.configure(settings.log_format, "error")  # the CA clients' retry lines while cfssl starts
    results["openssl_sign_per_s"], results["openssl_verify_per_s"] = openssl_speed()
    results["issue_floor_ms"] = round(issue_floor_ms(plan.floor_seconds), 3)
    results["issue_template_ms"] = round(issue_floor_ms(plan.floor_seconds, template=True), 3)
    cfssl = cfssl_cpu_ms_per_cert(plan.cfssl_certs)
    results["cfssl_cpu_ms_per_cert"] = round(cfssl, 3) if cfssl is not None else None
    console.print("server on loopback ...")
    results.update(measure_server(settings, plan, console))
    if plan.scale:
        console.print(f"scale: {plan.scale} endpoints ...")
        results.update(measure_scale(settings, plan, console))
    results.update(same_run_ratios(results))
    table = Table(title="lwm2m-bootstrap bench", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, "n/a" if value is None else str(value))
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if results.get("est_failed") or results.get("journey_failed") else 0
