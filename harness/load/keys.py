"""Which key each message gets: round robin, uniform, or Zipf-skewed (hot keys exist)."""

import bisect
import itertools
import random
from collections.abc import Iterator
from typing import Literal

KeyDistribution = Literal["round_robin", "uniform", "zipf"]


def key_name(key_id: int) -> str:
    return f"k{key_id}"


def key_ids(
    distribution: KeyDistribution,
    keys: int,
    *,
    seed: int,
    zipf_exponent: float = 1.1,
    start: int = 0,
) -> Iterator[int]:
    """An endless stream of key ids in ``0 .. keys - 1``."""
    if distribution == "round_robin":
        return (index % keys for index in itertools.count(start))
    chooser = random.Random(seed)
    if distribution == "uniform":
        return (chooser.randrange(keys) for _ in itertools.count())
    weights = [1.0 / (rank**zipf_exponent) for rank in range(1, keys + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return (
        min(bisect.bisect_left(cumulative, chooser.random() * total), keys - 1)
        for _ in itertools.count()
    )
