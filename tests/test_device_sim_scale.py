"""The fleet simulator at scale: open-loop scheduling, several processes, the key cache, the timeline
and its plot. Scheduler tests use an injected clock (no real-time assertions)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import random
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.fleet import (
    FleetHooks,
    FleetOptions,
    OpenLoop,
    arrival_lane,
    arrival_offsets,
    run_fleet,
)
from device_sim.keys import CACHE_FILE, KeyCacheError, KeyPool, load_keys
from device_sim.multiproc import plan_slices, split
from device_sim.report import (
    SHED_REASON,
    Completion,
    FleetReport,
    PlotUnavailable,
    ensure_plotting,
    merge_reports,
    plot_timeline,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: The JSON keys the report had before the timeline work; consumers rely on them.
ORIGINAL_KEYS = {
    "devices",
    "succeeded",
    "failed",
    "failures",
    "elapsed_s",
    "per_second",
    "p50_ms",
    "p95_ms",
    "p99_ms",
}


def private_value(key: ec.EllipticCurvePrivateKey) -> int:
    return key.private_numbers().private_value


# --- merging reports ------------------------------------------------------------------------------


def make_report(started_at: float, latencies: list[float], at: list[float], **kwargs: object) -> FleetReport:
    report = FleetReport(devices=len(latencies), started_at=started_at)
    for latency, when in zip(latencies, at, strict=True):
        report.latencies_ms.append(latency)
        report.timeline.append(Completion(when, latency, True))
    for name, value in kwargs.items():
        setattr(report, name, value)
    return report


def test_merge_pools_latencies_failures_and_lines_up_timelines() -> None:
    first = make_report(
        1000.0, [10.0, 20.0], [0.5, 1.5], elapsed_s=2.0, offered_rate=5.0, arrivals=3, last_arrival_s=1.2
    )
    first.devices = 3
    first.failures["timeout"] = 1
    first.timeline.append(Completion(1.9, 30000.0, False))
    first.extra.update(bootstrapped_by_pack=2, transport="DTLS")
    first.schedule_lag_ms = [1.0, 2.0, 3.0]
    first.simulator_cpu_s = 0.5
    second = make_report(
        1000.5, [30.0, 40.0], [0.1, 2.0], elapsed_s=2.1, offered_rate=5.0, arrivals=2, last_arrival_s=1.0
    )
    second.devices = 5
    second.failures.update({"timeout": 2, SHED_REASON: 1})
    second.extra.update(bootstrapped_by_pack=1, bootstrapped_by_request=1, transport="other")
    second.schedule_lag_ms = [4.0]
    second.simulator_cpu_s = 0.25

    merged = merge_reports([first, second])

    assert merged.devices == 8 and merged.processes == 2
    assert merged.started_at == 1000.0
    assert sorted(merged.latencies_ms) == [10.0, 20.0, 30.0, 40.0]
    assert merged.failures == Counter({"timeout": 3, SHED_REASON: 1})
    # The second process started 0.5 s later: its offsets move by 0.5 s; the result is in time order.
    assert [c.at_s for c in merged.timeline] == [0.5, 0.6, 1.5, 1.9, 2.5]
    assert merged.timeline[-1] == Completion(2.5, 40.0, True)
    assert merged.elapsed_s == pytest.approx(2.6)
    assert merged.last_arrival_s == pytest.approx(1.5)
    assert merged.arrivals == 5
    assert merged.offered_rate == 10.0
    assert merged.schedule_lag_ms == [1.0, 2.0, 3.0, 4.0]
    assert merged.simulator_cpu_s == pytest.approx(0.75)
    assert merged.extra == {"bootstrapped_by_pack": 3, "transport": "DTLS", "bootstrapped_by_request": 1}
    assert merged.achieved_rate == pytest.approx(5 / 1.5)
    data = merged.as_dict()
    assert data["p50_ms"] == 20.0 and data["p99_ms"] == 40.0  # pooled, not averaged per process
    assert data["processes"] == 2 and data["offered_rate"] == 10.0


def test_merge_of_closed_loop_reports_has_no_offered_rate() -> None:
    merged = merge_reports([make_report(5.0, [1.0], [0.1]), make_report(5.0, [2.0], [0.2], offered_rate=3.0)])
    assert merged.offered_rate is None
    assert merged.as_dict()["arrival_lag_p99_ms"] is None
    with pytest.raises(ValueError):
        merge_reports([])


def test_buckets_per_second_and_json_timeline_only_when_asked() -> None:
    report = make_report(0.0, [10.0, 30.0, 20.0, 40.0], [0.2, 0.9, 0.5, 2.5], elapsed_s=2.6)
    report.timeline.append(Completion(2.7, 0.0, False))
    report.failures[SHED_REASON] += 1
    buckets = report.buckets()
    assert [(b.start_s, b.succeeded, b.failed) for b in buckets] == [(0.0, 3, 0), (1.0, 0, 0), (2.0, 1, 1)]
    assert (buckets[0].p50_ms, buckets[0].p99_ms) == (20.0, 30.0)
    assert (buckets[1].p50_ms, buckets[2].p99_ms) == (0.0, 40.0)  # the shed arrival has no latency

    plain = report.as_dict()
    assert ORIGINAL_KEYS <= plain.keys() and "timeline" not in plain
    with_timeline = report.as_dict(timeline=True)
    assert {k: v for k, v in with_timeline.items() if k != "timeline"} == plain
    assert len(with_timeline["timeline"]["buckets"]) == 3
    assert with_timeline["timeline"]["completions"][-1] == [2.7, 0.0, False]
    assert FleetReport(devices=1).buckets() == []


# --- the open-loop scheduler ----------------------------------------------------------------------


class FakeClock:
    """Time that passes only when the scheduler sleeps (plus ``oversleep_s`` per sleep)."""

    def __init__(self, oversleep_s: float = 0.0) -> None:
        self.now = 0.0
        self.oversleep_s = oversleep_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        for _ in range(3):  # started work (and its done callbacks) runs before time moves on
            await asyncio.sleep(0)
        self.now += seconds + (self.oversleep_s if seconds > 0 else 0.0)


def test_fixed_and_poisson_arrival_offsets() -> None:
    assert list(arrival_offsets(4.0, 4, kind="fixed")) == [0.25, 0.5, 0.75, 1.0]
    first = list(arrival_offsets(50.0, 5000, rng=random.Random(7)))
    assert first == list(arrival_offsets(50.0, 5000, rng=random.Random(7)))  # seeded: reproducible
    gaps = [b - a for a, b in itertools.pairwise([0.0, *first])]
    assert all(gap > 0 for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 50, rel=0.05)  # mean gap 1/rate
    # Exponential gaps: about 1 - 1/e of them shorter than the mean.
    assert sum(g < 1 / 50 for g in gaps) / len(gaps) == pytest.approx(0.632, abs=0.03)
    with pytest.raises(ValueError):
        list(arrival_offsets(0.0, 1))
    with pytest.raises(ValueError):
        list(arrival_offsets(1.0, 1, kind="bursty"))


async def test_open_loop_starts_work_on_schedule() -> None:
    clock = FakeClock()
    started: list[tuple[int, float]] = []

    async def start(index: int) -> None:
        started.append((index, clock.now))

    stats = await OpenLoop(cap=10, clock=clock, sleep=clock.sleep).run(
        [0.5, 1.0, 1.0, 2.5], start, lambda i, at: pytest.fail("nothing is shed")
    )
    assert started == [(0, 0.5), (1, 1.0), (2, 1.0), (3, 2.5)]
    assert stats.started == 4 and stats.shed == 0
    assert stats.last_start_s == 2.5 and stats.lags_ms == [0.0] * 4


async def test_open_loop_sheds_arrivals_beyond_the_cap_and_admits_again_when_work_finishes() -> None:
    clock = FakeClock()
    release = {i: asyncio.Event() for i in range(6)}
    started: list[int] = []
    shed: list[tuple[int, float]] = []

    async def start(index: int) -> None:
        started.append(index)
        await release[index].wait()

    def on_shed(index: int, at: float) -> None:
        shed.append((index, at))
        if index == 3:
            release[0].set()  # one device finishes: the next arrival fits again
        if index == 5:
            for event in release.values():
                event.set()

    loop = OpenLoop(cap=2, clock=clock, sleep=clock.sleep)
    stats = await loop.run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start, on_shed)
    # 0 and 1 fill the cap; 2 and 3 are shed; 0 finishes; 4 starts; 5 is shed.
    assert started == [0, 1, 4]
    assert shed == [(2, 3.0), (3, 4.0), (5, 6.0)]
    assert (stats.started, stats.shed) == (3, 3)
    assert not loop.in_flight


async def test_open_loop_behind_schedule_starts_late_instead_of_skipping() -> None:
    clock = FakeClock(oversleep_s=0.25)  # a saturated simulator wakes up late every time
    started: list[int] = []

    async def start(index: int) -> None:
        started.append(index)

    stats = await OpenLoop(cap=100, clock=clock, sleep=clock.sleep).run(
        [0.1, 0.2, 0.3, 0.4], start, lambda i, at: pytest.fail("nothing is shed")
    )
    assert started == [0, 1, 2, 3]  # none skipped
    # 1st: slept until 0.1, woke at 0.35 (250 ms late); 2nd and 3rd were already due (no wait);
    # the 4th waits again and wakes late again.
    assert stats.lags_ms == pytest.approx([250.0, 150.0, 50.0, 250.0])
    assert clock.sleeps == pytest.approx([0.1, 0.0, 0.0, 0.05])


async def test_open_loop_cancels_started_work_when_cancelled() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def start(index: int) -> None:
        await gate.wait()

    loop = OpenLoop(cap=5, clock=clock, sleep=clock.sleep)
    runner = asyncio.create_task(loop.run([0.0, 0.0], start, lambda i, at: None))
    for _ in range(10):
        await asyncio.sleep(0)
    tasks = set(loop.in_flight)
    assert len(tasks) == 2
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await asyncio.sleep(0)
    assert all(task.cancelled() for task in tasks)


# --- splitting a fleet over processes ---------------------------------------------------------------


def test_plan_slices_gives_disjoint_ranges_and_shares(factory: object) -> None:
    from device_sim.provisioning import FactoryCa

    assert isinstance(factory, FactoryCa)
    assert split(10, 3) == [4, 3, 3] and sum(split(7, 7)) == 7
    options = FleetOptions(
        server="coaps://127.0.0.1:1",
        devices=10,
        concurrency=5,
        rate=30.0,
        seed=3,
        first_index=100,
        factory=factory,
        server_trust=(factory.certificate,),
        server_certificate=b"pinned DER",
    )
    specs = plan_slices(options, 3)
    built = [pickle.loads(pickle.dumps(spec)).build() for spec in specs]  # what a spawned child gets
    ranges = [range(o.first_index, o.first_index + o.devices) for o in built]
    assert [list(r) for r in ranges] == [list(range(100, 104)), list(range(104, 107)), list(range(107, 110))]
    assert sum(o.rate or 0 for o in built) == pytest.approx(30.0)
    assert built[0].rate == pytest.approx(12.0)
    assert [o.concurrency for o in built] == [2, 2, 1]
    assert {o.seed for o in built} == {3}  # one fleet-wide schedule
    assert not any(o.progress for o in built)
    assert all(o.factory is not None and o.factory.certificate == factory.certificate for o in built)
    assert all(o.server_trust == (factory.certificate,) for o in built)
    assert all(o.server_certificate == b"pinned DER" for o in built)
    # The lanes deal out the single-process schedule round-robin: together they replay it exactly.
    lanes = [spec.arrivals() or [] for spec in specs]
    assert [len(lane) for lane in lanes] == [o.devices for o in built]
    whole = list(arrival_offsets(30.0, 10, rng=random.Random(3)))
    assert sorted(itertools.chain.from_iterable(lanes)) == whole
    assert lanes[1] == whole[1::3]
    assert arrival_lane(30.0, 10, kind="poisson", seed=3, lane=0, lanes=1) == whole

    fixed = plan_slices(FleetOptions(server="coap://h", devices=4, rate=10.0, arrival="fixed"), 2)
    assert [spec.arrivals() for spec in fixed] == [[0.1, 0.3], [0.2, 0.4]]
    unseeded = plan_slices(FleetOptions(server="coap://h", devices=4, rate=10.0), 2)
    assert unseeded[0].schedule == unseeded[1].schedule  # a random seed, shared
    assert plan_slices(FleetOptions(server="coap://h", devices=4), 2)[0].arrivals() is None
    with pytest.raises(ValueError):
        arrival_lane(1.0, 3, kind="fixed", seed=0, lane=2, lanes=2)
    # More processes than devices: one device each; concurrency at least one per process.
    few = plan_slices(FleetOptions(server="coap://h", devices=2, concurrency=1), 8)
    assert [(s.options["devices"], s.options["concurrency"]) for s in few] == [(1, 1), (1, 1)]


# --- the key cache ---------------------------------------------------------------------------------


def test_key_cache_round_trip(tmp_path: Path) -> None:
    first = KeyPool(5, cache_dir=tmp_path)
    assert (first.loaded, first.generated) == (0, 5)
    path = tmp_path / CACHE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CACHE_FILE]  # no temporary file left
    again = KeyPool(5, cache_dir=tmp_path)
    assert (again.loaded, again.generated) == (5, 0)
    assert [private_value(again.key_for(i)) for i in range(5)] == [
        private_value(first.key_for(i)) for i in range(5)
    ]
    # A smaller pool takes the first keys and leaves the file alone.
    before = path.read_bytes()
    small = KeyPool(2, cache_dir=tmp_path)
    assert (small.loaded, small.generated) == (2, 0)
    assert private_value(small.key_for(3)) == private_value(first.key_for(1))
    assert path.read_bytes() == before


def test_key_cache_partial_file_is_extended(tmp_path: Path) -> None:
    three = KeyPool(3, cache_dir=tmp_path)
    five = KeyPool(5, cache_dir=tmp_path)
    assert (five.loaded, five.generated) == (3, 2)
    assert [private_value(five.key_for(i)) for i in range(3)] == [
        private_value(three.key_for(i)) for i in range(3)
    ]
    on_disk = load_keys(tmp_path / CACHE_FILE)
    assert [private_value(k) for k in on_disk] == [private_value(five.key_for(i)) for i in range(5)]


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "bad base64", "not p256"],
)
def test_corrupt_key_cache_is_a_clear_error_and_left_alone(tmp_path: Path, damage: str) -> None:
    KeyPool(3, cache_dir=tmp_path)
    path = tmp_path / CACHE_FILE
    data = path.read_bytes()
    if damage == "garbage":
        data = b"this is not a key file\n"
    elif damage == "truncated":
        data = data[: len(data) - 40]
    elif damage == "bad base64":
        lines = data.split(b"\n")
        lines[1] = b"!!!!" + lines[1][4:]
        data = b"\n".join(lines)
    else:
        other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        data += other
    path.write_bytes(data)
    with pytest.raises(KeyCacheError, match=str(path)):
        KeyPool(5, cache_dir=tmp_path)
    assert path.read_bytes() == data  # the devices' identities are not silently replaced


def test_factory_certificates_are_issued_once_and_read_back(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from device_sim.provisioning import CERT_CACHE_FILE, FactoryCa

    first = FactoryCa.load_or_create(tmp_path)
    key_a, key_b = (ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(2))
    issued = first.device_certificate("dev-a", key_a)
    assert first.device_certificate("dev-a", key_a) == issued
    again = FactoryCa.load_or_create(tmp_path)  # a later run
    assert again.device_certificate("dev-a", key_a) == issued
    assert again.device_certificate("dev-a", key_b) != issued, "a new key gets a new certificate"
    assert again.device_certificate("dev-b", key_a).subject != issued.subject
    assert issued.public_key() == key_a
    issued.verify_directly_issued_by(first.certificate)
    # A torn last record (a process killed mid-write) is ignored, the rest is kept.
    path = tmp_path / CERT_CACHE_FILE
    path.write_bytes(path.read_bytes() + b"\x01" * 30)
    third = FactoryCa.load_or_create(tmp_path)
    assert third.device_certificate("dev-a", key_a) == issued
    fresh = third.device_certificate("dev-c", key_a)
    assert FactoryCa.load_or_create(tmp_path).device_certificate("dev-c", key_a) == fresh, (
        "appends stay readable"
    )
    # An explicit end of validity (tests of expired certificates) is never served from the cache.
    import datetime as dt

    expired = third.device_certificate(
        "dev-a", key_a, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    )
    assert expired != issued


def test_prepared_certificates_are_the_ones_the_run_uses(tmp_path: Path) -> None:
    """prepare_certificates (the bench calls it before its clock starts) issues exactly the
    certificates a run of the same fleet then finds in the cache."""
    from device_sim.fleet import fleet_keys, prepare_certificates
    from device_sim.provisioning import CERT_CACHE_FILE, FactoryCa

    factory = FactoryCa.load_or_create(tmp_path)
    options = FleetOptions(
        server="coaps://127.0.0.1:9", devices=5, first_index=3, key_pool=2, factory=factory,
        key_cache=tmp_path, endpoint_prefix="prep",
    )  # fmt: skip
    prepare_certificates(options)
    size = (tmp_path / CERT_CACHE_FILE).stat().st_size
    later = FactoryCa.load_or_create(tmp_path)  # the run, in another process
    keys = fleet_keys(options)
    for index in range(3, 8):
        certificate = later.device_certificate(f"prep-{index:07d}", keys.key_for(index).public_key())
        assert certificate.public_key() == keys.key_for(index).public_key()
    assert (tmp_path / CERT_CACHE_FILE).stat().st_size == size, "nothing was issued twice"
    prepare_certificates(FleetOptions(**{**options.__dict__, "psk": True, "endpoint_prefix": "psk"}))
    assert (tmp_path / CERT_CACHE_FILE).stat().st_size == size, "PSK devices need no certificate"


def test_key_pool_without_cache_stays_in_memory(tmp_path: Path) -> None:
    pool = KeyPool(2)
    assert (len(pool), pool.generated, pool.loaded) == (2, 2, 0)
    assert pool.key_for(2) is pool.key_for(0)
    with pytest.raises(ValueError):
        KeyPool(0)


# --- plotting --------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path: Path) -> None:
    report = make_report(0.0, [10.0, 12.0, 50.0], [0.1, 1.2, 1.3], elapsed_s=1.5, offered_rate=2.0)
    report.timeline.append(Completion(1.4, 0.0, False))
    path = tmp_path / "run.png"
    plot_timeline(report, path)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_without_matplotlib_plot_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from device_sim.__main__ import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotUnavailable, match="pip install"):
        ensure_plotting()
    code = main(["--server", "coap://127.0.0.1:9", "--plot", str(tmp_path / "x.png")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and "matplotlib" in error
    assert not (tmp_path / "x.png").exists()


# --- against the session server --------------------------------------------------------------------


async def test_open_loop_sheds_at_the_concurrency_cap(server_uri: str, unique: str) -> None:
    """Arrivals far faster than one device in flight can finish: all but the first few are shed."""
    options = FleetOptions(
        server=server_uri,
        devices=30,
        concurrency=1,
        rate=100_000.0,
        arrival="fixed",
        endpoint_prefix=f"shed-{unique}",
        progress=False,
    )
    report = await run_fleet(options)
    assert report.succeeded + report.failed == 30
    assert set(report.failures) == {SHED_REASON}
    assert report.succeeded >= 1 and report.failures[SHED_REASON] >= 20
    assert report.arrivals == report.succeeded
    assert len(report.timeline) == 30 and report.offered_rate == 100_000.0
    assert report.simulator_cpu_s is not None and report.simulator_cpu_s > 0


async def test_a_fleet_settles_the_garbage_collector_before_its_clock_starts(
    server_uri: str, unique: str
) -> None:
    """A fleet tunes the collector as serve does once it is set up (the defaults cost the
    simulator about 7% of its CPU); the test puts the defaults back for the tests after it."""
    import gc

    threshold = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    seen: list[tuple[int, int, int]] = []

    async def ready() -> None:
        seen.append(gc.get_threshold())

    try:
        options = FleetOptions(server=server_uri, devices=2, endpoint_prefix=f"gc-{unique}", progress=False)
        report = await run_fleet(options, hooks=FleetHooks(ready=ready))
        assert report.succeeded == 2
        assert seen == [(5000, 20, 20)] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_device_sim_two_processes_open_loop_with_plot_and_json(server_uri: str, tmp_path: Path) -> None:
    """python -m device_sim --processes 2 --rate 50: one merged report, a timeline, a PNG."""
    report_path, plot_path = tmp_path / "sim.json", tmp_path / "sim.png"
    # The server runs in this test's event loop, so the simulator must not block it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "--server",
        server_uri,
        "--flow",
        "est",
        "--processes",
        "2",
        "--rate",
        "50",
        "--devices",
        "40",
        "--seed",
        "1",
        "--endpoint-prefix",
        f"scale-{os.getpid()}",
        "--factory-dir",
        str(tmp_path / "factory"),
        "--plot",
        str(plot_path),
        "--json",
        str(report_path),
        "--json-timeline",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, output.decode()
    data = json.loads(report_path.read_text())
    assert ORIGINAL_KEYS <= data.keys()
    assert data["succeeded"] == 40 and data["failed"] == 0
    assert data["processes"] == 2 and data["offered_rate"] == 50.0
    assert data["achieved_rate"] > 0 and data["arrival_lag_p99_ms"] is not None
    completions = data["timeline"]["completions"]
    assert len(completions) == 40 and all(ok for _, _, ok in completions)
    assert [c[0] for c in completions] == sorted(c[0] for c in completions)
    assert sum(b["succeeded"] for b in data["timeline"]["buckets"]) == 40
    assert plot_path.read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "factory" / CACHE_FILE).exists()
    text = output.decode()
    assert "offered rate" in text and "processes" in text
