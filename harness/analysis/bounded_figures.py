"""``result.json``'s figures from a history too large to hold: the same numbers as
``harness.run.figures``, accumulated range by range.

Latency histograms (HdrHistograms) add up; throughput buckets and per-second counts add up; the
per-second e2e percentiles of the time series are exact ranks: each range counts its e2e
latencies per second in coarse bins, then ``harness.analysis.exact_ranks`` narrows them down.
"""

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.analysis.exact_ranks import BINS, Passes, bin_of, exact_ranks, in_one_part
from harness.analysis.ranges import IdentityRange
from harness.checkers import HistoryIndex
from harness.checkers.index import Bool, column
from harness.collectors.latency import (
    LatencyKind,
    LatencyRecorder,
    OutOfRange,
    bucket_counts,
    new_histogram,
)
from harness.collectors.summary import latency_summaries
from harness.collectors.throughput import NS_PER_S, ThroughputSeries, series_from_ns
from harness.history.schema import SendOutcome
from harness.run.figures import Window

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
_BIN_COUNT = np.int32
"""A second's receives in one latency bin: fewer than 2**31; half the memory of int64 (the
bins are ``BINS`` counters a second, 3 KB: 61 MB at 20,000 seconds)."""
QUANTILES = (0.5, 0.99)
_LAYOUT = new_histogram()
"""Only read for its bucket layout (every latency histogram has the same)."""


def _receive_minus_send(
    history: HistoryIndex, sent_in: Bool, received_in: Bool, invoke: I64, received_ns: I64
) -> I64:
    """``receive_ns - invoke_ns`` of every pair of a receive (``received_in``) and a send
    (``sent_in``) of one identity: the inner join on identity ``harness.run.figures`` makes,
    as a lookup of the index's identity codes (the same values in another order; the
    histogram does not care)."""
    codes = history.identities.sends[sent_in]
    invoke = invoke[sent_in]
    if codes.size > 1 and bool(np.any(codes[1:] < codes[:-1])):  # ranges come sorted
        order = np.argsort(codes, kind="stable")
        codes, invoke = codes[order], invoke[order]
    wanted = history.identities.receives[received_in]
    received = received_ns[received_in]
    first = np.searchsorted(codes, wanted, "left")
    matches = np.searchsorted(codes, wanted, "right") - first
    if int(matches.max(initial=0)) <= 1:  # each identity sent once: one pair at most
        found = matches == 1
        paired: I64 = received[found] - invoke[first[found]]
        return paired
    # An identity sent more than once pairs each of its receives with each of its sends.
    before = np.repeat(np.cumsum(matches) - matches, matches)
    at = np.repeat(first, matches) + np.arange(int(matches.sum())) - before
    every: I64 = np.repeat(received, matches) - invoke[at]
    return every


def min_intended_ns(sends: Iterable[pa.RecordBatch]) -> int | None:
    """The first intended send of the run (the time series' origin), from batches holding
    ``intended_ns``."""
    found = [pc.min(batch.column("intended_ns")).as_py() for batch in sends if batch.num_rows]
    return min(found) if found else None


class PerSecondCounts:
    """Per second since the time series' origin: the acked and the received messages and the
    received ones' e2e latencies in ``exact_ranks``' coarse bins, grown as later seconds
    appear (at least one second, as ``harness.run.figures.time_series``).

    A long run's bins are mostly empty (``BINS`` counters a second, a few of them used): each
    range adds its latencies where they fall (``np.add.at``; counting them into a dense array
    the run's length took 0.3 s a range at 20,000 seconds) and a worker process hands its
    counts back as the non-empty cells only."""

    def __init__(self) -> None:
        self.seconds = 1
        self.acked = np.zeros(0, dtype=np.int64)
        self.received = np.zeros(0, dtype=np.int64)
        self._bins = np.zeros((0, BINS), dtype=_BIN_COUNT)
        self._sparse: tuple[I64, I32] | None = None
        """After unpickling: the non-empty cells of ``_bins`` (flat) and their counts."""

    def add(self, acked: I64, received: I64, bins: I64) -> None:
        """Count acked messages by second, received ones by second and latency bin."""
        top = max(int(acked.max(initial=-1)), int(received.max(initial=-1)))
        self._reserve(top + 1)
        np.add.at(self.acked, acked, 1)
        np.add.at(self.received, received, 1)
        np.add.at(self._bins.reshape(-1), received * BINS + bins, 1)

    def merge(self, other: "PerSecondCounts") -> None:
        self._reserve(other.seconds)
        size = min(other.seconds, other.acked.size)  # its arrays may have room to spare
        self.acked[:size] += other.acked[:size]
        self.received[:size] += other.received[:size]
        if other._sparse is not None:
            cells, counts = other._sparse
            self._bins.reshape(-1)[cells] += counts
        else:
            self._bins[:size] += other._bins[:size]

    def e2e_bins(self) -> I32:
        """The coarse bins, one row per second."""
        self._reserve(self.seconds)
        return self._bins[: self.seconds]

    def _reserve(self, seconds: int) -> None:
        self.seconds = max(self.seconds, seconds)
        if self._sparse is not None:  # dense again, to be added to
            cells, counts = self._sparse
            self._sparse, self._bins = None, np.zeros((self.seconds, BINS), dtype=_BIN_COUNT)
            self._bins.reshape(-1)[cells] = counts
        capacity = self.acked.size
        if self.seconds <= capacity:
            return
        size = max(self.seconds, capacity + capacity // 8)  # an eighth: a tenth of the copying
        extra = size - capacity
        self.acked = np.concatenate([self.acked, np.zeros(extra, dtype=np.int64)])
        self.received = np.concatenate([self.received, np.zeros(extra, dtype=np.int64)])
        self._bins = np.concatenate([self._bins, np.zeros((extra, BINS), dtype=_BIN_COUNT)])

    def __getstate__(self) -> dict[str, Any]:
        sparse = self._sparse
        if sparse is None:
            flat = self._bins[: self.seconds].reshape(-1)
            cells = np.flatnonzero(flat)
            sparse = (cells, flat[cells])
        return {
            "seconds": self.seconds,
            "acked": self.acked[: self.seconds],
            "received": self.received[: self.seconds],
            "_bins": np.zeros((0, BINS), dtype=_BIN_COUNT),
            "_sparse": sparse,
        }


class FigureAccumulator:
    """``latency_figures``, ``throughput_figures``, ``time_series`` and ``counts`` of
    ``harness.run.figures``, fed one identity range at a time (``add``)."""

    def __init__(self, window: Window, message_size: int, origin_ns: int | None) -> None:
        self.window = window
        self.message_size = message_size
        self.origin = origin_ns
        self._latency_counts: dict[LatencyKind, tuple[I64, OutOfRange]] = {}
        """Per kind, its latencies' bucket counts over the ranges so far: recorded into a
        ``LatencyRecorder`` once, at the end (hdrh's per-bucket calls are Python)."""
        self.sent, self.received = ThroughputSeries(), ThroughputSeries()
        self.outcomes = np.zeros(3, dtype=np.int64)
        self.sends = self.receives = 0
        self.per_second = PerSecondCounts()

    def add(self, part: IdentityRange, history: HistoryIndex) -> None:
        """Add one range (``history``: its index, whose identity codes the e2e latency's
        pairing of sends and receives reuses)."""
        sends, receives = part.sends, part.receives
        self.sends += sends.num_rows
        self.receives += receives.num_rows
        # Numpy columns and masks, no filtered copies of the tables (Arrow's filter copies
        # every column, strings included).
        outcome = column(sends, "outcome", np.int64)
        self.outcomes += np.bincount(outcome, minlength=3)[:3]
        ok = outcome == SendOutcome.OK
        acked_ns = column(sends, "complete_ns", np.int64)[ok]
        received_ns = column(receives, "receive_ns", np.int64)
        received_intended = column(receives, "intended_ns", np.int64)
        self._latencies(history, ok, received_ns, received_intended)
        self.sent.merge(series_from_ns(acked_ns, self.message_size).buckets())
        self.received.merge(series_from_ns(received_ns, self.message_size).buckets())
        if self.origin is not None:
            self._per_second(acked_ns, received_ns, received_intended)

    def merge(self, other: "FigureAccumulator") -> None:
        """Add what ``other`` (same window, size and origin) gathered from other ranges."""
        self.sends += other.sends
        self.receives += other.receives
        self.outcomes += other.outcomes
        self.sent.merge(other.sent)
        self.received.merge(other.received)
        for kind, (bins, out) in other._latency_counts.items():
            self._count_bins(kind, bins.copy(), out)
        self.per_second.merge(other.per_second)

    def __getstate__(self) -> dict[str, Any]:
        # A worker process's share comes back pickled; the series hold a lock.
        state = dict(self.__dict__)
        state["sent"], state["received"] = self.sent.buckets(), self.received.buckets()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        sent, received = ThroughputSeries(), ThroughputSeries()
        sent.merge(state["sent"])
        received.merge(state["received"])
        self.__dict__.update({**state, "sent": sent, "received": received})

    def _latencies(
        self, history: HistoryIndex, ok: Bool, received_ns: I64, received_intended: I64
    ) -> None:
        sends, window = history.sends, self.window
        intended = column(sends, "intended_ns", np.int64)
        invoke = column(sends, "invoke_ns", np.int64)
        complete = column(sends, "complete_ns", np.int64)
        sent_in = (intended >= window.start_ns) & (intended < window.end_ns)
        ok_in = sent_in & ok
        received_in = (received_intended >= window.start_ns) & (received_intended < window.end_ns)
        record = self._count
        record(LatencyKind.PUBLISH, complete[ok_in] - invoke[ok_in])
        record(LatencyKind.PUBLISH_CORRECTED, complete[ok_in] - intended[ok_in])
        record(LatencyKind.PUBLISH_DELAY, invoke[sent_in] - intended[sent_in])
        record(LatencyKind.E2E, received_ns[received_in] - received_intended[received_in])
        record(
            LatencyKind.E2E_UNCORRECTED,
            _receive_minus_send(history, sent_in, received_in, invoke, received_ns),
        )

    def _per_second(self, acked_ns: I64, received_ns: I64, intended_ns: I64) -> None:
        origin = int(self.origin or 0)
        acked = (acked_ns - origin) // NS_PER_S
        received = (received_ns - origin) // NS_PER_S
        inside = received >= 0
        self.per_second.add(
            acked[acked >= 0],
            received[inside],
            bin_of(received_ns[inside] - intended_ns[inside]),
        )

    def _count(self, kind: LatencyKind, latencies_ns: I64) -> None:
        self._count_bins(kind, *bucket_counts(_LAYOUT, latencies_ns))

    def _count_bins(self, kind: LatencyKind, bins: I64, out: OutOfRange) -> None:
        if kind in self._latency_counts:
            total, before = self._latency_counts[kind]
            bins += total
            out = OutOfRange(
                clamped=before["clamped"] + out["clamped"],
                saturated=before["saturated"] + out["saturated"],
            )
        self._latency_counts[kind] = bins, out

    def latency_figures(self) -> dict[str, Any]:
        recorder = LatencyRecorder()
        for kind, (bins, out) in self._latency_counts.items():
            recorder[kind].record_counts(bins, out)
        return {kind: s.to_dict() for kind, s in latency_summaries(recorder).items()}

    def throughput_figures(self) -> dict[str, Any]:
        window = self.window
        return {
            "sent": self.sent.summary(start_ns=window.start_ns, end_ns=window.end_ns).to_dict(),
            "received": self.received.summary(
                start_ns=window.start_ns, end_ns=window.end_ns
            ).to_dict(),
        }

    def counts(self, not_sent: int) -> dict[str, int]:
        return {
            "sent": self.sends,
            "ok": int(self.outcomes[SendOutcome.OK]),
            "failed": int(self.outcomes[SendOutcome.FAIL]),
            "unknown": int(self.outcomes[SendOutcome.UNKNOWN]),
            "received": self.receives,
            "not_sent": not_sent,
        }

    def time_series(self, receive_times: Passes) -> dict[str, Any]:
        """``harness.run.figures.time_series``; ``receive_times`` runs scans over the
        receives' ``receive_ns`` and ``intended_ns`` (only the percentiles need them)."""
        if self.origin is None:
            return {"origin_ns": None, "t": [], "sent": [], "received": [],
                    "e2e_p50_ms": [], "e2e_p99_ms": []}  # fmt: skip
        counts = self.per_second
        percentiles = exact_ranks(counts.e2e_bins(), self.origin, receive_times, QUANTILES)
        return {
            "origin_ns": self.origin,
            "t": list(range(counts.seconds)),
            "sent": counts.acked[: counts.seconds].tolist(),
            "received": counts.received[: counts.seconds].tolist(),
            "e2e_p50_ms": percentiles[0],
            "e2e_p99_ms": percentiles[1],
        }


def receive_time_batches(receives: pa.Table) -> Passes:
    """Passes over an in-memory receives table's two time columns."""
    return in_one_part(lambda: iter(receives.select(["receive_ns", "intended_ns"]).to_batches()))
