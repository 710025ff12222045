"""KafkaConsumer's ack bookkeeping on a stand-in for librdkafka's consumer (one partition's log,
a position, seek): the batch path against the nacks the flows use. The real broker runs the
same paths in tests/contract."""

from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from harness.drivers import kafka
from harness.drivers.base import Destination, DestinationSpec


class _Librdkafka:
    """Delivers partition 0's offsets 0..size-1 from a position that ``seek`` moves."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.size = 10
        self.position = 0
        self.stored: list[tuple[int, int]] = []

    def subscribe(self, topics: list[str]) -> None:
        pass

    def _next(self) -> Message | None:
        if self.position >= self.size:
            return None
        self.position += 1
        offset = self.position - 1
        return Message(topic="t", partition=0, offset=offset, value=b"m%d" % offset, key=b"k")

    def poll(self, timeout: float) -> Message | None:
        return self._next()

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        messages = [self._next() for _ in range(num_messages)]
        return [message for message in messages if message is not None]

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored += [(tp.partition, tp.offset) for tp in offsets]

    def seek(self, partition: TopicPartition) -> None:
        self.position = partition.offset

    def close(self) -> None:
        pass


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> kafka.KafkaConsumer:
    monkeypatch.setattr(kafka, "ConfluentConsumer", _Librdkafka)
    destination = Destination(DestinationSpec("t"), "t")
    return kafka.KafkaConsumer({}, destination, None)  # type: ignore[arg-type]


def _librdkafka(consumer: kafka.KafkaConsumer) -> _Librdkafka:
    fake = consumer._consumer
    assert isinstance(fake, _Librdkafka)
    return fake


def test_a_batch_is_columns_and_its_ack_stores_one_offset_per_partition(
    consumer: kafka.KafkaConsumer,
) -> None:
    batch = consumer.poll_batch(4, 0.1)
    assert batch.payloads == [b"m0", b"m1", b"m2", b"m3"]
    assert (batch.partitions, batch.offsets) == ([0, 0, 0, 0], [0, 1, 2, 3])
    assert batch.delivery_attempts == [1, 1, 1, 1]
    assert batch.message_ids is None and batch.keys is None
    consumer.ack_batch(batch)
    consumer.ack_batch(consumer.poll_batch(3, 0.1))
    assert _librdkafka(consumer).stored == [(0, 4), (0, 7)]


def test_messages_acked_in_a_batch_are_not_redelivered_by_a_later_nack(
    consumer: kafka.KafkaConsumer,
) -> None:
    first = consumer.poll(3, 0.1)  # offsets 0, 1, 2
    batch = consumer.poll_batch(3, 0.1)  # offsets 3, 4, 5
    consumer.ack_batch(batch)
    consumer.nack(first[1:2])  # rewinds to offset 1
    again = consumer.poll_batch(10, 0.1)
    assert again.offsets == [1, 2, 6, 7, 8, 9], "3..5 were acked: not delivered again"
    assert again.delivery_attempts == [2, 1, 1, 1, 1, 1]
    consumer.ack_batch(again)  # a nack was pending: the full bookkeeping
    assert _librdkafka(consumer).stored == [(0, 6), (0, 10)]
    assert consumer.poll_batch(10, 0.1).payloads == []


def test_a_stored_offset_never_moves_back(consumer: kafka.KafkaConsumer) -> None:
    messages = consumer.poll(5, 0.1)
    consumer.ack(messages[3:])
    consumer.ack(messages[:3])
    assert _librdkafka(consumer).stored == [(0, 5)]
