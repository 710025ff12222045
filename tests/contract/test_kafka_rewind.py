"""A nack on Kafka seeks its partition back, so the messages after it that were already acked
come back from the broker too; the driver drops them instead of redelivering them. Here one
message at a time after the nack (a loaded consumer's fetches arrive like this), with a
dead-letter policy that settles the nacked message on its second delivery, before the rewind
has reached the acked ones: only the nacked message comes back.

Against the local Kafka; the offset bookkeeping itself is in
tests/unit/test_kafka_consumer_offline.py."""

import time
import uuid
from collections import Counter

import pytest

from harness.drivers.base import DeadLetterPolicy, DestinationSpec, Received
from harness.drivers.kafka import KafkaDriver
from tests.contract.contract import send_all

pytestmark = pytest.mark.broker

MESSAGES = 12


def test_one_at_a_time_only_the_nacked_message_comes_back(kafka: KafkaDriver) -> None:
    spec = DestinationSpec(
        f"bb-rewind-{uuid.uuid4().hex[:8]}", partitions=1, dead_letter=DeadLetterPolicy(2)
    )
    destination = kafka.create_destination(spec)
    try:
        producer = kafka.producer(destination)
        sent = send_all(producer, [(f"k{index}", b"m") for index in range(MESSAGES)])
        assert all(result.ok for result in sent)
        producer.close()
        consumer = kafka.consumer(destination, "default")
        deliveries: list[Received] = []
        deadline = time.monotonic() + 60
        while len(deliveries) < 3 and time.monotonic() < deadline:
            deliveries += consumer.poll(3 - len(deliveries), 1.0)
        consumer.nack(deliveries[:1])  # k0: the rewind brings k1 and k2 back from the broker
        consumer.ack(deliveries[1:3])
        quiet_until = None
        while time.monotonic() < min(deadline, quiet_until or deadline):
            for message in consumer.poll(1, 0.2):  # one at a time: the rewind spans polls
                deliveries.append(message)
                if message.key == "k0":  # nacked again: dead-lettered on its 2nd delivery
                    consumer.nack([message])
                else:
                    consumer.ack([message])
            if quiet_until is None and len({m.key for m in deliveries}) == MESSAGES:
                quiet_until = time.monotonic() + 2  # anything delivered twice shows by then
        consumer.close()
        counts = Counter(message.key for message in deliveries)
        again = {key: count for key, count in counts.items() if count > 1}
        trace = [(m.key, m.offset, m.delivery_attempt) for m in deliveries]
        assert again == {"k0": 2}, f"acked messages delivered again: {trace}"
        assert len(counts) == MESSAGES
    finally:
        kafka.delete_destination(destination)
