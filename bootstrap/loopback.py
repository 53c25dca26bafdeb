"""A server started as a child process on loopback, as ``serve`` runs it, with meters.

The demo and the benchmark use it: the server's CPU time and memory are measured from outside,
apart from the simulator's, and its storage is provisioned the way an operator would (the
simulator's manufacturer CA trusted, a default bootstrap configuration on first run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from aiocoap import Code, Context, Message
from cryptography.hazmat.primitives.serialization import Encoding

from device_sim.fleet import FleetOptions, wait_until_accepted
from device_sim.provisioning import register

from . import server_identity
from .bootstrap_plan import BootstrapConfig
from .config import Settings
from .store import bootstrap_configs, builtin_ca
from .store.database import Database

MODES = {"dtls": "DTLS, certificates", "dtls-psk": "DTLS, PSK", "coap": "plain CoAP (insecure)"}

#: LwM2M server URI of the default bootstrap configuration the demo creates on first run.
DEMO_LWM2M_SERVER = "coaps://localhost:5784"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of the server: the process and its workers (Postgres runs apart)."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_cpu_seconds(pgdata: Path) -> float | None:
    """User + system CPU of the Postgres server running in ``pgdata``: the postmaster, its live
    processes and those it has reaped; ``None`` when none runs there (an external database).

    A backend that exits between two readings moves from the live processes to the reaped ones,
    so the difference of two readings counts it once."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        if "postgres" not in postmaster.name():
            return None  # a stale pid file whose number was reused
        times = postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in postmaster.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue  # exited after the listing: it is counted in children_* next time
            total += times.user + times.system
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return total


def server_command(settings: Settings, coap_port: int, coaps_port: int | None) -> list[str]:
    """The ``serve`` invocation for a loopback child server (plain CoAP for readiness probes;
    insecure enrollment only when there is no DTLS listener)."""
    command = [
        sys.executable, "-m", "bootstrap", "serve",
        "--data-dir", str(settings.data_dir),
        "--coap", f"127.0.0.1:{coap_port}",
        "--coaps", f"127.0.0.1:{coaps_port}" if coaps_port else "off",
        "--coaps-tcp", "off",
        "--admin", "off",
        "--server-names", ",".join(settings.server_names),
        "--log-format", "json",
        "--log-level", "warning",
        "--workers", str(settings.workers),
    ]  # fmt: skip
    if coaps_port is None:
        command.append("--insecure-coap-enrollment")
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    if settings.master_key_file:
        command += ["--master-key-file", str(settings.master_key_file)]
    return command


async def wait_until_ready(uri: str, process: subprocess.Popen[bytes], limit_s: float = 60.0) -> None:
    """Poll ``/.well-known/core`` until the server answers (or it exits, or time runs out)."""
    context = await Context.create_client_context()
    try:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with code {process.returncode} during start-up")
            try:
                request = Message(code=Code.GET, uri=uri + "/.well-known/core")
                response = await asyncio.wait_for(context.request(request).response, 1.0)
                if response.code == Code.CONTENT:
                    return
            except Exception:  # not up yet
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server did not answer within {limit_s:.0f} s")
    finally:
        await context.shutdown()


async def provision(settings: Settings, options: FleetOptions) -> FleetOptions:
    """Register the factory CA (and PSKs) with the server's database; learn the server's certificate.

    The devices pin the running server's certificate, as LwM2M devices do by default (certificate
    usage 3): they compare it with what the handshake presents instead of verifying its chain.
    """
    assert options.factory is not None
    endpoints = (
        [f"{options.endpoint_prefix}-{i:07d}" for i in range(options.devices)] if options.psk else None
    )
    await register(
        options.factory,
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        psk_endpoints=endpoints,
        master_key_file=settings.master_key_file,
    )
    database = await Database.open(
        database_url=settings.database_url, data_dir=settings.data_dir, min_size=1, max_size=2
    )
    try:
        pinned = await server_identity.stored_certificate(database.pool, settings.server_names)
        if pinned is None:
            raise RuntimeError(f"the server has no certificate for {','.join(settings.server_names)} yet")
        if options.flow == "bootstrap" and await bootstrap_configs.effective(database.pool, "-") is None:
            # First run: give devices an LwM2M server account to bootstrap into. The demo has no
            # LwM2M server; the account names one whose certificate the built-in CA would issue.
            chain = await builtin_ca.active_chain(database.pool)
            root = next(c for c in chain if c.issuer == c.subject)
            await bootstrap_configs.put(
                database.pool,
                bootstrap_configs.DEFAULT_SCOPE,
                BootstrapConfig(
                    server_uri=DEMO_LWM2M_SERVER,
                    security_mode="est",
                    server_certificate_der=root.public_bytes(Encoding.DER),
                    certificate_usage=2,
                ),
            )
    finally:
        await database.close()
    options = FleetOptions(**{**options.__dict__, "server_certificate": pinned})
    await wait_until_accepted(options)
    return options


class LoopbackServer:
    """``lwm2m-bootstrap serve`` as a child process on 127.0.0.1, with CPU and memory meters."""

    def __init__(
        self,
        settings: Settings,
        *,
        dtls: bool = True,
        wrapper: Sequence[str] = (),
        ready_limit_s: float = 60.0,
    ) -> None:
        """``wrapper`` is put before the server's command (a profiler, ``valgrind``), which then
        may need a longer ``ready_limit_s`` to start."""
        self.settings = settings
        self.wrapper = tuple(wrapper)
        self.ready_limit_s = ready_limit_s
        self.coap_port = free_udp_port()
        self.coaps_port = free_udp_port() if dtls else None
        self.log_path = settings.data_dir / "loopback-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """Where devices connect: ``coaps://`` when DTLS is on, else ``coap://``."""
        if self.coaps_port:
            return f"coaps://127.0.0.1:{self.coaps_port}"
        return f"coap://127.0.0.1:{self.coap_port}"

    def start(self) -> None:
        """Start the child and wait until it answers."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                [*self.wrapper, *server_command(self.settings, self.coap_port, self.coaps_port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )
        asyncio.run(wait_until_ready(f"coap://127.0.0.1:{self.coap_port}", self.process, self.ready_limit_s))

    def cpu_seconds(self) -> float:
        """CPU the server (and its workers) used so far."""
        assert self.process is not None
        return server_cpu_seconds(psutil.Process(self.process.pid))

    def postgres_cpu_seconds(self) -> float | None:
        """CPU the embedded Postgres used so far (``None`` with an external database)."""
        if self.settings.database_url:
            return None
        return postgres_cpu_seconds(self.settings.data_dir / "postgres")

    def rss_bytes(self) -> int:
        """Resident memory of the server process and its workers."""
        assert self.process is not None
        total = 0
        root = psutil.Process(self.process.pid)
        for member in [root, *root.children(recursive=True)]:
            try:
                total += member.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self) -> None:
        """SIGTERM, wait for the drain, kill if it hangs."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None
