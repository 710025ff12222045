"""The Kafka driver's producer follows the Kafka clients' default, the idempotent producer with
acks=all, unless the workload turns it off (``idempotent_producer: false``).

Against the local Kafka: the driver's own producer sends, and a client made with the settings
the driver used shows what the broker made of them (an idempotent producer is assigned a
producer id, visible in librdkafka's statistics as ``eos.producer_id``)."""

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer as ConfluentProducer

from harness.drivers.base import Destination, DestinationSpec, SendResult
from harness.drivers.kafka import KafkaDriver, KafkaProducer

pytestmark = pytest.mark.broker


def created(driver: KafkaDriver, **spec: Any) -> Destination:
    return driver.create_destination(
        DestinationSpec(f"bb-idempotence-{uuid.uuid4().hex[:8]}", **spec)
    )


def sent_by(producer: KafkaProducer) -> list[SendResult]:
    results: list[SendResult] = []
    producer.send("k", b"payload", results.append)
    assert producer.flush(60) == 0
    return results


def broker_producer_id(config: dict[str, Any], topic: str) -> int:
    """Sends one message with a plain librdkafka producer made with ``config`` and returns
    the producer id the broker assigned it (-1: none, the producer is not idempotent)."""
    stats: list[str] = []
    client = ConfluentProducer(config | {"statistics.interval.ms": 100, "stats_cb": stats.append})
    client.produce(topic, b"probe")
    assert client.flush(60) == 0
    before = len(stats)
    for _ in range(300):  # statistics come every 0.1 s; wait for two made after the send
        if len(stats) >= before + 2:
            break
        client.poll(0.1)
    assert len(stats) >= before + 2, "librdkafka reported no statistics"
    eos = json.loads(stats[-1]).get("eos")
    return -1 if eos is None else int(eos["producer_id"])


def test_the_default_producer_is_idempotent_with_acks_all(kafka: KafkaDriver) -> None:
    destination = created(kafka)
    try:
        producer = kafka.producer(destination)
        assert [r.outcome.value for r in sent_by(producer)] == ["ok"]
        producer.close()
        assert producer.config["enable.idempotence"] is True
        assert producer.config["acks"] == "all"
        assert broker_producer_id(producer.config, destination.address) >= 0
    finally:
        kafka.delete_destination(destination)


def test_a_workload_can_turn_idempotence_off(kafka: KafkaDriver) -> None:
    destination = created(kafka, idempotent_producer=False)
    try:
        producer = kafka.producer(destination)
        assert [r.outcome.value for r in sent_by(producer)] == ["ok"]
        producer.close()
        assert producer.config["enable.idempotence"] is False
        assert broker_producer_id(producer.config, destination.address) == -1
    finally:
        kafka.delete_destination(destination)
