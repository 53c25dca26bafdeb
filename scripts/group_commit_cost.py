#!/usr/bin/env python3
"""Client CPU per audit row written by a group commit, by batch size: binary COPY against an INSERT.

The audit writer (:class:`bootstrap.store.audit.AuditWriter`) appends the rows of a batch with
:func:`bootstrap.store.audit.insert_issued`, a binary ``COPY``. Until the seventh session it sent
one ``INSERT ... SELECT * FROM unnest($1::text[], ...)`` with an array per column, the statement
kept here as the baseline. This script writes the same synthetic rows both ways into a fresh
embedded Postgres (a temporary directory, removed afterwards) over one connection, alternating the
two methods, and reports this process's CPU time (``time.process_time``) and wall time per row.
Postgres's own CPU is not counted (it runs apart).

In the bench, batches hold about 20 rows during EST over 50 sessions and about 7 during the
journey (rows per transaction, read from ``xmin``).

Usage::

    .venv/bin/python scripts/group_commit_cost.py                  # 2,400 rows per method and size
    .venv/bin/python scripts/group_commit_cost.py --rows 4800 --batch 8 --batch 32 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import operator
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bootstrap import event_loop, logs
from bootstrap.store import Queryable
from bootstrap.store.audit import IssuedCertificate, insert_issued
from bootstrap.store.database import Database

#: The former statement: one INSERT of unnested arrays, one array per column.
UNNEST_INSERT = """
INSERT INTO issued_certificates
    (serial_number, endpoint, service_reference, issuer_id, issuer_name, issuer_type,
     fingerprint_sha256, subject, not_before, not_after, certificate, request_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bytea[], $12::text[])
"""


#: The IssuedCertificate attributes behind UNNEST_INSERT's twelve arrays, in order.
_FIELDS = operator.attrgetter(
    "serial_number", "endpoint", "service_reference", "issuer_id", "issuer_name", "issuer_type",
    "fingerprint_sha256", "subject", "not_before", "not_after", "certificate_der", "request_id",
)  # fmt: skip


async def insert_unnested(conn: Queryable, rows: list[IssuedCertificate]) -> None:
    """The baseline: what ``insert_issued`` sent before it used COPY (an array per column)."""
    await conn.execute(UNNEST_INSERT, *(list(column) for column in zip(*map(_FIELDS, rows), strict=True)))


def synthetic_rows(count: int) -> list[IssuedCertificate]:
    """Rows shaped like the built-in CA's: random serial, fingerprint and a 480-byte 'certificate'."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for n in range(count):
        endpoint = f"cost-{os.urandom(4).hex()}-{n:07d}"
        rows.append(
            IssuedCertificate(
                serial_number=os.urandom(16).hex().upper(),
                endpoint=endpoint,
                service_reference="LWM2M",
                issuer_id=None,
                issuer_name="builtin",
                issuer_type="BUILTIN",
                fingerprint_sha256=os.urandom(32).hex(),
                subject=f"CN={endpoint}",
                not_before=now,
                not_after=now + dt.timedelta(days=365),
                certificate_der=os.urandom(480),
                request_id=os.urandom(8).hex(),
            )
        )
    return rows


Insert = Callable[[Queryable, list[IssuedCertificate]], Awaitable[None]]


async def measure(
    database: Database, batch_sizes: list[int], rows_per_size: int, rounds: int
) -> dict[str, Any]:
    """Per batch size, the best of ``rounds`` of each method: CPU and wall microseconds per row."""
    methods: dict[str, Insert] = {"copy": insert_issued, "unnest_insert": insert_unnested}
    results: dict[str, Any] = {}
    async with database.pool.acquire() as conn:
        for size in batch_sizes:
            batches = max(1, rows_per_size // size)
            cpu: dict[str, list[float]] = {name: [] for name in methods}
            wall: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(rounds):
                for name, insert in methods.items():
                    data = synthetic_rows(batches * size)
                    await insert(conn, data[:size])  # warm-up: statement cache, codecs
                    data = data[size:] + synthetic_rows(size)
                    cpu_start, wall_start = time.process_time(), time.perf_counter()
                    for start in range(0, len(data), size):
                        await insert(conn, data[start : start + size])
                    cpu[name].append((time.process_time() - cpu_start) * 1e6 / len(data))
                    wall[name].append((time.perf_counter() - wall_start) * 1e6 / len(data))
            results[str(size)] = {
                name: {
                    "cpu_us_per_row": round(min(cpu[name]), 1),
                    "wall_us_per_row": round(min(wall[name]), 1),
                }
                for name in methods
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2400, help="rows per method, batch size and round")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 1, 4, 16, 64)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best is reported")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("console", "warning")
    data_dir = Path(tempfile.mkdtemp(prefix="lwm2m-group-commit-"))

    async def run() -> dict[str, Any]:
        database = await Database.open(database_url=None, data_dir=data_dir)
        try:
            return await measure(database, args.batch or [1, 4, 16, 64], args.rows, args.rounds)
        finally:
            await database.close()

    try:
        results = event_loop.run(run())
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print("microseconds per row, this process")
    print(f"{'rows/batch':>10} {'COPY cpu':>10} {'INSERT cpu':>11} {'COPY wall':>10} {'INSERT wall':>12}")
    for size, figures in results.items():
        copy, unnest = figures["copy"], figures["unnest_insert"]
        print(
            f"{size:>10} {copy['cpu_us_per_row']:>10} {unnest['cpu_us_per_row']:>11} "
            f"{copy['wall_us_per_row']:>10} {unnest['wall_us_per_row']:>12}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
