"""The saturation sampler, its stored samples and the harness-bound verdict, without brokers:
real processes for the sampler, synthetic samples and progress lines for the rules."""

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest

from harness.collectors.saturation import (
    CPU_PERCENT,
    RSS_BYTES,
    SATURATION_SCHEMA,
    Sample,
    SaturationSampler,
    StoredSamples,
    Watched,
    WatchedService,
    read_samples,
)
from harness.run.figures import Window
from harness.run.harness_bound import THRESHOLDS
from harness.run.saturation import saturation_section

S = 1_000_000_000
T0 = 1_700_000_000 * S


# --- the sampler on real processes ---------------------------------------------------------


BURN = """
import sys, time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
time.sleep(60)
"""


def test_a_load_process_counts_from_its_start_and_one_running_before_is_primed() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "burnt\n"
        watched: list[Watched] = []
        sampler = SaturationSampler(None, processes=lambda: watched, interval=1e-9)
        first = sampler.sample_once()  # only primes the CPU: memory only, the orchestrator's
        assert [(row.subject, row.metric) for row in first] == [("orchestrator", RSS_BYTES)]
        watched += [
            Watched("consumer-0", "consumer", child.pid),
            Watched("broker:x", "broker", child.pid, started_during_run=False),
        ]
        time.sleep(0.1)  # the machine's CPU times advance in 10 ms ticks
        sampled = sampler.sample_once()
        rows = {row.subject: row for row in sampled if row.metric == CPU_PERCENT}
        assert {"machine", "orchestrator", "consumer-0", "sampler"} <= set(rows)
        assert "broker:x" not in rows  # primed
        # Memory is a value at the sample, not over an interval: read from the first one, for
        # every process (the sampler runs inside the orchestrator: not twice).
        memory = {row.subject: row for row in sampled if row.metric == RSS_BYTES}
        assert set(memory) == {"orchestrator", "consumer-0", "broker:x"}
        assert memory["consumer-0"].pid == child.pid and memory["consumer-0"].role == "consumer"
        assert memory["consumer-0"].value == psutil.Process(child.pid).memory_info().rss
        assert 5e6 < memory["orchestrator"].value < 1e11
        time.sleep(0.1)
        later = {row.subject: row for row in sampler.sample_once() if row.metric == CPU_PERCENT}
        assert rows["consumer-0"].role == "consumer"
        assert rows["consumer-0"].pid == child.pid

        def cpu_seconds(row: Sample) -> float:
            return row.value / 100 * row.interval_ns / S

        assert (
            cpu_seconds(rows["consumer-0"]) >= 0.28
        )  # its start-up (0.3 s, in 10 ms ticks), all here
        assert cpu_seconds(later["broker:x"]) < 0.1  # counted from its first sample: it sleeps
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_is_dropped_without_error() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: its pid names nothing now
    sampler = SaturationSampler(
        None, processes=lambda: [Watched("producer-0", "producer", child.pid)], interval=1e-9
    )
    sampler.sample_once()
    rows = sampler.sample_once()
    assert "producer-0" not in {row.subject for row in rows}
    assert "orchestrator" in {row.subject for row in rows}


def test_the_sampler_thread_writes_its_samples_when_stopped(tmp_path: Path) -> None:
    sampler = SaturationSampler(tmp_path, notes=["broker 'x' is external"], interval=0.05)
    sampler.start()
    deadline = time.monotonic() + 60
    while len({row.time_ns for row in sampler.samples}) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    stored = read_samples(tmp_path / "saturation.parquet")
    assert stored.table.schema.equals(SATURATION_SCHEMA)
    assert stored.table.num_rows == len(sampler.samples)
    assert stored.notes == ["broker 'x' is external"]
    assert stored.cpu_count >= 1
    assert stored.interval_s == 0.05
    assert not list(tmp_path.glob(".saturation.parquet.*"))  # written atomically
    assert all(row.value >= 0 for row in sampler.samples)


def test_a_service_is_followed_through_its_pid_file_and_its_restarts(tmp_path: Path) -> None:
    from harness.stack import processes

    service = tmp_path / "kafka"
    service.mkdir()
    missing = WatchedService("proxy:toxiproxy", "proxy", tmp_path / "toxiproxy")
    sampler = SaturationSampler(
        None, services=[WatchedService("broker:kafka", "broker", service), missing], interval=1e-9
    )
    try:
        first = processes.start(service, [sys.executable, "-c", "import time; time.sleep(60)"])
        sampler.sample_once()
        time.sleep(0.1)
        rows = [
            row
            for row in sampler.sample_once()
            if row.subject == "broker:kafka" and row.metric == CPU_PERCENT
        ]
        assert [(row.role, row.pid) for row in rows] == [("broker", first.pid)]
        processes.stop(service)
        second = processes.start(service, [sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(0.1)
        rows = [
            row
            for row in sampler.sample_once()
            if row.subject == "broker:kafka" and row.metric == CPU_PERCENT
        ]
        # a new pid in the file is a restart: counted from its start, so a value at once
        # (a process seen for the first time otherwise only primes)
        assert [row.pid for row in rows] == [second.pid]
    finally:
        processes.stop(service)
    assert sampler.all_notes() == ["proxy:toxiproxy: no running process found: not sampled"]


# --- progress lines --------------------------------------------------------------------------


def test_progress_lines_fold_per_second_and_absent_or_bad_fields_are_ignored() -> None:
    sampler = SaturationSampler(None, interval=1e-9)
    sampler.sample_once()
    sampler.on_line("producer-0", {"kind": "progress", "sent": 10})  # an older producer
    sampler.on_line("producer-0", {"late_ms_max": 12.0, "late_ms_p99": 3.0, "not_sent": 0})
    sampler.on_line("producer-0", {"late_ms_max": 8.0, "late_ms_p99": 5.5, "not_sent": 7})
    sampler.on_line("producer-1", {"late_ms_p99": "soon", "late_ms_max": True, "not_sent": None})
    sampler.on_line("producer-1", {"late_ms_p99": float("nan")})
    sampler.on_line("consumer-1003", {"poll_gap_ms_max": 40, "received": 5})
    rows = {(row.subject, row.metric): row for row in sampler.sample_once()}
    assert rows[("producer-0", "late_ms_max")].value == 12.0
    assert rows[("producer-0", "late_ms_p99")].value == 5.5
    assert rows[("producer-0", "not_sent")].value == 7  # a running count: the latest line's
    assert rows[("producer-0", "late_ms_p99")].role == "producer"
    assert rows[("consumer-1003", "poll_gap_ms_max")].role == "consumer"
    assert not [key for key in rows if key[0] == "producer-1"]
    assert not [row for row in sampler.sample_once() if row.subject.startswith("producer")]


# --- the section and the verdict, from synthetic samples ------------------------------------


def stored(rows: list[Sample], cpu_count: int = 2) -> StoredSamples:
    columns = {name: [getattr(r, name) for r in rows] for name in SATURATION_SCHEMA.names}
    return StoredSamples(pa.table(columns, schema=SATURATION_SCHEMA), cpu_count, 1.0, [])


def seconds(
    values: list[float], subject: str, role: str, metric: str = "cpu_percent"
) -> list[Sample]:
    """One sample a second from T0 + 1 s, the value covering the second before it."""
    return [
        Sample(T0 + (i + 1) * S, S, subject, role, None, metric, value)
        for i, value in enumerate(values)
    ]


QUIET = seconds([30.0] * 10, "machine", "machine") + seconds([5.0] * 10, "producer-0", "producer")
WINDOW = Window(T0 + 2 * S, T0 + 10 * S)
"""Measured: the seconds ending at T0 + 3 .. T0 + 10 s (their middle in the window): 8 seconds."""


def section(rows: list[Sample], e2e_p99_ms: float | None = 10.0) -> dict[str, object]:
    return saturation_section(stored(rows), WINDOW, T0, e2e_p99_ms)


def bound(rows: list[Sample], e2e_p99_ms: float | None = 10.0) -> tuple[bool | None, list[str]]:
    found = section(rows, e2e_p99_ms)["harness_bound"]
    assert isinstance(found, dict)
    return found["value"], found["reasons"]


def test_a_quiet_run_is_not_harness_bound_and_its_summary_covers_the_measured_window() -> None:
    rows = QUIET + seconds([100.0] * 10, "broker:kafka", "broker")
    found = section(rows)
    assert found["harness_bound"] == {"value": False, "reasons": []}
    summary = found["summary"]
    assert isinstance(summary, dict)
    assert summary["seconds"] == 8
    assert summary["machine_cpu_percent"] == {"mean": 30.0, "max": 30.0}
    assert summary["roles"]["producer"] == {
        "processes": 1, "mean_cpu_percent": 5.0, "max_cpu_percent": 5.0, "cpu_seconds": 0.4,
    }  # fmt: skip
    assert summary["roles"]["broker"]["cpu_seconds"] == 8.0
    assert summary["harness_cpu_seconds"] == 0.4  # the broker is not the harness
    series = found["series"]
    assert isinstance(series, dict)
    assert series["t"] == [float(i) for i in range(1, 11)]
    assert series["cpu_percent"]["producer"] == [5.0] * 10
    assert found["thresholds"] == THRESHOLDS.to_dict()


def test_a_saturated_machine_for_a_quarter_of_the_measured_seconds_is_harness_bound() -> None:
    two_of_eight = [30.0, 30.0, 95.0, 90.0] + [30.0] * 6  # seconds 3 and 4 are measured
    value, reasons = bound(seconds(two_of_eight, "machine", "machine"))
    assert value is True
    assert reasons[0].startswith("machine CPU >= 90% in 2 of 8 measured seconds (25%) >= 25%")
    one_of_eight = [30.0, 30.0, 95.0] + [30.0] * 7
    assert bound(seconds(one_of_eight, "machine", "machine")) == (False, [])
    during_warmup = [99.0, 99.0] + [30.0] * 8
    assert bound(seconds(during_warmup, "machine", "machine")) == (False, [])


def test_a_harness_process_at_a_full_core_is_harness_bound_but_a_busy_broker_is_not() -> None:
    producer = [5.0, 5.0, 97.0, 99.0, 100.0] + [5.0] * 5
    value, reasons = bound(QUIET[:10] + seconds(producer, "producer-0", "producer"))
    assert value is True
    assert reasons == [
        "producer-0 at >= 95% of a core in 3 of 8 measured seconds (38%) >= 25% (max 100%): "
        "it could not go faster"
    ]
    broker = seconds([190.0] * 10, "broker:kafka", "broker")
    proxy = seconds([120.0] * 10, "proxy:toxiproxy", "proxy")
    assert bound(QUIET + broker + proxy) == (False, [])


def test_a_replaced_consumer_counts_in_its_role() -> None:
    rows = QUIET + seconds([10.0] * 5, "consumer-0", "consumer")
    rows += [
        s._replace(time_ns=s.time_ns + 5 * S)
        for s in seconds([20.0] * 5, "consumer-1000", "consumer")
    ]
    found = section(rows)
    summary = found["summary"]
    assert isinstance(summary, dict)
    assert summary["roles"]["consumer"]["processes"] == 2
    assert summary["roles"]["consumer"]["cpu_seconds"] == pytest.approx(0.1 * 3 + 0.2 * 5)


def test_producer_lateness_is_judged_against_the_floor_and_the_e2e_p99() -> None:
    late = [1.0, 1.0, 30.0, 30.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # 2 of 8 measured seconds
    rows = QUIET + seconds(late, "producer-0", "producer", "late_ms_p99")
    value, reasons = bound(rows, e2e_p99_ms=10.0)
    assert value is True
    assert reasons == [
        "producer lateness p99 > 20.0 ms (max(20 ms, 10% of e2e p99 10.0 ms)) in 2 of 8 "
        "measured seconds (25%) >= 25% (worst 30.0 ms): the schedule ran late"
    ]
    assert bound(rows, e2e_p99_ms=400.0) == (False, [])  # 30 ms of a 400 ms figure
    assert bound(rows, e2e_p99_ms=None)[0] is True
    at_the_floor = QUIET + seconds([20.0] * 10, "producer-0", "producer", "late_ms_p99")
    assert bound(at_the_floor) == (False, [])
    assert "producers reported no lateness" in section(QUIET)["notes"][0]  # type: ignore[index]


def test_a_single_late_second_is_noise_even_in_a_short_window() -> None:
    two_seconds = Window(T0 + 2 * S, T0 + 4 * S)  # the seconds ending at T0 + 3 and + 4 s

    def short_bound(late: list[float]) -> object:
        rows = QUIET + seconds(late, "producer-0", "producer", "late_ms_p99")
        found = saturation_section(stored(rows), two_seconds, T0, 10.0)["harness_bound"]
        assert isinstance(found, dict)
        return found["value"]

    assert short_bound([1.0, 1.0, 30.0, 1.0]) is False
    assert short_bound([1.0, 1.0, 30.0, 30.0]) is True


def test_any_message_not_sent_is_harness_bound() -> None:
    rows = [*QUIET, Sample(T0 + 12 * S, S, "producer-0", "producer", None, "not_sent", 1500.0)]
    rows += [Sample(T0 + 12 * S, S, "producer-1", "producer", None, "not_sent", 0.0)]
    value, reasons = bound(rows)
    assert value is True
    assert reasons == [
        "the harness fell behind its schedule: 1500 message(s) not sent before the run's end "
        "(not_sent > 0)"
    ]
    summary = section(rows)["summary"]
    assert isinstance(summary, dict)
    assert summary["not_sent"] == 1500


def test_no_measured_second_is_unknown() -> None:
    assert bound([]) == (None, [])
    found = section(seconds([99.0], "machine", "machine"))  # only during the warm-up
    assert found["harness_bound"] == {"value": None, "reasons": []}


def test_what_a_run_watches_depends_on_where_the_broker_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.run.saturation import watched_services
    from harness.settings import load_settings

    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    settings = load_settings()
    services, notes = watched_services("kafka", "all", settings)
    assert [(s.subject, s.role, s.directory) for s in services] == [
        ("broker:kafka", "broker", tmp_path / "state" / "kafka"),
        ("proxy:toxiproxy", "proxy", tmp_path / "state" / "toxiproxy"),
    ]
    assert notes == []
    assert [s.subject for s in watched_services("moto", "none", settings)[0]] == ["broker:moto"]
    assert watched_services("my-cluster", "none", settings) == (
        [],
        ["broker 'my-cluster' is an external target: no local process, not sampled"],
    )
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "provider.json").write_text('{"provider": "containers"}')
    services, notes = watched_services("kafka", "all", settings)
    assert services == [] and "containers" in notes[0]


def test_the_kept_samples_are_compact_columns_that_give_the_rows_back() -> None:
    """An hour of samples must not be the orchestrator's own memory growth: about 40 bytes a
    row, not a tuple of Python objects each."""
    import tracemalloc

    from harness.collectors.saturation import _SampleColumns

    rows = [
        Sample(T0 + i * S, S, f"producer-{i % 4}", "producer", None if i % 3 else i, metric, i / 3)
        for i in range(20_000)
        for metric in ("cpu_percent", "rss_bytes")
    ]
    tracemalloc.start()
    try:
        columns = _SampleColumns()
        columns.extend(rows)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert columns.rows() == rows
    assert kept / len(rows) < 60


def test_each_samples_memory_is_shown_live_and_a_process_gone_is_dropped(tmp_path: Path) -> None:
    from harness.collectors.live import LiveMetrics
    from harness.run.children import Children
    from harness.run.saturation import sampler_for_run
    from harness.settings import Settings

    metrics = LiveMetrics("00000000000000aa", "kafka-external", "w")
    children = Children(tmp_path)
    settings = Settings.model_validate({"targets": {"kafka-external": {"driver": "kafka"}}})
    sampler = sampler_for_run(
        tmp_path, children, "kafka-external", "none", settings, metrics=metrics
    )
    labels = {"run_id": "00000000000000aa", "broker": "kafka-external", "workload": "w"}

    def shown(process: str, role: str) -> float | None:
        value: float | None = metrics.registry.get_sample_value(
            "brokerbench_process_resident_bytes", {**labels, "process": process, "role": role}
        )
        return value

    sampler.sample_once()
    assert (shown("orchestrator", "orchestrator") or 0) > 5e6  # this process, read just now
    metrics.set_resident_memory([("consumer-0", "consumer", 1e8)])  # a later sample without it
    assert shown("orchestrator", "orchestrator") is None
    assert shown("consumer-0", "consumer") == 1e8


def test_a_process_that_exited_but_is_not_reaped_has_no_memory_sample() -> None:
    """A zombie reads 0 bytes resident: not its memory, the end of it (CI saw a producer's
    last memory sample at 0)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30  # a bound for a stuck start, not a measurement
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sampler = SaturationSampler(
            None, processes=lambda: [Watched("producer-0", "producer", child.pid)], interval=1e-9
        )
        rows = sampler.sample_once()
        assert ("producer-0", RSS_BYTES) not in {(row.subject, row.metric) for row in rows}
        assert ("orchestrator", RSS_BYTES) in {(row.subject, row.metric) for row in rows}
    finally:
        child.wait()
