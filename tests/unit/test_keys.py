from collections import Counter

import numpy as np

from harness.load.keys import KeyStream


def test_round_robin_visits_every_key_in_turn() -> None:
    stream = KeyStream("round_robin", 3, seed=0, start=1)
    ids, seqs = stream.take(5)
    assert ids.tolist() == [1, 2, 0, 1, 2]
    assert seqs.tolist() == [0, 0, 0, 1, 1]
    ids, seqs = stream.take(1)
    assert (ids.tolist(), seqs.tolist()) == ([0], [1])


def test_zipf_makes_hot_keys_and_stays_in_range() -> None:
    counts = Counter(KeyStream("zipf", 100, seed=7).take(20_000)[0].tolist())
    assert set(counts) <= set(range(100))
    assert counts[0] > 10 * counts.get(50, 1)
    uniform = Counter(KeyStream("uniform", 100, seed=7).take(20_000)[0].tolist())
    assert max(uniform.values()) < 3 * min(uniform.values())


def test_sequence_numbers_count_each_key_in_hand_out_order_across_batches() -> None:
    stream = KeyStream("zipf", 10, seed=3)
    batches = [stream.take(size) for size in (1, 7, 1, 50, 3, 200)]
    ids = np.concatenate([b[0] for b in batches]).tolist()
    seqs = np.concatenate([b[1] for b in batches]).tolist()
    seen: Counter[int] = Counter()
    expected = []
    for key_id in ids:
        expected.append(seen[key_id])
        seen[key_id] += 1
    assert seqs == expected
