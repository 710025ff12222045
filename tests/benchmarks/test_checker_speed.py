"""History records checked per second per core by ``check_all`` (target: >= 2,000,000 on a
10-million-message history).

The history is synthetic and Kafka-like: 16 producers x 1,000 keys, 32 partitions (scope
``p<partition>``) read by 8 consumers that all move one partition over halfway through (32
rebalances), with a few of every anomaly planted, whose counts the test checks. Records = sends
rows + receives rows; pyarrow is held to one thread, so the wall time is one core's (on a busy
machine the CPU time, also reported, is the steadier figure).

By default 1,000,000 messages (a few seconds); the full target size, about 3 GB of memory:

    BROKERBENCH_BENCH_MESSAGES=10000000 .venv/bin/python -m pytest \\
        tests/benchmarks/test_checker_speed.py -s

``BROKERBENCH_BENCH_LAYOUT=identity`` lays the receives out sorted by identity, as the
compacted ``receives.parquet`` is, instead of in receive order, as the shards are;
``shuffled`` in random order (every sort starts from scratch; a poll batch never holds two
messages of one producer+key here, so the verdicts stay the same).
"""

import os
import resource
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.checkers import Verdict, check_all
from harness.drivers.base import OrderingScope

MESSAGES = int(os.environ.get("BROKERBENCH_BENCH_MESSAGES", "1000000"))
LAYOUT = os.environ.get("BROKERBENCH_BENCH_LAYOUT", "time")
TARGET_RECORDS_PER_SECOND = 2_000_000

PRODUCERS, KEYS, PARTITIONS, CONSUMERS = 16, 1_000, 32, 8
START_NS = 1_767_225_600_000_000_000
SEND_INTERVAL_NS = 2_000  # 500,000 sends per second
POLL_NS = 1_000_000  # a poll returns every millisecond: batches share one receive_ns
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Planted:
    failed: int = 100
    failed_but_delivered: int = 3
    unknown_delivered: int = 100
    unknown_lost: int = 100
    lost_write: int = 5
    unseen: int = 1
    phantom: int = 2
    redelivery: int = 1_000
    duplicate_publish: int = 50
    reorder: int = 10
    skip: int = 1


PLANTED = Planted()


def _offsets(partition: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """Each message's offset: how many earlier messages went to its partition."""
    order = np.argsort(partition.astype(np.uint8), kind="stable")
    counts = np.bincount(partition, minlength=PARTITIONS)
    offset = np.empty(partition.size, dtype=np.int64)
    offset[order] = np.arange(partition.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return offset


def _faults_and_lag(end_ns: int) -> tuple[pa.Table, pa.Table]:
    """One 1-second broker pause 2 s into the run; a backlog of 50 that jumps to 1,000,000
    during it and drains 1 s after it heals."""
    second = 1_000_000_000
    events = pa.table(
        {
            "time_ns": pa.array([START_NS, START_NS + 2 * second, START_NS + 3 * second]),
            "kind": ["warmup-end", "fault-start", "fault-end"],
            "name": ["warmup", "kafka-pause", "kafka-pause"],
            "target": [None, "kafka", "kafka"],
            "detail": [None, "{}", "{}"],
        }
    )
    sampled = np.arange(START_NS, end_ns + second, second, dtype=np.int64)
    paused = (sampled >= START_NS + 2 * second) & (sampled < START_NS + 4 * second)
    lag = pa.table(
        {
            "time_ns": sampled,
            "backlog": np.where(paused, 1_000_000, 50),
            "source": pa.array(["broker"] * sampled.size),
        }
    )
    return events, lag


def _lay_out(receives: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The receives in ``LAYOUT`` order (they are built in receive order)."""
    if LAYOUT == "identity":
        return receives.sort_by(
            [("producer_id", "ascending"), ("key_id", "ascending"), ("seq", "ascending")]
        )
    if LAYOUT == "shuffled":
        return receives.take(rng.permutation(receives.num_rows))
    return receives


def make_history(messages: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """``(sends, receives, events, lag)`` of about ``messages`` sends (whole rounds of one send
    per producer+key, at least 40) with the ``PLANTED`` anomalies; receives in receive order."""
    rng = np.random.default_rng(seed)
    per_round = KEYS * PRODUCERS
    n = max(messages // per_round, 40) * per_round
    i = np.arange(n, dtype=np.int64)
    key = (i % KEYS).astype(np.uint32)
    producer = ((i // KEYS) % PRODUCERS).astype(np.uint32)
    seq = (i // per_round).astype(np.uint64)
    partition = (key % PARTITIONS).astype(np.int32)
    offset = _offsets(partition)
    invoke = START_NS + i * SEND_INTERVAL_NS
    complete = invoke + 1_000_000 + rng.integers(0, 1_000_000, n)
    del i

    # Disjoint sets of messages for the anomalies, in the middle half of the run. Duplicate
    # publishes avoid partition 0, whose last message is the unseen one (a later offset read
    # would make it a lost-write).
    region = rng.permutation(np.arange(n // 4, 3 * n // 4))
    republished = region[partition[region] != 0][: PLANTED.duplicate_publish]
    taken = np.zeros(n, dtype=np.bool_)
    taken[republished] = True
    sizes = [
        PLANTED.failed,
        PLANTED.failed_but_delivered,
        PLANTED.unknown_delivered,
        PLANTED.unknown_lost,
        PLANTED.lost_write,
        PLANTED.redelivery,
        PLANTED.phantom,
        PLANTED.skip,
    ]
    parts = np.split(region[~taken[region]][: sum(sizes)], np.cumsum(sizes)[:-1])
    failed, failed_delivered, unknown_delivered, unknown_lost, lost_write = parts[:5]
    redelivered, phantoms, skipped = parts[5:]
    unseen = np.flatnonzero(partition == 0)[-1:]
    # Reorders: seq 1 and seq 2 of a few producer+keys arrive swapped (same consumer).
    swapped = per_round + rng.choice(per_round, PLANTED.reorder, replace=False)

    outcome = np.zeros(n, dtype=np.uint8)
    outcome[np.concatenate([failed, failed_delivered])] = 1
    outcome[np.concatenate([unknown_delivered, unknown_lost])] = 2
    sends = pa.table(
        {
            "producer_id": producer,
            "key_id": key,
            "seq": seq,
            "intended_ns": invoke,
            "invoke_ns": invoke,
            "complete_ns": complete,
            "outcome": outcome,
            "partition": partition,
            "offset": offset,
        }
    )

    received = np.ones(n, dtype=np.bool_)
    received[np.concatenate([failed, unknown_lost, lost_write, unseen, skipped])] = False
    rows = np.flatnonzero(received)
    times = (invoke[rows] + 3 * POLL_NS) // POLL_NS * POLL_NS
    owner = (partition[rows] + (rows >= n // 2)) % CONSUMERS
    rows[np.searchsorted(rows, swapped)] = swapped + per_round
    rows[np.searchsorted(rows, swapped + per_round)] = swapped

    # After the run's last receive: phantoms (delivered by the partition's consumer), then
    # redeliveries and duplicate publishes, then the skipped message, read by a consumer that
    # never owned its partition.
    late = np.concatenate([phantoms, redelivered, republished, skipped])
    late_times = int(times[-1]) + POLL_NS * np.arange(1, late.size + 1)
    late_owner = (partition[late] + 1) % CONSUMERS
    late_owner[-skipped.size :] = (partition[skipped] + 4) % CONSUMERS
    late_offset = offset[late]
    first_republished = phantoms.size + redelivered.size
    late_offset[first_republished : first_republished + republished.size] = 2**40 + np.arange(
        republished.size
    )
    late_producer = producer[late]
    late_producer[: phantoms.size] = PRODUCERS + 5

    everything = np.concatenate([rows, late])
    receive_partition = partition[everything]
    receives = pa.table(
        {
            "consumer_id": np.concatenate([owner, late_owner]).astype(np.uint32),
            "producer_id": np.concatenate([producer[rows], late_producer]),
            "key_id": key[everything],
            "seq": seq[everything],
            "intended_ns": invoke[everything],
            "receive_ns": np.concatenate([times, late_times]),
            "partition": receive_partition,
            "offset": np.concatenate([offset[rows], late_offset]),
            "message_id": pa.nulls(everything.size, _DICTIONARY),
            "delivery_attempt": np.ones(everything.size, dtype=np.int16),
            "disposition": np.zeros(everything.size, dtype=np.uint8),
            "scope": pa.DictionaryArray.from_arrays(
                receive_partition, [f"p{p}" for p in range(PARTITIONS)]
            ),
            "subscriber": pa.nulls(everything.size, _DICTIONARY),
        }
    )
    receives = _lay_out(receives, rng)

    events, lag = _faults_and_lag(int(late_times[-1]))
    return sends, receives, events, lag


def _check(verdicts: list[Verdict]) -> None:
    by_name = {verdict.name: verdict for verdict in verdicts}
    assert by_name["lost"].counts["lost_write"] == PLANTED.lost_write
    assert by_name["lost"].counts["unseen"] == PLANTED.unseen
    assert by_name["unknown-outcome"].counts["delivered"] == PLANTED.unknown_delivered
    assert by_name["unknown-outcome"].counts["not_delivered"] == PLANTED.unknown_lost
    fbd = by_name["failed-but-delivered"].counts["failed_but_delivered"]
    assert fbd == PLANTED.failed_but_delivered
    assert by_name["phantom"].counts["phantom"] == PLANTED.phantom
    assert by_name["duplicates"].counts["redelivery"] == PLANTED.redelivery
    assert by_name["duplicates"].counts["duplicate_publish"] == PLANTED.duplicate_publish
    assert by_name["ordering"].counts["reorder"] == PLANTED.reorder
    assert by_name["ordering"].counts["skip"] == PLANTED.skip
    assert by_name["ordering"].counts["rebalance"] == PARTITIONS + PLANTED.skip
    assert by_name["lag-recovery"].valid is True


@pytest.mark.timeout(1800)
def test_bench_check_all(benchmark: BenchmarkFixture) -> None:
    sends, receives, events, lag = make_history(MESSAGES)
    records = sends.num_rows + receives.num_rows
    threads = pa.cpu_count()
    pa.set_cpu_count(1)
    timing: dict[str, float] = {}

    def timed() -> list[Verdict]:
        wall, cpu = time.perf_counter(), time.process_time()
        verdicts = check_all(sends, receives, events, OrderingScope.PARTITION, lag)
        timing["wall"] = time.perf_counter() - wall
        timing["cpu"] = time.process_time() - cpu
        return verdicts

    try:
        verdicts = benchmark.pedantic(timed, rounds=1, iterations=1)
    finally:
        pa.set_cpu_count(threads)
    _check(verdicts)

    rate = records / timing["wall"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    benchmark.extra_info.update(
        messages=sends.num_rows,
        records=records,
        layout=LAYOUT,
        wall_seconds=round(timing["wall"], 3),
        cpu_seconds=round(timing["cpu"], 3),
        records_per_second_per_core=round(rate),
        records_per_cpu_second=round(records / timing["cpu"]),
        target_records_per_second_per_core=TARGET_RECORDS_PER_SECOND,
        peak_rss_mb=peak_rss_mb,
    )
    print(
        f"\ncheck_all: {records:,} records ({sends.num_rows:,} messages, {LAYOUT} layout) in "
        f"{timing['wall']:.2f} s wall / {timing['cpu']:.2f} s cpu: {rate:,.0f} records/s/core "
        f"(target {TARGET_RECORDS_PER_SECOND:,}); peak RSS {peak_rss_mb:,} MB"
    )
