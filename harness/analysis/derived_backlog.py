"""``derive_backlog`` range by range, for brokers with no lag metric.

The same steps as ``harness.checkers.backlog`` (``backlog_times`` of each range, ``binned``,
``backlog_table``), but the backlog's bins start at the run's first acknowledged send or first
consumption, which only the last range may reveal; so each range's two time arrays are spilled
to a temporary folder (16 bytes per message on disk) and binned once the pass is over.
"""

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers import HistoryIndex
from harness.checkers.backlog import (
    NANOSECONDS_PER_SECOND,
    backlog_table,
    backlog_times,
    binned,
)
from harness.checkers.columns import LAG_SCHEMA
from harness.checkers.index import I64


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
        """The range's ``backlog_times``, spilled until the run's first bin is known."""
        entered, consumed = backlog_times(history)
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
            total += binned(np.load(self._path(part, name)), self.start, self.interval, bins)
        return total

    def table(self) -> pa.Table:
        """The backlog every interval, as ``derive_backlog`` gives it; removes the spill."""
        try:
            if self.start > self.end:
                return LAG_SCHEMA.empty_table()
            bins = (self.end - self.start) // self.interval + 1
            entered, consumed = self._binned("entered", bins), self._binned("consumed", bins)
            return backlog_table(entered, consumed, self.start, self.interval)
        finally:
            self._folder.cleanup()
