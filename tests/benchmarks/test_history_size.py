"""How many bytes a message costs in the compacted history (target: <= 48 per message).

A realistic Kafka-like run (8 producers, 1,000 keys, 50k msg/s open-loop schedule with jitter,
12 partitions, 4 consumers, everything acked) goes through the real ``Recorder`` and
``compact``; the figure is the size of ``sends.parquet`` + ``receives.parquet`` divided by the
number of messages. The test measures 1M messages; for the issue's 10M run:

    .venv/bin/python -m tests.benchmarks.test_history_size --messages 10000000

(about 2 GB of memory and a minute: 25.3 bytes/message; ``--keep DIR`` keeps the run directory).
"""

import argparse
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.history.recorder import Recorder
from harness.history.schema import Disposition, SendOutcome
from harness.history.store import compact, parquet_path

pytestmark = pytest.mark.benchmark

TARGET_BYTES_PER_MESSAGE = 48
PRODUCERS = 8
KEYS = 1_000
PARTITIONS = 12
CONSUMERS = 4
RATE = 50_000
START_NS = 1_767_225_600_000_000_000  # 2026-01-01, so times look like time.time_ns()


@dataclass(frozen=True)
class HistorySize:
    messages: int
    sends_bytes: int
    receives_bytes: int
    record_seconds: float
    compact_seconds: float

    @property
    def bytes_per_message(self) -> float:
        return (self.sends_bytes + self.receives_bytes) / self.messages


def record_kafka_like_history(run_dir: Path, messages: int, seed: int = 1) -> None:
    """Record ``messages`` sends and their receives through one ``Recorder`` per producer and
    per consumer, as the processes of a real run would."""
    rng = np.random.default_rng(seed)
    n = messages
    producer = np.arange(n) % PRODUCERS
    key = rng.integers(0, KEYS, n)
    intended = START_NS + np.arange(n) * (1_000_000_000 // RATE) + rng.integers(-2_000, 2_000, n)
    invoke = intended + rng.exponential(30_000, n).astype(np.int64)
    complete = invoke + rng.normal(2_000_000, 300_000, n).clip(200_000).astype(np.int64)
    receive = complete + rng.exponential(3_000_000, n).astype(np.int64) + 100_000
    partition = rng.integers(0, PARTITIONS, KEYS)[key]  # the producer's key -> partition hash

    # seq: the number of earlier sends of the same (producer, key).
    stream = producer * KEYS + key
    order = np.argsort(stream, kind="stable")
    ranks = np.arange(n)
    starts = np.r_[0, np.flatnonzero(np.diff(stream[order])) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    seq = np.empty(n, dtype=np.int64)
    seq[order] = ranks - group_start

    # offset: each partition numbers the messages in the order the broker acked them.
    order = np.lexsort((complete, partition))
    starts = np.r_[0, np.flatnonzero(np.diff(partition[order])) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    offset = np.empty(n, dtype=np.int64)
    offset[order] = ranks - group_start

    columns = [producer, key, seq, intended, invoke, complete, partition, offset]
    producers = [Recorder(run_dir, f"producer-{index}") for index in range(PRODUCERS)]
    for p, k, s, i, v, c, part, off in _rows(columns):
        recorder = producers[p]
        token = recorder.send_invoked(p, k, s, i, v)
        recorder.send_completed(token, SendOutcome.OK, c, part, off)
    for recorder in producers:
        recorder.close()

    order = np.argsort(receive, kind="stable")
    consumer = partition % CONSUMERS
    columns = [column[order] for column in (consumer, producer, key, seq, intended, receive)]
    columns += [partition[order], offset[order]]
    consumers = [Recorder(run_dir, f"consumer-{index}") for index in range(CONSUMERS)]
    scopes = [f"p{index}" for index in range(PARTITIONS)]
    for con, p, k, s, i, r, part, off in _rows(columns):
        consumers[con].received(
            consumer_id=con,
            producer_id=p,
            key_id=k,
            seq=s,
            intended_ns=i,
            receive_ns=r,
            disposition=Disposition.ACKED,
            partition=part,
            offset=off,
            delivery_attempt=1,
            scope=scopes[part],
        )
    for recorder in consumers:
        recorder.close()


def _rows(columns: list[np.ndarray[Any, Any]], chunk: int = 1 << 20) -> Iterator[tuple[int, ...]]:
    """The columns' rows as Python ints, converted a chunk at a time to bound memory."""
    for start in range(0, len(columns[0]), chunk):
        yield from zip(*(column[start : start + chunk].tolist() for column in columns), strict=True)


def measure_history_size(run_dir: Path, messages: int) -> HistorySize:
    started = time.perf_counter()
    record_kafka_like_history(run_dir, messages)
    recorded = time.perf_counter()
    compact(run_dir)
    compacted = time.perf_counter()
    return HistorySize(
        messages=messages,
        sends_bytes=parquet_path(run_dir, "sends").stat().st_size,
        receives_bytes=parquet_path(run_dir, "receives").stat().st_size,
        record_seconds=recorded - started,
        compact_seconds=compacted - recorded,
    )


def describe(size: HistorySize) -> str:
    return (
        f"{size.messages:,} messages: {size.bytes_per_message:.1f} bytes/message "
        f"(sends {size.sends_bytes / size.messages:.1f}, "
        f"receives {size.receives_bytes / size.messages:.1f}); "
        f"recorded in {size.record_seconds:.1f} s, compacted in {size.compact_seconds:.1f} s"
    )


def test_bench_history_bytes_per_message(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    sizes: list[HistorySize] = []

    def run() -> None:
        sizes.append(measure_history_size(tmp_path / "run", 1_000_000))

    benchmark.pedantic(run, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    size = sizes[0]
    print(f"\nhistory size: {describe(size)}")
    benchmark.extra_info.update(
        messages=size.messages,
        bytes_per_message=round(size.bytes_per_message, 2),
        sends_bytes=size.sends_bytes,
        receives_bytes=size.receives_bytes,
    )
    assert size.bytes_per_message <= TARGET_BYTES_PER_MESSAGE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="record into this (new) directory and keep it")
    args = parser.parse_args()
    if args.keep:
        print(describe(measure_history_size(args.keep, args.messages)))
        return
    with tempfile.TemporaryDirectory(prefix="brokerbench-history-size-") as run_dir:
        print(describe(measure_history_size(Path(run_dir), args.messages)))


if __name__ == "__main__":
    main()
