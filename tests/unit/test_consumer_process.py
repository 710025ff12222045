"""The consumer process's bookkeeping offline: progress lines and the per-message fallback of
the batched poll (the loop itself runs against real brokers in tests/e2e)."""

import json
from collections.abc import Sequence

import numpy as np
import pytest

from harness.drivers.base import BatchConsumer, Received, ReceivedBatch
from harness.drivers.batching import PerMessageBatches, batch_consumer
from harness.load.consumer_process import E2E_SAMPLE_EVERY, E2E_SAMPLES_PER_LINE, Progress
from harness.load.pending_receives import PendingReceives


def test_e2e_samples_are_every_nth_delivery_across_batches_up_to_a_line_s_worth() -> None:
    progress = Progress(consumer_id=0)
    expected: list[float] = []
    received = 0
    for number, size in enumerate([3, 1, 17, 0, 9, 250, 4000]):
        poll_ns = np.full(size, 10_000_000_000 + number * 7_654_321, dtype=np.int64)
        intended = poll_ns - np.arange(size, dtype=np.int64) * 1_234_567
        for latency_ns in (poll_ns - intended).tolist():  # the rule, one delivery at a time
            received += 1
            if received % E2E_SAMPLE_EVERY == 0 and len(expected) < E2E_SAMPLES_PER_LINE:
                expected.append(round(latency_ns / 1e6, 3))
        progress.delivered(poll_ns, intended)
    assert progress.received == received
    assert progress.e2e_samples == expected
    assert len(expected) == E2E_SAMPLES_PER_LINE


def test_a_progress_line_reports_the_longest_poll_gap_since_the_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress(consumer_id=4)
    for seconds in (0.002, 0.0153, 0.001):
        progress.poll_gap(seconds)
    progress.line_if_due()
    assert capsys.readouterr().out == "", "a line before its second is due"
    progress.next_line = 0.0
    progress.line_if_due()
    progress.next_line = 0.0
    progress.line_if_due()
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["poll_gap_ms_max"] == 15.3
    assert (first["tick"], second["tick"]) == (1, 2)
    assert second["poll_gap_ms_max"] == 0.0


class _PerMessageOnly:
    """A consumer with only the per-message protocol."""

    def __init__(self, messages: list[Received]) -> None:
        self.messages = messages
        self.acked: list[Received] = []

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        taken, self.messages = self.messages[:max_messages], self.messages[max_messages:]
        return taken

    def ack(self, messages: Sequence[Received]) -> None:
        self.acked.extend(messages)

    def nack(self, messages: Sequence[Received]) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


def test_a_per_message_consumer_is_polled_in_batches_through_the_fallback() -> None:
    queue = [
        Received("k-1", b"one", "id-1", delivery_attempt=2, handle="h1"),
        Received("k-2", b"two", "id-2", handle="h2"),
        Received("k-1", b"three", "id-3", delivery_attempt=1, handle="h3"),
    ]
    consumer = _PerMessageOnly(list(queue))
    batches = batch_consumer(consumer)
    assert isinstance(batches, PerMessageBatches)

    batch = batches.poll_batch(2, 0.1)
    assert batch.payloads == [b"one", b"two"]
    assert (batch.partitions, batch.offsets) == ([-1, -1], [-1, -1])
    assert batch.message_ids == ["id-1", "id-2"]
    assert batch.keys == ["k-1", "k-2"]
    assert batch.delivery_attempts == [2, 0]
    batches.ack_batch(batch)
    assert consumer.acked == queue[:2]
    assert len(batches.poll_batch(5, 0.1)) == 1


def test_the_fallback_leaves_out_message_ids_where_partition_and_offset_identify() -> None:
    consumer = _PerMessageOnly([Received("k", b"x", "0:7", partition=0, offset=7)])
    batch = batch_consumer(consumer).poll_batch(10, 0.1)
    assert (batch.partitions, batch.offsets, batch.message_ids) == ([0], [7], None)


def test_a_batch_consumer_is_used_as_it_is() -> None:
    class Batched(_PerMessageOnly):
        def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
            return ReceivedBatch(payloads=[])

        def ack_batch(self, batch: ReceivedBatch) -> None:
            pass

    consumer = Batched([])
    assert isinstance(consumer, BatchConsumer)
    assert batch_consumer(consumer) is consumer


def test_pending_polls_become_one_batch_with_each_poll_s_own_times() -> None:
    pending = PendingReceives(max_rows=6, max_seconds=60)
    pending.add(ReceivedBatch([b"a", b"b"], [0, 1], [10, 20], None, None, [1, 1]), 1_000)
    pending.add(ReceivedBatch([b"c"], None, None, ["id-c"], ["k"], None), 5_000)
    assert not pending.due()
    pending.add(ReceivedBatch([b"d", b"e", b"f"], [2, 2, 2], [7, 8, 9], None, None, [2, 1, 3]), 9)
    assert pending.due()

    deliveries = pending.take()
    assert pending.rows == 0
    assert deliveries.payloads == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert deliveries.partitions == [0, 1, -1, 2, 2, 2]
    assert deliveries.offsets == [10, 20, -1, 7, 8, 9]
    assert deliveries.message_ids == [None, None, "id-c", None, None, None]
    assert deliveries.keys == [None, None, "k", None, None, None]
    assert deliveries.delivery_attempts == [1, 1, 0, 2, 1, 3]
    assert deliveries.poll_ns.tolist() == [1_000, 1_000, 5_000, 9, 9, 9]
    assert deliveries.receive_ns.tolist() == [1_000, 1_001, 5_000, 9, 10, 11]


def test_a_single_pending_poll_keeps_its_columns_and_old_polls_fall_due() -> None:
    pending = PendingReceives(max_rows=100, max_seconds=0.0)
    assert not pending.due(), "nothing pending"
    batch = ReceivedBatch([b"x", b"y"], None, None, ["1", "2"], ["k", "k"], [3, 4])
    pending.add(batch, 50)
    assert pending.due()
    deliveries = pending.take()
    assert (deliveries.message_ids, deliveries.keys) == (["1", "2"], ["k", "k"])
    assert (deliveries.partitions, deliveries.offsets) == (None, None)
    assert deliveries.receive_ns.tolist() == [50, 51]
