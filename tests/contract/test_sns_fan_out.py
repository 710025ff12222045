"""Fan-out on SQS against the real moto server (issue 16): an SNS topic in front of one queue
per group (``harness/drivers/sns.py``). Every group receives every message, as published (raw
delivery: the body and the key attribute, not SNS's JSON envelope); a group's acks, nacks and
dead letters are its own; creating again reuses what exists; deleting leaves nothing behind.
ElasticMQ, which serves no SNS, refuses a fan-out destination (its plan-time refusal:
tests/unit/test_fan_out_plan.py)."""

import uuid
from collections.abc import Iterator

import pytest

from harness.drivers.base import (
    DeadLetterPolicy,
    Destination,
    DestinationSpec,
    Received,
    SendResult,
)
from harness.drivers.sqs import SqsConsumer, SqsDriver
from harness.drivers.targets import open_driver
from harness.errors import UserError
from harness.settings import Settings
from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

GROUPS = ("inventory", "analytics")


@pytest.fixture
def moto(stack: Stack, settings: Settings) -> Iterator[SqsDriver]:
    driver = open_driver("moto", settings)
    assert isinstance(driver, SqsDriver)
    yield driver
    driver.close()


def fan_out(driver: SqsDriver, **spec: object) -> Destination:
    name = f"bb-fan-{uuid.uuid4().hex[:8]}"
    return driver.create_destination(DestinationSpec(name, groups=GROUPS, **spec))  # type: ignore[arg-type]


def send(driver: SqsDriver, destination: Destination, messages: list[tuple[str, bytes]]) -> None:
    results: list[SendResult] = []
    producer = driver.producer(destination)
    for key, payload in messages:
        producer.send(key, payload, results.append)
    assert producer.flush(60) == 0
    producer.close()
    assert [result.ok for result in results] == [True] * len(messages)


def drain(consumer: SqsConsumer, count: int, *, ack: bool = True) -> list[Received]:
    got: list[Received] = []
    for _ in range(20):  # long polls of up to 1 s each
        if len(got) >= count:
            break
        batch = consumer.poll(10, 1)
        got += batch
        if ack and batch:
            consumer.ack(batch)
    assert len(got) == count
    assert consumer.poll(10, 0) == []  # nothing more: each message once
    return got


def test_every_group_receives_every_message_raw(moto: SqsDriver) -> None:
    destination = fan_out(moto)
    try:
        # Text bodies travel as they are; bytes that are not SQS text, base64-encoded.
        messages = [(f"k-{n % 3}", f"event-{n}".encode()) for n in range(25)]
        messages.append(("k-bin", bytes(range(256))))
        send(moto, destination, messages)
        for group in GROUPS:
            consumer = moto.consumer(destination, group)
            got = drain(consumer, len(messages))
            consumer.close()
            assert sorted((m.key, m.payload) for m in got) == sorted(messages), group
            assert all(m.delivery_attempt == 1 for m in got)
    finally:
        moto.delete_destination(destination)


def test_groups_ack_and_dead_letter_apart(moto: SqsDriver) -> None:
    destination = fan_out(moto, dead_letter=DeadLetterPolicy(max_deliveries=2))
    try:
        send(moto, destination, [("k", b"poison"), ("k", b"fine")])
        first = moto.consumer(destination, GROUPS[0])
        got = drain(first, 2, ack=False)
        first.ack([m for m in got if m.payload == b"fine"])
        first.nack([m for m in got if m.payload == b"poison"])
        again = drain(first, 1, ack=False)  # nacked twice: the queue dead-letters it
        assert [(m.payload, m.delivery_attempt) for m in again] == [(b"poison", 2)]
        first.nack(again)
        assert drain(first, 0) == []
        first.close()
        dead = moto.consumer(destination.dead_letter, GROUPS[0])
        assert [m.payload for m in drain(dead, 1)] == [b"poison"]
        dead.close()
        other = moto.consumer(destination, GROUPS[1])  # untouched by the first group's nacks
        assert sorted(m.payload for m in drain(other, 2)) == [b"fine", b"poison"]
        other.close()
        assert drain(moto.consumer(destination.dead_letter, GROUPS[1]), 0) == []
    finally:
        moto.delete_destination(destination)


def test_ordered_fan_out_keeps_each_key_in_order(moto: SqsDriver) -> None:
    destination = fan_out(moto, ordered=True)
    try:
        messages = [(f"k-{n % 2}", f"{n:03d}".encode()) for n in range(20)]
        send(moto, destination, messages)
        for group in GROUPS:
            got = drain(moto.consumer(destination, group), len(messages))
            for key in ("k-0", "k-1"):
                sent = [payload for k, payload in messages if k == key]
                assert [m.payload for m in got if m.key == key] == sent, (group, key)
    finally:
        moto.delete_destination(destination)


def test_created_again_is_reused_and_deleted_without_a_trace(moto: SqsDriver) -> None:
    destination = fan_out(moto)
    again = moto.create_destination(destination.spec)  # as every service process does
    assert again == destination
    sns = moto.sns_client()
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=destination.address)
    assert len(subscriptions["Subscriptions"]) == len(GROUPS)  # no duplicate subscription
    assert all(
        sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"][
            "RawMessageDelivery"
        ]
        == "true"
        for s in subscriptions["Subscriptions"]
    )
    moto.delete_destination(destination)
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert destination.address not in topics
    queues = moto.client.list_queues(QueueNamePrefix=destination.spec.name).get("QueueUrls", [])
    assert queues == []
    all_subscriptions = sns.list_subscriptions()["Subscriptions"]
    assert not [s for s in all_subscriptions if s["TopicArn"] == destination.address]


def test_elasticmq_refuses_fan_out_naming_sns(stack: Stack, settings: Settings) -> None:
    driver = open_driver("elasticmq", settings)
    try:
        with pytest.raises(UserError, match="no SNS"):
            driver.create_destination(DestinationSpec("bb-fan-refused", groups=GROUPS))
    finally:
        driver.close()
