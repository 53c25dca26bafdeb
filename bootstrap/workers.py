"""``serve --workers N``: N server processes sharing the ports, under one supervisor.

Each worker is a full server with its own event loop. They bind the same UDP and TCP ports with
SO_REUSEPORT; the kernel hashes each client's address to one socket, so a device's DTLS session stays
with one worker. Everything else they share lives in Postgres, and their caches follow it through
LISTEN/NOTIFY. The supervisor starts the embedded Postgres (when no URL is given) and applies the
migrations once, then starts the workers, restarts any that dies (with back-off), and on SIGTERM or
SIGINT asks every worker to drain and stop, then stops Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog

from . import event_loop, log_context, logs
from .config import Settings

log = structlog.get_logger(__name__)

#: Seconds a worker is given to drain after SIGTERM before it is killed.
DRAIN_SECONDS = 30.0


def _worker_main(settings: Settings, index: int) -> None:
    """Entry point of a worker process."""
    from .server import serve_forever

    logs.configure(settings.log_format, settings.log_level)
    log_context.bind(worker=index)
    event_loop.run(serve_forever(settings))


def _prepare(settings: Settings) -> tuple[Settings, object | None]:
    """Start the embedded Postgres if needed and migrate once; return worker settings."""
    from .server import open_database, open_secret_box
    from .store import builtin_ca

    async def migrate() -> tuple[str, object | None]:
        database = await open_database(settings, min_size=1, max_size=2)
        # Create the built-in CA now rather than in N workers at once (they would serialise anyway).
        await builtin_ca.ensure(database.pool, open_secret_box(settings))
        handle = database.embedded
        database.embedded = None  # keep the embedded server running for the workers
        await database.close()
        return database.dsn, handle

    dsn, handle = asyncio.run(migrate())
    return dataclasses.replace(settings, database_url=dsn, workers=1, reuse_port=True), handle


def run_workers(settings: Settings) -> int:
    """Supervise ``settings.workers`` worker processes until SIGTERM/SIGINT; return the exit code."""
    worker_settings, embedded = _prepare(settings)
    context = multiprocessing.get_context("spawn")
    metrics_dir = tempfile.mkdtemp(prefix="lwm2m-bootstrap-metrics-")
    # prometheus-client's multi-process mode is chosen from the environment at import time, so it
    # must be set before the workers start (spawned workers import afresh).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    worker_settings = dataclasses.replace(worker_settings, metrics_dir=metrics_dir)
    processes: dict[int, BaseProcess] = {}
    restarts: dict[int, list[float]] = {}
    stopping = False
    gave_up = False

    def start(index: int) -> None:
        process = context.Process(target=_worker_main, args=(worker_settings, index), name=f"worker-{index}")
        process.start()
        processes[index] = process
        log.info("worker started", worker=index, pid=process.pid)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(settings.workers):
        start(index)
    log.info("ready", workers=settings.workers)
    try:
        while not stopping:
            time.sleep(0.2)
            for index, process in list(processes.items()):
                if process.is_alive() or stopping:
                    continue
                log.error("worker died; restarting", worker=index, exitcode=process.exitcode)
                recent = [t for t in restarts.get(index, []) if time.monotonic() - t < 60]
                restarts[index] = [*recent, time.monotonic()]
                if len(recent) >= 5:
                    log.error("worker keeps dying; giving up", worker=index)
                    stopping = gave_up = True
                    break
                time.sleep(min(2.0 ** len(recent) * 0.1, 5.0))
                start(index)
    finally:
        log.info("shutting down", workers=len(processes))
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()  # SIGTERM: the worker drains and stops
        deadline = time.monotonic() + DRAIN_SECONDS
        for process in processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker did not stop in time; killing", pid=process.pid)
                process.kill()
                process.join(5)
        if embedded is not None:
            embedded.cleanup()  # type: ignore[attr-defined]
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("stopped")
    return 1 if gave_up else 0
