"""Latency histograms: HdrHistograms in microseconds, mergeable.

Five kinds are kept, all derived from the envelope's ``intended_ns`` and the history's times:

- ``publish``: ``complete_ns - invoke_ns``, how long the broker took to acknowledge a send.
- ``publish_corrected``: ``complete_ns - intended_ns``, the acknowledgement measured from the
  intended send time: ``publish`` free of coordinated omission (``publish + publish_delay`` of
  each message), as wrk2 corrects a response time. It shows a sender's stall, which ``publish``
  hides: a send that waited 2 s for a full client buffer and was then acked in 5 ms is 5 ms of
  ``publish`` and about 2 s of ``publish_corrected``.
- ``publish_delay``: ``invoke_ns - intended_ns``, how late the sender was against its open-loop
  schedule (OpenMessaging Benchmark's "publish delay"). Zero is ideal; values <= 0 (on or
  before schedule) are normal here and land in ``clamped``.
- ``e2e`` (corrected): ``receive_ns - intended_ns``. A consumer can compute it from the
  envelope alone. Because it starts at the *intended* time, a sender that stalls (broker slow,
  client buffer full) shows the stall as latency of every message it should have sent
  meanwhile, instead of silently omitting them: it is free of coordinated omission. This is the
  headline end-to-end number.
- ``e2e_uncorrected``: ``receive_ns - invoke_ns``, what a closed-loop tool would report. The
  envelope does not carry ``invoke_ns``; it is computed where sends and receives are joined by
  identity in the history. For one message, ``e2e = e2e_uncorrected + publish_delay``; a large
  gap between the two means the harness, not only the broker, fell behind.

The figures of a run (harness/run/figures.py) compute every kind after the run from its
history, as numpy arrays of already-subtracted latencies (``record_many``).

Values are nanoseconds in and are stored as microseconds (rounded half to even, 1 us .. 1 h,
3 significant digits). A latency <= 0 (clock skew between hosts, or a send on or before its
schedule) is recorded as 1 us and counted in ``clamped``; one above an hour is recorded as one
hour and counted in ``saturated``. Nothing is dropped: every value adds exactly one count.

Histograms travel (result.json's ``hdr``) as hdrh's compressed base64 (``encode`` /
``decode``): decoded histograms of several runs can be ``add``-ed into one. hdrh's
``get_min_value`` returns 0 once an empty histogram was ``add``-ed to it, which happens here
routinely: use ``get_value_at_percentile(0)`` for the minimum.
"""

import threading
from collections.abc import Iterator
from enum import StrEnum
from typing import TypedDict

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3

PERCENTILE_LEVELS: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
)
"""The keys ``percentiles`` reports besides ``max``, ``mean`` and ``count``."""

_CHUNK = 1 << 20
"""Values per step of the vectorised path: buffers this size are reused instead of allocating
(and page-faulting) several arrays as long as the whole input."""


class LatencyKind(StrEnum):
    PUBLISH = "publish"
    PUBLISH_CORRECTED = "publish_corrected"
    PUBLISH_DELAY = "publish_delay"
    E2E = "e2e"
    E2E_UNCORRECTED = "e2e_uncorrected"


def new_histogram() -> HdrHistogram:
    """An empty histogram of microseconds, 1 us .. 1 h, 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def encode(histogram: HdrHistogram) -> str:
    """hdrh's compressed base64 form (HdrHistogram V2 encoding, readable by other HDR ports)."""
    return str(histogram.encode().decode("ascii"))


def decode(encoded: str) -> HdrHistogram:
    histogram = new_histogram()
    histogram.add(HdrHistogram.decode(encoded))
    return histogram


def percentiles(histogram: HdrHistogram) -> dict[str, float]:
    """p50, p75, p90, p95, p99, p99.9, p99.99, max and mean in milliseconds, plus count.

    Each value is the highest value equivalent to the recorded one at the histogram's
    precision (HdrHistogram's convention). An empty histogram gives NaN for every latency and
    a count of 0.
    """
    count = int(histogram.get_total_count())
    if count == 0:
        result = {name: float("nan") for name, _ in PERCENTILE_LEVELS}
        result.update(max=float("nan"), mean=float("nan"), count=0.0)
        return result
    at = histogram.get_percentile_to_value_dict([level for _, level in PERCENTILE_LEVELS])
    result = {name: at[level] / 1000.0 for name, level in PERCENTILE_LEVELS}
    result["max"] = histogram.get_max_value() / 1000.0
    result["mean"] = mean_value(histogram) / 1000.0
    result["count"] = float(count)
    return result


def mean_value(histogram: HdrHistogram) -> float:
    """``histogram.get_mean_value()`` (each count at its bucket's median equivalent value),
    visiting only the non-empty buckets: hdrh's own walks every bucket up to the maximum in
    Python, about 0.1 s per histogram, four histograms per run and again in every report."""
    total = int(histogram.get_total_count())
    if total == 0:
        return 0.0
    counts = np.ctypeslib.as_array(histogram.counts)
    weighted = 0
    for index in np.flatnonzero(counts).tolist():
        value = histogram.get_value_from_index(index)
        lowest = histogram.get_lowest_equivalent_value(value)
        size = histogram.get_highest_equivalent_value(value) - lowest + 1
        weighted += int(counts[index]) * (lowest + (size >> 1))
    return weighted / total


class OutOfRange(TypedDict):
    clamped: int
    saturated: int


def to_us(latency_ns: int) -> tuple[int, bool, bool]:
    """The microseconds to record for one latency, and whether it was clamped or saturated.

    The rule ``add_ns`` applies to each value, one value at a time (float division, half to
    even): the reference the vectorised path is tested against.
    """
    if latency_ns <= 0:
        return LOWEST_US, True, False
    us = round(latency_ns / 1000)
    if us > HIGHEST_US:
        return HIGHEST_US, False, True
    return max(us, LOWEST_US), False, False


def add_ns(histogram: HdrHistogram, latencies_ns: npt.ArrayLike) -> OutOfRange:
    """Add an array of nanosecond latencies (no nulls) to ``histogram``, vectorised.

    Same result as ``to_us`` + ``record_value`` per value, but numpy computes each value's
    HdrHistogram bucket index and counts them with ``bincount``; hdrh is then called once per
    non-empty bucket (at most ~23,500), so the cost is a few numpy passes over the input.
    """
    bins, out = bucket_counts(histogram, latencies_ns)
    add_bucket_counts(histogram, bins)
    return out


def bucket_counts(
    histogram: HdrHistogram, latencies_ns: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], OutOfRange]:
    """How many of the nanosecond latencies fall in each of ``histogram``'s buckets (by its
    layout; nothing is recorded), and how many were out of range. Counts of many arrays add
    up, to be recorded once (``add_bucket_counts``): what ``add_ns`` does in one go."""
    values = np.asarray(latencies_ns).ravel()
    if values.size and values.dtype.kind not in "iu":
        raise TypeError(f"latencies must be integer nanoseconds, not {values.dtype}")
    # HdrHistogram's bucket layout: a value of bit length b <= `floor_bits` is in bucket 0,
    # else in bucket b - floor_bits; within bucket i the sub-bucket is value >> (i + unit).
    unit = int(histogram.unit_magnitude)
    half_magnitude = int(histogram.sub_bucket_half_count_magnitude)
    half_count = int(histogram.sub_bucket_half_count)
    floor_bits = unit + half_magnitude + 1
    bins = np.zeros(int(histogram.counts_len), dtype=np.int64)
    clamped = saturated = 0
    size = min(values.size, _CHUNK)
    us_float = np.empty(size, dtype=np.float64)
    us_int = np.empty(size, dtype=np.int64)
    bucket = np.empty(size, dtype=np.int64)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        n = chunk.size
        f, u, b = us_float[:n], us_int[:n], bucket[:n]
        clamped += int(np.count_nonzero(chunk <= 0))
        np.divide(chunk, 1000.0, out=f)
        np.rint(f, out=f)
        saturated += int(np.count_nonzero(f > HIGHEST_US))
        np.clip(f, LOWEST_US, HIGHEST_US, out=f)
        # A float64 holding a positive integer < 2**53 has exponent field = bit length + 1022.
        np.right_shift(f.view(np.int64), 52, out=b)
        b -= 1022
        np.maximum(b, floor_bits, out=b)
        b -= floor_bits
        np.copyto(u, f, casting="unsafe")
        u >>= b + unit
        u += (b + 1) << half_magnitude
        u -= half_count
        bins += np.bincount(u, minlength=bins.size)
    return bins, OutOfRange(clamped=clamped, saturated=saturated)


def add_bucket_counts(histogram: HdrHistogram, bins: npt.NDArray[np.int64]) -> None:
    """Record ``bucket_counts``' counts into ``histogram`` (one hdrh call per non-empty
    bucket)."""
    for index in np.flatnonzero(bins).tolist():
        histogram.record_value(histogram.get_value_from_index(index), int(bins[index]))


def histogram_from_ns(latencies_ns: npt.ArrayLike) -> HdrHistogram:
    """A new histogram of nanosecond latencies (e.g. a history column difference).

    Out-of-range values are clamped as everywhere else; count them with ``add_ns`` if needed.
    About 0.06 s for 10 million values (2-vCPU VM, numpy 2.4), against ~8 s for a Python loop.
    """
    histogram = new_histogram()
    add_ns(histogram, latencies_ns)
    return histogram


class LatencyHistogram:
    """One kind of latency: a histogram and its out-of-range counts. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._histogram = new_histogram()
        self._clamped = 0
        self._saturated = 0

    def record_many(self, latencies_ns: npt.ArrayLike) -> None:
        """Record an array of nanosecond latencies, vectorised (see ``add_ns``)."""
        self.record_counts(*bucket_counts(self._histogram, latencies_ns))

    def record_counts(self, bins: npt.NDArray[np.int64], out: OutOfRange) -> None:
        """Record ``bucket_counts``' counts (of one array, or summed over many)."""
        batch = new_histogram()
        add_bucket_counts(batch, bins)
        with self._lock:
            self._histogram.add(batch)
            self._clamped += out["clamped"]
            self._saturated += out["saturated"]

    def cumulative(self) -> HdrHistogram:
        """A copy of everything recorded."""
        result = new_histogram()
        with self._lock:
            result.add(self._histogram)
        return result

    @property
    def clamped(self) -> int:
        """Latencies <= 0 recorded as 1 us."""
        return self._clamped

    @property
    def saturated(self) -> int:
        """Latencies above one hour recorded as one hour."""
        return self._saturated


class LatencyRecorder:
    """The five latency kinds; see the module docstring for their definitions."""

    def __init__(self) -> None:
        self._kinds = {kind: LatencyHistogram() for kind in LatencyKind}

    def __getitem__(self, kind: LatencyKind) -> LatencyHistogram:
        return self._kinds[kind]

    def __iter__(self) -> Iterator[tuple[LatencyKind, LatencyHistogram]]:
        return iter(self._kinds.items())

    def record_many(self, kind: LatencyKind, latencies_ns: npt.ArrayLike) -> None:
        """Record an array of already-subtracted nanosecond latencies (analysis from history)."""
        self._kinds[kind].record_many(latencies_ns)
