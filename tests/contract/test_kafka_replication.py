"""The workload's ``replication`` settings on the local Kafka (one node): topics are created
with the asked replication factor and topic configs (read back through the AdminClient), a
factor the cluster cannot hold is one line naming the fix, and ``acks: 1`` produces without
the idempotent producer. Replication across nodes is tested on the three-node cluster."""

import uuid

import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from harness.drivers.base import DeadLetterPolicy, DestinationSpec, SendResult
from harness.drivers.kafka import KafkaDriver
from harness.drivers.replication import Replication
from harness.errors import UserError

pytestmark = pytest.mark.broker


def spec(replication: Replication) -> DestinationSpec:
    return DestinationSpec(
        f"bb-replication-{uuid.uuid4().hex[:8]}",
        partitions=2,
        dead_letter=DeadLetterPolicy(5),
        replication=replication,
    )


def topic_configs(kafka: KafkaDriver, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    [future] = kafka._admin.describe_configs([resource]).values()
    return {name: entry.value for name, entry in future.result(timeout=30).items()}


def test_topics_are_created_with_the_asked_settings(kafka: KafkaDriver) -> None:
    replication = Replication(factor=1, min_insync_replicas=1, unclean_leader_election=True)
    destination = kafka.create_destination(spec(replication))
    try:
        topics = [destination.address, destination.dead_letter_address]
        metadata = kafka._admin.list_topics(timeout=30)
        for topic in topics:
            assert topic is not None
            configs = topic_configs(kafka, topic)
            assert configs["min.insync.replicas"] == "1"
            assert configs["unclean.leader.election.enable"] == "true"
            partitions = metadata.topics[topic].partitions.values()
            assert [len(p.replicas) for p in partitions] == [1, 1]
    finally:
        kafka.delete_destination(destination)


def test_a_factor_beyond_the_cluster_is_one_line_naming_the_fix(kafka: KafkaDriver) -> None:
    with pytest.raises(UserError) as raised:
        kafka.create_destination(spec(Replication(factor=3)))
    message = str(raised.value)
    assert "has 1 broker(s), too few for replication factor 3" in message
    assert "lower replication.factor or start a cluster" in message
    assert "\n" not in message


def test_acks_1_produces_without_the_idempotent_producer(kafka: KafkaDriver) -> None:
    destination = kafka.create_destination(spec(Replication(acks=1)))
    try:
        producer = kafka.producer(destination)
        results: list[SendResult] = []
        producer.send("k", b"payload", results.append)
        assert producer.flush(60) == 0
        producer.close()
        assert (producer.config["acks"], producer.config["enable.idempotence"]) == (1, False)
        assert [r.outcome for r in results] == ["ok"]
    finally:
        kafka.delete_destination(destination)
