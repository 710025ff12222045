"""Exact per-second e2e latency ranks in bounded memory, for the time series' p50 / p99.

``harness.run.figures.time_series`` sorts each second's e2e latencies and takes the one of
nearest rank ``int(q * (n - 1))``. Without holding the latencies: the range pass counts them per
second in coarse, order-preserving bins (``bin_of``, a sixteenth of an octave each); the bin
holding each second's rank is then narrowed by counting passes over the receives' two time
columns (``SUB_BINS`` equal slices of the remaining interval at a time; each pass may be
split over worker processes, its parts' counts added up) until its values are few
enough to gather (``GATHER_BUDGET``) or the interval is one value wide. A concentrated
distribution (many equal latencies) costs passes, never memory.
"""

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.collectors.throughput import NS_PER_S

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Batches = Callable[[], Iterator[pa.RecordBatch]]
Part = TypeVar("Part")


class Passes(Protocol):
    """Runs ``scan`` over every batch of the receives' two time columns, in one part or
    several (each a share of the batches, maybe in a worker process, so ``scan`` must be
    picklable): each part's result, in any order; the caller adds them up."""

    def __call__(self, scan: Callable[[Iterator[pa.RecordBatch]], Part], /) -> list[Part]: ...


PER_OCTAVE = 16
_TOP = 46  # latencies above 2**46 ns (19 hours) share the last bin
BINS = (_TOP + 2) * PER_OCTAVE
"""Coarse bins per second: 0 for latencies <= 0, then ``PER_OCTAVE`` per power of two."""
SUB_BINS = 256
GATHER_BUDGET = 4_000_000
"""Latencies gathered at most (16 bytes each: 64 MB) once the wanted ones are narrowed down.
A 100 M-message history of a real run had 3.5 M in its coarse bins: gathered at once, no
counting pass (each pass reads the receives' two time columns: 3 s there)."""
_HUGE = 1 << 62
_SECONDS_AT_ONCE = 4096


def bin_of(latency_ns: I64) -> I64:
    """An order-preserving coarse bin for each latency (a larger one never gets a smaller
    bin)."""
    clipped = np.clip(latency_ns, 1, 1 << _TOP).astype(np.float64)
    mantissa, exponent = np.frexp(clipped)  # mantissa in [0.5, 1)
    sub = np.minimum(((mantissa - 0.5) * 2 * PER_OCTAVE).astype(np.int64), PER_OCTAVE - 1)
    bins = exponent.astype(np.int64) * PER_OCTAVE + sub
    return np.where(latency_ns <= 0, 0, bins)


def _interval(chosen: I64) -> tuple[I64, I64]:
    """An interval of latencies holding every value of each coarse bin (a little wider)."""
    exponent = (chosen // PER_OCTAVE).astype(np.float64)
    sub = (chosen % PER_OCTAVE).astype(np.float64)
    scale = np.exp2(exponent) / (2 * PER_OCTAVE)
    lo = np.floor((PER_OCTAVE + sub) * scale).astype(np.int64) - 2
    hi = np.ceil((PER_OCTAVE + sub + 1) * scale).astype(np.int64) + 2
    lo = np.where(chosen == 0, -_HUGE, lo)
    hi = np.where(chosen == 0, 0, np.where(chosen >= (_TOP + 1) * PER_OCTAVE, _HUGE, hi))
    return lo, hi


@dataclass
class _Wanted:
    """One quantile's narrowing, per second."""

    chosen: I64
    """The coarse bin holding the rank."""
    within: I64
    """The rank among the values still in play."""
    lo: I64
    hi: I64
    """The values still in play are the coarse bin's within ``[lo, hi]``."""
    members: I64
    """How many values are still in play."""


def _bounds(wanted: _Wanted, open_: Bool) -> tuple[I64, I64]:
    """Per second, the values in play: ``[lo, hi]``, empty (``lo > hi``) for a closed second."""
    return np.where(open_, wanted.lo, 1), np.where(open_, wanted.hi, 0)


def _members(wanted: _Wanted, bounds: tuple[I64, I64], second: I64, latency: I64) -> I64:
    """The rows still in play: within their second's bounds (two lookups a row), then, of
    those few, in its coarse bin (the first interval is a little wider than the bin)."""
    lo, hi = bounds
    near = np.flatnonzero((latency >= lo[second]) & (latency <= hi[second]))
    hit: I64 = near[bin_of(latency[near]) == wanted.chosen[second[near]]]
    return hit


def in_one_part(batches: Batches) -> "Passes":
    """Passes over ``batches`` in this process, as one part."""

    def passes(scan: Callable[[Iterator[pa.RecordBatch]], Part]) -> list[Part]:
        return [scan(batches())]

    return passes


def _times(
    batches: Iterator[pa.RecordBatch], origin: int, seconds: int
) -> Iterator[tuple[I64, I64]]:
    """``(second, latency)`` of every receive in the series' seconds."""
    for batch in batches:
        received = np.asarray(batch.column("receive_ns").to_numpy(), dtype=np.int64)
        intended = np.asarray(batch.column("intended_ns").to_numpy(), dtype=np.int64)
        second = (received - origin) // NS_PER_S
        inside = (second >= 0) & (second < seconds)
        yield second[inside], received[inside] - intended[inside]


def _narrow_counts(  # noqa: PLR0917 - one pass's state, bound with functools.partial
    wanted: list[_Wanted],
    bounds: list[tuple[I64, I64]],
    steps: list[I64],
    slots: list[I64],
    origin: int,
    batches: Iterator[pa.RecordBatch],
) -> list[I64]:
    """One part's counts of a counting pass: per quantile, per open second, per slice."""
    seconds = wanted[0].lo.size
    counts = [np.zeros(int((b[0] <= b[1]).sum()) * SUB_BINS, dtype=np.int64) for b in bounds]
    for second, latency in _times(batches, origin, seconds):
        for w, b, step, slot, count in zip(wanted, bounds, steps, slots, counts, strict=True):
            hit = _members(w, b, second, latency)
            at = second[hit]
            sub = np.minimum((latency[hit] - w.lo[at]) // step[at], SUB_BINS - 1)
            np.add.at(count, slot[at] * SUB_BINS + sub, 1)  # a few hits, a large array
    return counts


def _narrow(wanted: list[_Wanted], opened: list[Bool], passes: "Passes", origin: int) -> None:
    """One counting pass: each open second's interval becomes the slice holding its rank."""
    steps = [np.maximum(-(-(w.hi - w.lo + 1) // SUB_BINS), 1) for w in wanted]
    slots = [np.cumsum(o) - 1 for o in opened]
    bounds = [_bounds(w, o) for w, o in zip(wanted, opened, strict=True)]
    parts = passes(functools.partial(_narrow_counts, wanted, bounds, steps, slots, origin))
    counts = [np.sum([part[at] for part in parts], axis=0) for at in range(len(wanted))]
    for w, o, step, count in zip(wanted, opened, steps, counts, strict=True):
        table = count.reshape(-1, SUB_BINS)
        cumulative = np.cumsum(table, axis=1)
        at = np.flatnonzero(o)
        within = w.within[at]
        sub = np.argmax(cumulative > within[:, None], axis=1)
        rows = np.arange(at.size)
        before = np.where(sub > 0, cumulative[rows, np.maximum(sub - 1, 0)], 0)
        w.within[at] = within - before
        w.members[at] = table[rows, sub]
        w.lo[at] = w.lo[at] + sub * step[at]
        w.hi[at] = np.minimum(w.lo[at] + step[at] - 1, w.hi[at])


def _gather_part(
    wanted: list[_Wanted],
    bounds: list[tuple[I64, I64]],
    origin: int,
    batches: Iterator[pa.RecordBatch],
) -> list[tuple[I64, I64]]:
    """One part's values still in play: per quantile, ``(second, latency)``."""
    seconds = wanted[0].lo.size
    found: list[list[tuple[I64, I64]]] = [[] for _ in wanted]
    for second, latency in _times(batches, origin, seconds):
        for w, b, parts in zip(wanted, bounds, found, strict=True):
            hit = _members(w, b, second, latency)
            parts.append((second[hit], latency[hit]))
    empty = np.zeros(0, dtype=np.int64)
    return [
        (
            np.concatenate([empty, *(p[0] for p in parts)]),
            np.concatenate([empty, *(p[1] for p in parts)]),
        )
        for parts in found
    ]


def _gather(wanted: list[_Wanted], opened: list[Bool], passes: "Passes", origin: int) -> None:
    """One gathering pass: each open second's value of its rank (``lo = hi = value``)."""
    bounds = [_bounds(w, o) for w, o in zip(wanted, opened, strict=True)]
    parts = passes(functools.partial(_gather_part, wanted, bounds, origin))
    for index, (w, o) in enumerate(zip(wanted, opened, strict=True)):
        second = np.concatenate([part[index][0] for part in parts])
        latency = np.concatenate([part[index][1] for part in parts])
        order = np.lexsort((latency, second))
        second, latency = second[order], latency[order]
        at = np.flatnonzero(o)
        value = latency[np.searchsorted(second, at) + w.within[at]]
        w.lo[at] = value
        w.hi[at] = value


def _coarse(bins: npt.NDArray[np.integer], q: float, totals: I64) -> _Wanted:
    """Where each second's rank of quantile ``q`` lies among the coarse bins, a block of
    seconds at a time (a cumulative sum of every bin at once is one more array the size of
    ``bins``)."""
    rank = np.where(totals > 0, (q * (totals - 1)).astype(np.int64), 0)
    chosen = np.zeros(totals.size, dtype=np.int64)
    before = np.zeros(totals.size, dtype=np.int64)
    for start in range(0, totals.size, _SECONDS_AT_ONCE):
        block = slice(start, start + _SECONDS_AT_ONCE)
        cumulative = np.cumsum(bins[block], axis=1, dtype=np.int64)
        chosen[block] = np.argmax(cumulative > rank[block, None], axis=1)
        rows = np.arange(cumulative.shape[0])
        behind = cumulative[rows, np.maximum(chosen[block] - 1, 0)]
        before[block] = np.where(chosen[block] > 0, behind, 0)
    lo, hi = _interval(chosen)
    members = bins[np.arange(totals.size), chosen].astype(np.int64)
    return _Wanted(chosen, rank - before, lo, hi, members)


def exact_ranks(
    bins: npt.NDArray[np.integer], origin: int, passes: "Passes", quantiles: tuple[float, ...]
) -> list[list[float | None]]:
    """Per quantile, per second: the e2e latency of nearest rank in ms (3 places; None for an
    empty second). ``bins``: the coarse counts, one row per second; ``passes``: runs a scan
    over the receives' ``receive_ns`` and ``intended_ns`` (``in_one_part``, or in parts in
    worker processes)."""
    totals = bins.sum(axis=1, dtype=np.int64)
    wanted = [_coarse(bins, q, totals) for q in quantiles]
    while True:
        opened = [(totals > 0) & (w.hi > w.lo) for w in wanted]
        if not any(o.any() for o in opened):
            break
        if sum(int(w.members[o].sum()) for w, o in zip(wanted, opened, strict=True)) <= (
            GATHER_BUDGET
        ):
            _gather(wanted, opened, passes, origin)
            break
        _narrow(wanted, opened, passes, origin)
    return [
        [
            round(float(np.float64(value) / 1e6), 3) if total else None
            for value, total in zip(w.lo.tolist(), totals.tolist(), strict=True)
        ]
        for w in wanted
    ]
