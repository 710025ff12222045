"""Performance figures from a run's history: throughput and the latency histograms.

Computed after the run from the recorded history (exactly, every message counted), over the
measured window, from the end of the warm-up to the end of the schedule: latencies of the
messages *intended* in it, throughput of what *happened* in it.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from harness.collectors.latency import LatencyKind, LatencyRecorder
from harness.collectors.summary import latency_summaries
from harness.collectors.throughput import NS_PER_S, series_from_ns
from harness.history.schema import EventKind, SendOutcome
from harness.history.store import History

IDENTITY = ["producer_id", "key_id", "seq"]


@dataclass(frozen=True)
class Window:
    start_ns: int
    """End of the warm-up."""
    end_ns: int
    """End of the schedule (start of the drain)."""

    def mask(self, table: pa.Table) -> pa.ChunkedArray:
        intended = table["intended_ns"]
        return pc.and_(pc.greater_equal(intended, self.start_ns), pc.less(intended, self.end_ns))


def _ns(column: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def latency_figures(history: History, window: Window) -> dict[str, Any]:
    """Publish latency (uncorrected and corrected), publish delay, end-to-end corrected and
    uncorrected, as summaries."""
    sends = history.sends.filter(window.mask(history.sends))
    ok = sends.filter(pc.equal(sends["outcome"], int(SendOutcome.OK)))
    receives = history.receives.filter(window.mask(history.receives))
    recorder = LatencyRecorder()
    recorder.record_many(LatencyKind.PUBLISH, _ns(ok["complete_ns"]) - _ns(ok["invoke_ns"]))
    recorder.record_many(
        LatencyKind.PUBLISH_CORRECTED, _ns(ok["complete_ns"]) - _ns(ok["intended_ns"])
    )
    recorder.record_many(
        LatencyKind.PUBLISH_DELAY, _ns(sends["invoke_ns"]) - _ns(sends["intended_ns"])
    )
    recorder.record_many(
        LatencyKind.E2E, _ns(receives["receive_ns"]) - _ns(receives["intended_ns"])
    )
    joined = receives.select([*IDENTITY, "receive_ns"]).join(
        sends.select([*IDENTITY, "invoke_ns"]), keys=IDENTITY, join_type="inner"
    )
    recorder.record_many(
        LatencyKind.E2E_UNCORRECTED, _ns(joined["receive_ns"]) - _ns(joined["invoke_ns"])
    )
    return {kind: summary.to_dict() for kind, summary in latency_summaries(recorder).items()}


def throughput_figures(history: History, window: Window, message_size: int) -> dict[str, Any]:
    """Messages and MB per second: sends acknowledged, and deliveries, per whole second of the
    window by the time they happened (not by intended time: under overload, messages meant for
    the warm-up are acknowledged inside the window and count there)."""
    ok = history.sends.filter(pc.equal(history.sends["outcome"], int(SendOutcome.OK)))
    sent = series_from_ns(_ns(ok["complete_ns"]), message_size)
    received = series_from_ns(_ns(history.receives["receive_ns"]), message_size)
    return {
        "sent": sent.summary(start_ns=window.start_ns, end_ns=window.end_ns).to_dict(),
        "received": received.summary(start_ns=window.start_ns, end_ns=window.end_ns).to_dict(),
    }


def not_sent(events: pa.Table) -> int:
    """Messages of the schedule never sent: the producers reached the run's bound first."""
    total = 0
    for kind, detail in zip(events["kind"].to_pylist(), events["detail"].to_pylist(), strict=True):
        if kind == EventKind.NOT_SENT and detail:
            total += int(json.loads(detail).get("count", 0))
    return total


def counts(history: History) -> dict[str, int]:
    outcomes = history.sends["outcome"]
    return {
        "sent": history.sends.num_rows,
        "ok": int(pc.sum(pc.equal(outcomes, int(SendOutcome.OK))).as_py() or 0),
        "failed": int(pc.sum(pc.equal(outcomes, int(SendOutcome.FAIL))).as_py() or 0),
        "unknown": int(pc.sum(pc.equal(outcomes, int(SendOutcome.UNKNOWN))).as_py() or 0),
        "received": history.receives.num_rows,
        "not_sent": not_sent(history.events),
    }


def _per_second(seconds: np.ndarray[Any, Any], length: int) -> list[int]:
    inside = seconds[(seconds >= 0) & (seconds < length)]
    return [int(n) for n in np.bincount(inside, minlength=length)]


def _percentile_per_second(
    seconds: np.ndarray[Any, Any], values_ms: np.ndarray[Any, Any], length: int, q: float
) -> list[float | None]:
    """The ``q`` quantile (nearest rank) of ``values_ms`` in each second, None where empty."""
    order = np.lexsort((values_ms, seconds))
    seconds, values_ms = seconds[order], values_ms[order]
    starts = np.searchsorted(seconds, np.arange(length), side="left")
    ends = np.searchsorted(seconds, np.arange(length), side="right")
    found: list[float | None] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        found.append(
            None if end == start else round(float(values_ms[start + int(q * (end - start - 1))]), 3)
        )
    return found


def time_series(history: History) -> dict[str, Any]:
    """Per-second series over the whole run, for charts: ``t`` is seconds since ``origin_ns``
    (the first intended send), ``sent`` acknowledged sends and ``received`` deliveries per
    second by when they happened, ``e2e_p50_ms`` / ``e2e_p99_ms`` of the deliveries in that
    second (null where none)."""
    intended = _ns(history.sends["intended_ns"])
    if intended.size == 0:
        return {"origin_ns": None, "t": [], "sent": [], "received": [],
                "e2e_p50_ms": [], "e2e_p99_ms": []}  # fmt: skip
    origin = int(intended.min())
    ok = history.sends.filter(pc.equal(history.sends["outcome"], int(SendOutcome.OK)))
    acked = (_ns(ok["complete_ns"]) - origin) // NS_PER_S
    received_ns = _ns(history.receives["receive_ns"])
    received = (received_ns - origin) // NS_PER_S
    last = max(int(acked.max(initial=0)), int(received.max(initial=0)))
    length = last + 1
    e2e_ms = (received_ns - _ns(history.receives["intended_ns"])) / 1e6
    return {
        "origin_ns": origin,
        "t": list(range(length)),
        "sent": _per_second(acked, length),
        "received": _per_second(received, length),
        "e2e_p50_ms": _percentile_per_second(received, e2e_ms, length, 0.5),
        "e2e_p99_ms": _percentile_per_second(received, e2e_ms, length, 0.99),
    }
