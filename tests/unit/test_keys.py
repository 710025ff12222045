import itertools
from collections import Counter

from harness.load.keys import key_ids


def test_round_robin_visits_every_key_in_turn() -> None:
    assert list(itertools.islice(key_ids("round_robin", 3, seed=0, start=1), 5)) == [1, 2, 0, 1, 2]


def test_zipf_makes_hot_keys_and_stays_in_range() -> None:
    counts = Counter(itertools.islice(key_ids("zipf", 100, seed=7), 20_000))
    assert set(counts) <= set(range(100))
    assert counts[0] > 10 * counts.get(50, 1)
    uniform = Counter(itertools.islice(key_ids("uniform", 100, seed=7), 20_000))
    assert max(uniform.values()) < 3 * min(uniform.values())
