"""Collectors without brokers: histograms, throughput series, lag sampler, live metrics."""

import json
import socket
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.collectors import (
    LagSampler,
    LatencyKind,
    LatencyRecorder,
    LatencySummary,
    LiveMetrics,
    ThroughputSeries,
    ThroughputSummary,
    add_ns,
    histogram_from_ns,
    latency_summaries,
    new_histogram,
    percentiles,
    series_from_ns,
)
from harness.collectors.latency import (
    HIGHEST_US,
    LatencyHistogram,
    decode,
    encode,
    mean_value,
    to_us,
)
from harness.errors import UserError
from harness.history.schema import EVENTS, RECEIVES, SENDS, SendOutcome
from harness.history.store import History
from harness.run.figures import Window, latency_figures

MS = 1_000_000
S = 1_000_000_000
T0 = 1_700_000_000 * S
"""A whole second, as a wall clock would give."""


def counts(histogram: Any) -> list[int]:
    """The raw counts: equal counts means equal histograms (hdrh's own ``equals`` also compares
    a min value that its ``add`` tracks wrongly)."""
    return [int(histogram.get_count_at_index(i)) for i in range(histogram.counts_len)]


# --- latency ---------------------------------------------------------------------------------


def test_percentiles_of_a_uniform_distribution() -> None:
    histogram = LatencyHistogram()
    histogram.record_many(np.arange(1, 1001, dtype=np.int64) * MS)
    stats = percentiles(histogram.cumulative())
    assert stats["count"] == 1000
    for key, expected in [("p50", 500), ("p75", 750), ("p90", 900), ("p99", 990), ("max", 1000)]:
        assert stats[key] == pytest.approx(expected, rel=1e-3), key
    assert stats["p99.9"] == pytest.approx(999, rel=1e-3)
    assert stats["mean"] == pytest.approx(500.5, rel=1e-3)
    assert set(stats) == {"p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99", "max", "mean"} | {
        "count"
    }


def test_percentiles_of_an_empty_histogram_are_nan() -> None:
    stats = percentiles(new_histogram())
    assert stats["count"] == 0
    assert all(np.isnan(v) for k, v in stats.items() if k != "count")


def test_merge_of_encoded_histograms_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(1)
    a_values, b_values = rng.integers(-MS, 5 * S, (2, 2000))
    a, b = histogram_from_ns(a_values), histogram_from_ns(b_values)
    both = histogram_from_ns(np.concatenate([a_values, b_values]))

    merged = new_histogram()
    for encoded in (encode(a), json.loads(json.dumps(encode(b)))):
        merged.add(decode(encoded))

    assert counts(merged) == counts(both)
    assert percentiles(merged) == percentiles(both)
    assert counts(decode(encode(a))) == counts(a)


def test_mean_equals_hdrh_own_mean_also_after_decoding_and_adding() -> None:
    rng = np.random.default_rng(7)
    wide = histogram_from_ns(rng.lognormal(15, 2, 50_000).astype(np.int64))
    narrow = histogram_from_ns(rng.integers(1, 5_000, 1_000))
    assert mean_value(wide) == wide.get_mean_value()
    assert mean_value(narrow) == narrow.get_mean_value()
    merged = decode(encode(wide))
    merged.add(decode(encode(narrow)))
    assert mean_value(merged) == merged.get_mean_value()
    assert mean_value(histogram_from_ns(np.array([], dtype=np.int64))) == 0.0


def test_out_of_range_values_are_clamped_and_counted_never_dropped() -> None:
    histogram = LatencyHistogram()
    histogram.record_many(np.array([0, -5 * MS, 400, 3 * MS, 2 * 3600 * S], dtype=np.int64))
    cumulative = histogram.cumulative()
    assert cumulative.get_total_count() == 5
    assert histogram.clamped == 2  # 0 and -5 ms; 400 ns is positive and rounds up to 1 us
    assert histogram.saturated == 1
    assert cumulative.get_count_at_value(1) == 3
    assert cumulative.get_max_value() >= HIGHEST_US


def one_message_history(intended: int, invoke: int, complete: int, receive: int) -> History:
    sends = pa.Table.from_pylist(
        [{"producer_id": 0, "key_id": 0, "seq": 0, "intended_ns": intended, "invoke_ns": invoke,
          "complete_ns": complete, "outcome": SendOutcome.OK, "partition": 0, "offset": 0}],
        schema=SENDS,
    )  # fmt: skip
    receives = pa.Table.from_pylist(
        [{"consumer_id": 0, "producer_id": 0, "key_id": 0, "seq": 0, "intended_ns": intended,
          "receive_ns": receive, "partition": 0, "offset": 0, "message_id": None,
          "delivery_attempt": 1, "disposition": 0, "scope": None}],
        schema=RECEIVES,
    )  # fmt: skip
    return History(sends, receives, EVENTS.empty_table())


def test_publish_delay_and_corrected_versus_uncorrected_publish_and_e2e() -> None:
    intended, invoke, complete, receive = T0, T0 + 40 * MS, T0 + 45 * MS, T0 + 50 * MS
    history = one_message_history(intended, invoke, complete, receive)
    figures = latency_figures(history, Window(T0, T0 + S))
    p50 = {kind: figures[kind]["stats"]["p50"] for kind in LatencyKind}
    assert p50[LatencyKind.PUBLISH] == pytest.approx(5, rel=1e-3)
    assert p50[LatencyKind.PUBLISH_CORRECTED] == pytest.approx(45, rel=1e-3)
    assert p50[LatencyKind.PUBLISH_DELAY] == pytest.approx(40, rel=1e-3)
    assert p50[LatencyKind.E2E] == pytest.approx(50, rel=1e-3)
    assert p50[LatencyKind.E2E_UNCORRECTED] == pytest.approx(10, rel=1e-3)


def test_vectorised_path_equals_the_per_value_path() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate(
        [
            rng.integers(-S, 2 * 3600 * S, 20_000),  # every bucket, and out of range both sides
            rng.integers(0, 5_000, 2_000),  # sub-microsecond and the first buckets
            np.arange(0, 20_000, 500),  # exact half-microseconds: rounding must agree
            np.array([HIGHEST_US * 1000, HIGHEST_US * 1000 + 499, HIGHEST_US * 1000 + 501]),
            (np.arange(1, 40, dtype=np.int64) << np.int64(23)) * 1000,  # powers of two in us
        ]
    ).astype(np.int64)
    per_value = new_histogram()
    clamped = saturated = 0
    for value in values.tolist():
        us, was_clamped, was_saturated = to_us(value)
        per_value.record_value(us)
        clamped += was_clamped
        saturated += was_saturated

    vectorised = new_histogram()
    out = add_ns(vectorised, values)
    assert counts(vectorised) == counts(per_value)
    assert out == {"clamped": clamped, "saturated": saturated}
    assert vectorised.get_max_value() == per_value.get_max_value()
    assert counts(histogram_from_ns(values)) == counts(per_value)

    recorder = LatencyRecorder()
    recorder.record_many(LatencyKind.E2E_UNCORRECTED, values)
    assert recorder[LatencyKind.E2E_UNCORRECTED].clamped == clamped
    assert counts(recorder[LatencyKind.E2E_UNCORRECTED].cumulative()) == counts(per_value)


def test_vectorised_path_handles_empty_and_rejects_floats() -> None:
    assert histogram_from_ns(np.array([], dtype=np.int64)).get_total_count() == 0
    with pytest.raises(TypeError):
        histogram_from_ns(np.array([1.5]))


def test_latency_summary_round_trips_through_json() -> None:
    recorder = LatencyRecorder()
    recorder.record_many(LatencyKind.E2E, np.arange(1, 101, dtype=np.int64) * MS)
    summaries = latency_summaries(recorder)
    e2e = summaries["e2e"]
    assert e2e.count == 100
    assert e2e.stats_ms["p50"] == pytest.approx(50, rel=1e-3)
    assert summaries["publish"].count == 0
    assert summaries["publish"].stats_ms == {}
    again = LatencySummary.from_dict(json.loads(json.dumps(e2e.to_dict())))
    assert again == e2e
    assert percentiles(decode(again.hdr))["p99"] == e2e.stats_ms["p99"]


# --- throughput ------------------------------------------------------------------------------


def test_throughput_buckets_per_second_and_excludes_warm_up() -> None:
    series = ThroughputSeries()
    for i in range(10):  # warm-up second: 10 messages
        series.record(T0 + i * 50 * MS, 100)
    for i in range(20):  # second 1: 20 messages
        series.record(T0 + S + i * 40 * MS, 100)
    # second 2: nothing (an outage); second 3: 30 messages
    series.record(T0 + 3 * S, 3000, count=30)
    assert series.buckets() == {
        T0 // S: (10, 1000),
        T0 // S + 1: (20, 2000),
        T0 // S + 3: (30, 3000),
    }

    summary = series.summary(start_ns=T0 + 600 * MS, end_ns=T0 + 4 * S)
    assert summary.start_s == T0 // S + 1  # the partial warm-up second is excluded
    assert summary.seconds == 3
    assert summary.messages == 50
    assert summary.min_msgs_per_s == 0  # the empty second counts
    assert summary.max_msgs_per_s == 30
    assert summary.mean_msgs_per_s == pytest.approx(50 / 3)
    assert summary.mean_mb_per_s == pytest.approx(5000 / 3 / 1e6)

    everything = series.summary()
    assert everything.seconds == 4
    assert everything.messages == 60
    assert ThroughputSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary
    empty = ThroughputSeries().summary(start_ns=T0, end_ns=T0 + S // 2)
    assert empty.seconds == 0
    assert empty.mean_msgs_per_s is None


def test_throughput_merge_and_vectorised_series() -> None:
    rng = np.random.default_rng(3)
    times = T0 + rng.integers(0, 5 * S, 5000)
    sizes = rng.integers(10, 1000, 5000)
    by_record = ThroughputSeries()
    for t, size in zip(times.tolist(), sizes.tolist(), strict=True):
        by_record.record(t, size)
    assert series_from_ns(times, sizes).buckets() == by_record.buckets()
    assert series_from_ns(times, 64).buckets()[T0 // S][1] == 64 * by_record.buckets()[T0 // S][0]
    assert series_from_ns(np.array([], dtype=np.int64), 1).buckets() == {}

    half = len(times) // 2
    merged = series_from_ns(times[:half], sizes[:half])
    merged.merge(json.loads(json.dumps(series_from_ns(times[half:], sizes[half:]).buckets())))
    assert merged.buckets() == by_record.buckets()


# --- lag -------------------------------------------------------------------------------------


def test_lag_sampler_records_values_and_survives_a_raising_probe() -> None:
    calls = iter([5, None, "boom", 7])

    def probe() -> int | None:
        value = next(calls, 9)
        if value == "boom":
            raise RuntimeError("broker unreachable " + "x" * 500)
        return value if value is None else int(value)

    sampler = LagSampler(probe, interval=0.02, source="derived")
    with sampler:
        deadline = time.monotonic() + 1.0
        while len(sampler.samples) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    samples = sampler.samples
    assert not any(t.name == "lag-sampler" for t in threading.enumerate())
    assert [s.backlog for s in samples[:5]] == [5, None, None, 7, 9]
    assert samples[1].error is None  # the probe answered "unknown"
    assert samples[2].error is not None
    assert samples[2].error.startswith("RuntimeError: broker unreachable")
    assert len(samples[2].error) == 200
    assert all(s.source == "derived" for s in samples)
    assert [s.time_ns for s in samples] == sorted(s.time_ns for s in samples)

    table = sampler.table()
    assert table.schema.field("time_ns").type == pa.int64()
    assert table.schema.field("backlog").type == pa.int64()
    assert table.schema.field("source").type == pa.string()
    assert table.column("backlog").to_pylist()[:5] == [5, None, None, 7, 9]
    assert table.num_rows == len(samples)


def test_lag_sampler_table_is_empty_before_any_sample() -> None:
    sampler = LagSampler(lambda: 0)
    assert sampler.table().num_rows == 0
    sampler.stop()  # never started: a no-op


# --- live ------------------------------------------------------------------------------------


def test_live_metrics_served_on_localhost_and_closed_cleanly() -> None:
    metrics = LiveMetrics(run_id="r1", broker="kafka", workload="tracker")
    other = LiveMetrics(run_id="r2", broker="kafka", workload="tracker")
    assert metrics.registry is not other.registry
    port = metrics.serve(0)
    try:
        assert metrics._server is not None
        assert metrics._server.server_address[0] == "127.0.0.1"
        with pytest.raises(UserError, match="taken"):
            other.serve(port)
        metrics.record_send("ok", 100)
        metrics.record_send("fail", 100)
        metrics.record_receive(0.002)
        metrics.record_receive(-0.001)
        metrics.set_backlog(42)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    base = {"run_id": "r1", "broker": "kafka", "workload": "tracker"}
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted({**base, **labels}.items())))]

    assert value("brokerbench_messages_sent_total", outcome="ok") == 1
    assert value("brokerbench_messages_sent_total", outcome="fail") == 1
    assert value("brokerbench_messages_sent_total", outcome="unknown") == 0
    assert value("brokerbench_bytes_sent_total") == 100
    assert value("brokerbench_messages_received_total") == 2
    assert value("brokerbench_backlog_messages") == 42
    assert value("brokerbench_e2e_latency_seconds_bucket", le="0.0001") == 1  # the clamped one
    assert value("brokerbench_e2e_latency_seconds_bucket", le="0.0025") == 2
    assert value("brokerbench_e2e_latency_seconds_count") == 2
    assert value("brokerbench_e2e_latency_clamped_total") == 1

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    metrics.close()  # idempotent
