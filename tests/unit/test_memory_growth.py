"""``saturation.memory``: each process's resident memory at the end of its first minute, at the
end and at its peak, and its growth after the first minute, judged only for a process sampled
long enough; from synthetic saturation samples (no process, no broker)."""

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.collectors.saturation import RSS_BYTES, SATURATION_SCHEMA, Sample, StoredSamples
from harness.run.figures import Window
from harness.run.result_model import LENIENT, Saturation
from harness.run.saturation import saturation_section

S = 1_000_000_000
T0 = 1_700_000_000 * S
MB = 1_000_000


def rss(
    subject: str, role: str, values: list[float], *, start_s: int = 0, pid: int = 7
) -> list[Sample]:
    """One RSS sample a second from ``T0 + start_s``."""
    return [
        Sample(T0 + (start_s + i) * S, S if start_s + i else 0, subject, role, pid, RSS_BYTES, v)
        for i, v in enumerate(values)
    ]


def cpu(seconds: int) -> list[Sample]:
    return [
        Sample(T0 + i * S, S, "machine", "machine", None, "cpu_percent", 10.0)
        for i in range(1, seconds)
    ]


def memory_of(rows: list[Sample], seconds: int) -> dict[str, Any]:
    columns = {name: [getattr(r, name) for r in rows] for name in SATURATION_SCHEMA.names}
    stored = StoredSamples(pa.table(columns, schema=SATURATION_SCHEMA), 2, 1.0, [])
    section = saturation_section(stored, Window(T0, T0 + seconds * S), T0, 10.0)
    memory: dict[str, Any] = section["memory"]
    # RSS rows are not progress fields: the series keep their keys, the window its verdict.
    assert set(section["series"]) == {
        "origin_ns", "t", "machine_cpu_percent", "cpu_percent",
        "late_ms_p99", "late_ms_max", "poll_gap_ms_max",
    }  # fmt: skip
    return memory


def test_growth_is_measured_from_the_end_of_the_first_minute_to_the_last_sample() -> None:
    # Warms up from 50 to 100 MB in its first minute, then grows to 104 MB: 4 %, not 108 %.
    warm = [50 * MB + i * MB * 50 / 60 for i in range(60)]
    producer = warm + [100 * MB + i * MB * 4 / 240 for i in range(241)]
    leaking = [200 * MB] * 60 + [200 * MB + i * MB for i in range(241)]  # +240 MB: +120 %
    rows = (
        cpu(300)
        + rss("producer-0", "producer", producer)
        + rss("orchestrator", "orchestrator", leaking)
        + rss("broker:kafka", "broker", [1000 * MB] * 61 + [2000 * MB] * 240)
    )

    memory = memory_of(rows, 300)

    assert list(memory["processes"]) == ["orchestrator", "producer-0", "broker:kafka"]
    producer_entry = memory["processes"]["producer-0"]
    assert producer_entry == {
        "role": "producer",
        "pid": 7,
        "samples": 301,
        "sampled_s": 300.0,
        "rss_first_minute_bytes": 100 * MB,
        "rss_end_bytes": 104 * MB,
        "rss_peak_bytes": 104 * MB,
        "growth_percent": 4.0,
        "growth_not_judged": None,
    }
    assert memory["processes"]["orchestrator"]["growth_percent"] == 120.0
    # The broker doubled, but it is the broker's memory: reported, not the harness's.
    assert memory["processes"]["broker:kafka"]["growth_percent"] == 100.0
    assert memory["harness_growth_percent_max"] == 120.0
    assert memory["harness_grew"] == ["orchestrator"]
    assert memory["roles"]["producer"] == {
        "processes": 1,
        "rss_first_minute_bytes": 100 * MB,
        "rss_end_bytes": 104 * MB,
        "rss_peak_bytes": 104 * MB,
        "growth_percent": 4.0,
    }
    assert memory["growth_limit_percent"] == 10.0


def test_a_short_run_reports_its_memory_but_does_not_judge_growth() -> None:
    rows = cpu(15) + rss("producer-0", "producer", [60 * MB, 90 * MB, 80 * MB] + [81 * MB] * 12)

    memory = memory_of(rows, 15)

    entry = memory["processes"]["producer-0"]
    assert entry["rss_first_minute_bytes"] is None
    assert (entry["rss_end_bytes"], entry["rss_peak_bytes"]) == (81 * MB, 90 * MB)
    assert entry["growth_percent"] is None
    assert entry["growth_not_judged"].startswith("sampled for 14 s: growth after the first minute")
    assert memory["harness_growth_percent_max"] is None
    assert memory["harness_grew"] is None


def test_two_minutes_are_judged_and_a_replacement_counts_from_its_own_start() -> None:
    """A replacement consumer started at 100 s has only 50 s of samples: not judged, while
    the one it replaced, sampled 0..120 s, is."""
    rows = (
        cpu(150)
        + rss("consumer-0", "consumer", [10 * MB] * 61 + [12 * MB] * 60)
        + rss("consumer-1000", "consumer", [30 * MB] * 51, start_s=100)
    )
    memory = memory_of(rows, 150)
    assert memory["processes"]["consumer-0"]["growth_percent"] == 20.0
    assert memory["processes"]["consumer-1000"]["growth_percent"] is None
    assert list(memory["processes"]) == ["consumer-0", "consumer-1000"]
    assert memory["roles"]["consumer"]["processes"] == 2
    assert memory["roles"]["consumer"]["growth_percent"] == 20.0
    assert memory["harness_grew"] == ["consumer-0"]


def test_a_restarted_broker_is_summarized_by_its_last_process() -> None:
    rows = cpu(200) + rss("broker:kafka", "broker", [900 * MB] * 50, pid=1)
    rows += rss("broker:kafka", "broker", [300 * MB] * 150, start_s=50, pid=2)
    entry = memory_of(rows, 200)["processes"]["broker:kafka"]
    assert (entry["pid"], entry["samples"], entry["rss_peak_bytes"]) == (2, 150, 300 * MB)
    assert entry["growth_percent"] == 0.0


def test_samples_stored_before_memory_have_no_memory_section() -> None:
    columns = {name: [getattr(r, name) for r in cpu(10)] for name in SATURATION_SCHEMA.names}
    stored = StoredSamples(pa.table(columns, schema=SATURATION_SCHEMA), 2, 1.0, [])
    section = saturation_section(stored, Window(T0, T0 + 10 * S), T0, 10.0)
    assert "memory" not in section
    assert Saturation.model_validate(section).memory is None


def test_the_section_round_trips_through_the_model_and_is_read_leniently() -> None:
    rows = cpu(15) + rss("producer-0", "producer", [60 * MB] * 15)
    columns = {name: [getattr(r, name) for r in rows] for name in SATURATION_SCHEMA.names}
    stored = StoredSamples(pa.table(columns, schema=SATURATION_SCHEMA), 2, 1.0, [])
    section = saturation_section(stored, Window(T0, T0 + 15 * S), T0, 10.0)

    written = Saturation.model_validate(section).document()
    assert written["memory"] == section["memory"]

    damaged = {**written, "memory": {**written["memory"], "harness_grew": "yes"}}
    damaged["memory"]["processes"] = {"producer-0": {"rss_end_bytes": "lots", "samples": 15}}
    read = Saturation.model_validate(damaged, context=LENIENT)
    assert read.memory is not None
    assert read.memory.harness_grew is None
    assert read.memory.processes["producer-0"].rss_end_bytes is None
    assert read.memory.processes["producer-0"].samples == 15
