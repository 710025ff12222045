"""Which key each message gets (round robin, uniform, or Zipf-skewed: hot keys exist), and
each key's next sequence number; handed out in arrays for the batched send path."""

from typing import Literal

import numpy as np
import numpy.typing as npt

KeyDistribution = Literal["round_robin", "uniform", "zipf"]
KeyIds = npt.NDArray[np.uint32]
Seqs = npt.NDArray[np.uint64]


def key_name(key_id: int) -> str:
    return f"k{key_id}"


class KeyStream:
    """An endless stream of key ids in ``0 .. keys - 1`` with per-key sequence numbers (0, 1,
    2, ... per key, in the order the keys are handed out)."""

    def __init__(
        self,
        distribution: KeyDistribution,
        keys: int,
        *,
        seed: int,
        zipf_exponent: float = 1.1,
        start: int = 0,
    ) -> None:
        self.keys = keys
        self._distribution = distribution
        self._next_round_robin = start
        self._random = np.random.default_rng(seed)
        self._cumulative = np.cumsum(
            1.0 / np.arange(1, keys + 1, dtype=np.float64) ** zipf_exponent
        )
        self._seqs = np.zeros(keys, np.uint64)
        self.names = [key_name(key_id) for key_id in range(keys)]
        """``key_name`` of every key id, by id."""

    def take(self, count: int) -> tuple[KeyIds, Seqs]:
        """The next ``count`` key ids and their sequence numbers."""
        ids = self._ids(count)
        if count == 1:
            seqs = self._seqs[ids].copy()
            self._seqs[ids] += 1
            return ids, seqs
        # Rank of each message among the batch's messages of the same key, in batch order.
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, count]))
        seqs = np.empty(count, np.uint64)
        seqs[order] = self._seqs[sorted_ids] + (np.arange(count) - group_start).astype(np.uint64)
        self._seqs += np.bincount(ids, minlength=self.keys).astype(np.uint64)
        return ids, seqs

    def _ids(self, count: int) -> KeyIds:
        if self._distribution == "round_robin":
            start, self._next_round_robin = self._next_round_robin, self._next_round_robin + count
            return (np.arange(start, start + count, dtype=np.int64) % self.keys).astype(np.uint32)
        if self._distribution == "uniform":
            return self._random.integers(0, self.keys, count, dtype=np.uint32)
        total = self._cumulative[-1]
        drawn = np.searchsorted(self._cumulative, self._random.random(count) * total)
        ids: KeyIds = np.minimum(drawn, self.keys - 1).astype(np.uint32)
        return ids
