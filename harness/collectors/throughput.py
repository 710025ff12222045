"""Messages and bytes per wall-clock second (bucket = ``time_ns // 10**9``), mergeable.

Keep one series for sends completed ok and one for receives.
"""

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.collectors.summary import ThroughputSummary

NS_PER_S = 1_000_000_000
BYTES_PER_MB = 1_000_000
_MAX_DENSE_SPAN_S = 10_000_000
"""Above this many seconds between the first and last time, bucket sparsely (bogus times)."""


class ThroughputSeries:
    """Counts per second. Thread-safe; ``merge`` adds another process's ``buckets()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, list[int]] = {}

    def record(self, time_ns: int, size: int, count: int = 1) -> None:
        """``count`` messages of ``size`` bytes in total, at ``time_ns``."""
        second = time_ns // NS_PER_S
        with self._lock:
            bucket = self._buckets.get(second)
            if bucket is None:
                self._buckets[second] = [count, size]
            else:
                bucket[0] += count
                bucket[1] += size

    def buckets(self) -> dict[int, tuple[int, int]]:
        """Second -> (messages, bytes), for the seconds that saw any message."""
        with self._lock:
            return {second: (b[0], b[1]) for second, b in sorted(self._buckets.items())}

    def merge(self, other: "ThroughputSeries | Mapping[Any, Sequence[int]]") -> None:
        """Add another series, or its ``buckets()`` (also after a JSON round trip, which turns
        the keys into strings and the pairs into lists)."""
        items = other.buckets() if isinstance(other, ThroughputSeries) else other
        with self._lock:
            for second, (messages, size) in items.items():
                bucket = self._buckets.setdefault(int(second), [0, 0])
                bucket[0] += messages
                bucket[1] += size

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def summary(self, start_ns: int | None = None, end_ns: int | None = None) -> ThroughputSummary:
        """Rates over the whole seconds within ``[start_ns, end_ns)``.

        ``start_ns`` is the end of warm-up; ``end_ns`` the end of the measured load (e.g. drain
        start). A second with no message inside the window counts as zero, so an outage lowers
        the minimum and the mean instead of disappearing. Without ``start_ns`` the window starts
        at the first recorded second; without ``end_ns`` it ends after the last recorded one,
        which is then likely a partial second: pass ``end_ns`` for a run's result.
        """
        buckets = self.buckets()
        first = min(buckets, default=0) if start_ns is None else -(-start_ns // NS_PER_S)
        stop = max(buckets, default=first - 1) + 1 if end_ns is None else end_ns // NS_PER_S
        seconds = max(stop - first, 0)
        if seconds == 0:
            return ThroughputSummary(first, 0, 0, 0, None, None, None, None, None, None)
        counts = np.zeros((seconds, 2), dtype=np.int64)
        for second, (messages, size) in buckets.items():
            if first <= second < stop:
                counts[second - first] = (messages, size)
        msgs = counts[:, 0]
        mb = counts[:, 1] / BYTES_PER_MB
        return ThroughputSummary(
            start_s=first,
            seconds=seconds,
            messages=int(msgs.sum()),
            bytes=int(counts[:, 1].sum()),
            mean_msgs_per_s=float(msgs.mean()),
            min_msgs_per_s=float(msgs.min()),
            max_msgs_per_s=float(msgs.max()),
            mean_mb_per_s=float(mb.mean()),
            min_mb_per_s=float(mb.min()),
            max_mb_per_s=float(mb.max()),
        )


def series_from_ns(times_ns: npt.ArrayLike, sizes: npt.ArrayLike) -> ThroughputSeries:
    """A series from history arrays (no nulls: filter e.g. ``outcome == ok`` first).

    ``sizes`` is one size per time or a single size for all.
    """
    times = np.asarray(times_ns, dtype=np.int64).ravel()
    weights = np.broadcast_to(np.asarray(sizes, dtype=np.float64), times.shape)
    series = ThroughputSeries()
    if times.size == 0:
        return series
    seconds = times // NS_PER_S
    low = int(seconds.min())
    span = int(seconds.max()) - low + 1
    if span <= _MAX_DENSE_SPAN_S:
        keys = np.arange(low, low + span)
        index = seconds - low
    else:
        keys, index = np.unique(seconds, return_inverse=True)
    messages = np.bincount(index, minlength=keys.size)
    # float64 sums of byte counts are exact below 2**53 (9 PB) per second.
    sizes_per_second = np.bincount(index, weights=weights, minlength=keys.size)
    present = np.flatnonzero(messages)
    series.merge(
        {int(keys[i]): (int(messages[i]), int(sizes_per_second[i])) for i in present.tolist()}
    )
    return series
