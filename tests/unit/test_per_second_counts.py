"""The time series' per-second counts of a history checked range by range
(``harness.analysis.bounded_figures.PerSecondCounts``): added where they fall, grown as later
seconds come, and merged from a worker process's sparse hand-back as if counted in one place."""

import pickle

import numpy as np
import numpy.typing as npt

from harness.analysis.bounded_figures import PerSecondCounts
from harness.analysis.exact_ranks import BINS

RNG = np.random.default_rng(7)
I64 = npt.NDArray[np.int64]


def _random_part(seconds: int, rows: int) -> tuple[I64, I64, I64]:
    acked = RNG.integers(0, seconds, rows)
    received = RNG.integers(0, seconds, rows)
    return acked, received, RNG.integers(0, BINS, rows)


def _dense(parts: list[tuple[I64, I64, I64]]) -> tuple[int, I64, I64, I64]:
    seconds = 1 + max(int(max(a.max(initial=-1), r.max(initial=-1))) for a, r, _ in parts)
    acked, received = np.zeros(seconds, np.int64), np.zeros(seconds, np.int64)
    bins = np.zeros((seconds, BINS), np.int64)
    for a, r, b in parts:
        np.add.at(acked, a, 1)
        np.add.at(received, r, 1)
        np.add.at(bins, (r, b), 1)
    return seconds, acked, received, bins


def test_counts_added_range_by_range_equal_one_count_of_everything() -> None:
    # Later ranges reach later seconds: the arrays grow under counts already there.
    parts = [_random_part(seconds, 5_000) for seconds in (10, 500, 20, 3_000, 3_001)]
    counts = PerSecondCounts()
    for part in parts:
        counts.add(*part)
    seconds, acked, received, bins = _dense(parts)
    assert counts.seconds == seconds
    assert counts.acked[:seconds].tolist() == acked.tolist()
    assert counts.received[:seconds].tolist() == received.tolist()
    assert np.array_equal(counts.e2e_bins(), bins)


def test_a_pickled_share_merges_as_the_share_itself() -> None:
    # A worker process hands back its non-empty cells only; the merge must land them where
    # the dense share would, whether the receiving side is shorter, longer or spare.
    first, second, third = (_random_part(s, 4_000) for s in (2_000, 300, 2_500))
    local = PerSecondCounts()  # a share of this process: dense, with room to spare
    local.add(*_random_part(2_000, 100))
    local.add(*_random_part(2_050, 100))
    assert local.acked.size > local.seconds
    merged = PerSecondCounts()
    merged.merge(local)
    for part in (first, second, third):
        share = PerSecondCounts()
        share.add(*part)
        sent = pickle.loads(pickle.dumps(share))
        assert len(pickle.dumps(share)) < share.seconds * BINS  # not the dense array
        merged.merge(sent)
    expected = PerSecondCounts()
    for part in (first, second, third):
        expected.add(*part)
    expected.merge(local)
    assert merged.seconds == expected.seconds
    assert merged.acked[: merged.seconds].tolist() == expected.acked[: merged.seconds].tolist()
    assert np.array_equal(merged.e2e_bins(), expected.e2e_bins())


def test_nothing_counted_is_one_empty_second() -> None:
    # As harness.run.figures.time_series: a run with no receive still has second 0.
    counts = pickle.loads(pickle.dumps(PerSecondCounts()))
    merged = PerSecondCounts()
    merged.merge(counts)
    assert merged.seconds == 1
    assert merged.e2e_bins().shape == (1, BINS)
    assert merged.e2e_bins().sum() == 0
