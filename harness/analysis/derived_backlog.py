"""``derive_backlog`` range by range, for brokers with no lag metric.

The backlog's bins start at the run's first acknowledged send or first consumption, which only
the last range may reveal; so each range's two time arrays are spilled to a temporary folder
(16 bytes per message on disk) and binned once the pass is over.
"""

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers import HistoryIndex
from harness.checkers.backlog import NANOSECONDS_PER_SECOND
from harness.checkers.columns import LAG_SCHEMA, Disposition, Outcome
from harness.checkers.index import I64, column, run_starts, sorted_member


class DerivedBacklog:
    """Feed it every range's index (``add``), then take the lag table (``table``)."""

    def __init__(self, interval_ns: int = NANOSECONDS_PER_SECOND) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns}")
        self.interval = interval_ns
        self._folder = tempfile.TemporaryDirectory(prefix="brokerbench-backlog-")
        self._parts = 0
        self.start = np.iinfo(np.int64).max
        self.end = np.iinfo(np.int64).min

    def add(self, history: HistoryIndex) -> None:
        """The range's acknowledged sends (by ``complete_ns``) and first acked deliveries of
        them (by ``receive_ns``), as ``derive_backlog`` takes them."""
        complete = column(history.sends, "complete_ns", np.int64)
        entered = complete[(history.send_outcome == Outcome.OK) & (complete >= 0)]
        acked = column(history.receives, "disposition", np.uint8, 255) == Disposition.ACKED
        # The acked receives in identity order: the checkers' sort, filtered (no sort again).
        rows = history.receive_order[acked[history.receive_order]]
        codes = history.identities.receives[rows]
        time = history.receive_time[rows]
        starts = run_starts(codes)
        first_acked = np.minimum.reduceat(time, starts) if starts.size else time[:0]
        ok_keys = history.send_keys[history.send_key_outcome == Outcome.OK]
        consumed = first_acked[sorted_member(codes[starts], ok_keys)]
        for times in (entered, consumed):
            if times.size:
                self.start = min(self.start, int(times.min()))
                self.end = max(self.end, int(times.max()))
        np.save(self._path(self._parts, "entered"), entered)
        np.save(self._path(self._parts, "consumed"), consumed)
        self._parts += 1

    def _path(self, part: int, name: str) -> Path:
        return Path(self._folder.name) / f"{part}-{name}.npy"

    def _binned(self, name: str, bins: int) -> I64:
        total = np.zeros(bins, dtype=np.int64)
        for part in range(self._parts):
            times: I64 = np.load(self._path(part, name))
            total += np.bincount((times - self.start) // self.interval, minlength=bins)
        return total

    def table(self) -> pa.Table:
        """The backlog every interval, as ``derive_backlog`` gives it; removes the spill."""
        try:
            if self.start > self.end:
                return LAG_SCHEMA.empty_table()
            bins = (self.end - self.start) // self.interval + 1
            sent = np.cumsum(self._binned("entered", bins))
            done = np.cumsum(self._binned("consumed", bins))
            backlog = np.maximum(sent - done, 0).astype(np.int64)
            times = self.start + self.interval * np.arange(1, bins + 1, dtype=np.int64)
            return pa.table(
                {
                    "time_ns": times,
                    "backlog": backlog,
                    "source": pa.array(["derived"] * bins, pa.string()),
                    "error": pa.nulls(bins, pa.string()),
                },
                schema=LAG_SCHEMA,
            )
        finally:
            self._folder.cleanup()
