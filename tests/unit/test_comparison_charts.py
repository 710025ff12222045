"""The comparison charts (reports/comparison_charts.py) from hand-made result.json files: the
nines axis, repeats' histograms merged per broker, one trace per broker and latency kind."""

import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.collectors.latency import encode, new_histogram
from reports.comparison_charts import (
    comparisons,
    merged_histogram,
    nines,
    nines_percentiles,
    percentile_curve,
)
from reports.load import find_runs
from reports.matrix import build_matrix

MS = 1000
"""Microseconds, the histograms' unit."""


def hdr(latencies_ms: list[int]) -> str:
    histogram = new_histogram()
    for value in latencies_ms:
        histogram.record_value(value * MS)
    return encode(histogram)


def test_the_nines_axis_puts_each_added_nine_a_decade_further() -> None:
    assert [nines(p) for p in (0, 90, 99, 99.9, 99.99)] == pytest.approx([1, 10, 100, 1000, 10000])
    with pytest.raises(ValueError, match="not in"):
        nines(100)
    levels = nines_percentiles()
    assert levels[0] == 0 and levels[-1] == 99.99
    steps = [math.log10(nines(b)) - math.log10(nines(a)) for a, b in itertools.pairwise(levels)]
    assert steps == pytest.approx([1 / 20] * 80, abs=1e-4)  # evenly spaced, 20 to a decade


def test_repeats_are_merged_into_one_histogram_before_percentiles() -> None:
    odd, even = list(range(1, 101, 2)), list(range(2, 101, 2))  # 1..100 ms, split in two
    merged = merged_histogram([hdr(odd), None, hdr(even), ""])
    assert merged is not None and merged.get_total_count() == 100
    curve = percentile_curve(merged, [0.0, 50.0, 90.0, 99.0, 99.99])
    assert curve == pytest.approx([1, 50, 90, 99, 100], rel=1e-3)
    alone = percentile_curve(merged_histogram([hdr(odd)]) or new_histogram(), [50.0])
    assert alone != pytest.approx([50], rel=1e-3)  # one repeat alone says otherwise
    assert merged_histogram([None, ""]) is None


def write_result(root: Path, broker: str, repeat: int, latency: dict[str, Any]) -> None:
    run_dir = root / broker / "w" / "baseline" / f"r{repeat}"
    run_dir.mkdir(parents=True)
    document = {
        "schema": "brokerbench.result/1", "broker": broker, "repeat": repeat,
        "workload": {"name": "w", "kind": "throughput", "params": {}}, "valid": True,
        "figures": {"latency": latency,
                    "throughput": {"received": {"mean_msgs_per_s": 100.0 * (repeat + 1)}}},
    }  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(document))


def test_one_trace_per_broker_and_kind_and_medians_in_the_bars(tmp_path: Path) -> None:
    for repeat, values in enumerate((list(range(1, 101, 2)), list(range(2, 101, 2)))):
        write_result(tmp_path, "a", repeat, {
            "e2e": {"hdr": hdr(values), "stats": {"p50": 10.0 * (repeat + 1), "p99": 99.0}},
            "e2e_uncorrected": {"hdr": hdr(values)}, "publish": {"hdr": hdr(values)},
            "publish_corrected": {"hdr": hdr(values)},
        })  # fmt: skip
    write_result(tmp_path, "<b>b</b>", 0, {"e2e": {"hdr": hdr([7])}, "publish": {"hdr": hdr([3])}})
    rows = build_matrix(find_runs([tmp_path])).rows
    [found] = comparisons(rows)
    traces = found.percentiles.data
    kinds = Counter((trace.meta["kind"], trace.meta["broker"]) for trace in traces)
    assert kinds == Counter(
        [(kind, "a") for kind in ("e2e", "e2e_uncorrected", "publish_corrected", "publish")]
        + [("e2e", "<b>b</b>"), ("publish", "<b>b</b>")]  # what b's results hold, no more
    )
    e2e_a = next(t for t in traces if t.meta == {"broker": "a", "kind": "e2e"})
    assert e2e_a.y[0] == pytest.approx(1, rel=1e-3) and e2e_a.y[-1] == pytest.approx(100, rel=1e-3)
    assert e2e_a.x[0] == 1 and e2e_a.x[-1] == pytest.approx(10_000)
    assert all("<b>" not in trace.name for trace in traces)  # plotly would draw it as markup
    layout = found.percentiles.layout
    assert layout.xaxis.type == "log"
    assert list(layout.xaxis.ticktext) == ["0%", "90%", "99%", "99.9%", "99.99%"]
    assert list(layout.xaxis.tickvals) == pytest.approx([1, 10, 100, 1000, 10000])
    bars = {trace.meta["column"]: list(trace.y) for trace in found.bars.data}
    assert bars["received msg/s"] == [100.0, 150.0]  # medians over the repeats, b then a
    assert bars["e2e p50 ms"] == [None, 15.0]
