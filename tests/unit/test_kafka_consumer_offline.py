"""KafkaConsumer's ack bookkeeping on a stand-in for librdkafka's consumer (one partition's log,
a position, seek): the batch path against the nacks the flows use. The real broker runs the
same paths in tests/contract."""

from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from harness.drivers import kafka
from harness.drivers.base import DeadLetterPolicy, Destination, DestinationSpec


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


def test_acked_messages_stay_filtered_until_the_rewind_has_read_past_them(
    consumer: kafka.KafkaConsumer,
) -> None:
    # The rewound fetch may arrive a poll at a time (a loaded machine): settling the nack
    # (acked or dead-lettered) must not let the acked messages behind it through again.
    first = consumer.poll(4, 0.1)  # offsets 0..3
    consumer.ack([first[0], *first[2:]])
    consumer.nack(first[1:2])  # rewinds to offset 1
    [again] = consumer.poll(1, 0.1)
    assert (again.offset, again.delivery_attempt) == (1, 2)
    consumer.ack([again])  # no nack pending any more, but the fetch is back at offset 2
    one_by_one = [m.offset for _ in range(10) for m in consumer.poll(1, 0.1)]
    assert one_by_one == [4, 5, 6, 7, 8, 9], "2 and 3 were acked already"


def test_a_dead_lettered_nack_leaves_the_acked_messages_after_it_filtered(
    consumer: kafka.KafkaConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = Destination(DestinationSpec("t", dead_letter=DeadLetterPolicy(2)), "t")
    monkeypatch.setattr(consumer, "_destination", destination)
    monkeypatch.setattr(consumer, "_dead_letter", lambda message: None)
    first = consumer.poll(3, 0.1)  # offsets 0..2
    consumer.ack(first[1:])
    consumer.nack(first[:1])  # attempt 1: rewinds to offset 0
    [again] = consumer.poll(1, 0.1)
    consumer.nack([again])  # attempt 2: dead-lettered and acked, no seek
    assert [m.offset for m in consumer.poll(10, 0.1)] == [3, 4, 5, 6, 7, 8, 9]
