"""``derive_backlog`` range by range, for brokers with no lag metric.

The same steps as ``harness.checkers.backlog`` (``backlog_times`` of each range, ``binned``,
``backlog_table``), but the backlog's bins start at the run's first acknowledged send or first
consumption, which only the last range may reveal; so each range's two time arrays are spilled
to a temporary folder (16 bytes per message on disk) and binned once the pass is over.
"""

import tempfile
from pathlib import Path
from typing import Any

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
    """Feed it every range's index (``add``), then take the lag table (``table``).

    ``spill_to``: a folder another ``DerivedBacklog`` owns (a worker process's share, handed
    back pickled and ``merge``d into the owner; ``name`` keeps its files apart); without it
    the backlog spills to a temporary folder of its own, removed by ``table``."""

    def __init__(
        self,
        interval_ns: int = NANOSECONDS_PER_SECOND,
        *,
        spill_to: Path | None = None,
        name: str = "",
    ) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns}")
        self.interval = interval_ns
        self._owned: tempfile.TemporaryDirectory[str] | None = None
        if spill_to is None:
            self._owned = tempfile.TemporaryDirectory(prefix="brokerbench-backlog-")
            spill_to = Path(self._owned.name)
        self.folder = spill_to
        self._name = name
        self._parts: list[tuple[Path, Path]] = []
        self.start = np.iinfo(np.int64).max
        self.end = np.iinfo(np.int64).min

    def add(self, history: HistoryIndex) -> None:
        """The range's ``backlog_times``, spilled until the run's first bin is known."""
        entered, consumed = backlog_times(history)
        for times in (entered, consumed):
            if times.size:
                self.start = min(self.start, int(times.min()))
                self.end = max(self.end, int(times.max()))
        part = self.folder / f"{self._name}{len(self._parts)}"
        paths = (
            part.with_name(part.name + "-entered.npy"),
            part.with_name(part.name + "-consumed.npy"),
        )
        np.save(paths[0], entered)
        np.save(paths[1], consumed)
        self._parts.append(paths)

    def merge(self, other: "DerivedBacklog") -> None:
        """Take over the ranges ``other`` spilled (into this one's folder)."""
        self.start = min(self.start, other.start)
        self.end = max(self.end, other.end)
        self._parts.extend(other._parts)

    def __getstate__(self) -> dict[str, Any]:
        if self._owned is not None:
            raise TypeError("only a DerivedBacklog spilling into another's folder is pickled")
        return dict(self.__dict__)

    def _binned(self, which: int, bins: int) -> I64:
        total = np.zeros(bins, dtype=np.int64)
        for part in self._parts:
            total += binned(np.load(part[which]), self.start, self.interval, bins)
        return total

    def table(self) -> pa.Table:
        """The backlog every interval, as ``derive_backlog`` gives it; removes the spill."""
        try:
            if self.start > self.end:
                return LAG_SCHEMA.empty_table()
            bins = (self.end - self.start) // self.interval + 1
            entered, consumed = self._binned(0, bins), self._binned(1, bins)
            return backlog_table(entered, consumed, self.start, self.interval)
        finally:
            if self._owned is not None:
                self._owned.cleanup()
