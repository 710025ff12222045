"""A workload's ``redelivery_timeout`` becomes the broker's own setting on what the run creates:
the SQS queues' visibility timeout (dead-letter queue included) and the Pub/Sub subscriptions'
ack deadline, against the local brokers, read back through each broker's API. Without it the
targets' settings (30 s) stay."""

import uuid
from collections.abc import Iterator

import pytest

from harness.drivers.base import DeadLetterPolicy, Destination, DestinationSpec
from harness.drivers.pubsub import PubSubDriver
from harness.drivers.sqs import SqsDriver
from harness.drivers.targets import open_driver
from harness.settings import Settings
from harness.stack.manager import Stack

pytestmark = pytest.mark.broker


def spec(redelivery_timeout: int | None) -> DestinationSpec:
    return DestinationSpec(
        f"bb-redelivery-{uuid.uuid4().hex[:8]}",
        dead_letter=DeadLetterPolicy(5),
        redelivery_timeout=redelivery_timeout,
    )


@pytest.fixture(params=["elasticmq", "moto"])
def sqs(request: pytest.FixtureRequest, stack: Stack, settings: Settings) -> Iterator[SqsDriver]:
    driver = open_driver(request.param, settings)
    assert isinstance(driver, SqsDriver)
    yield driver
    driver.close()


@pytest.fixture
def pubsub(stack: Stack, settings: Settings) -> Iterator[PubSubDriver]:
    driver = open_driver("pubsub", settings)
    assert isinstance(driver, PubSubDriver)
    yield driver
    driver.close()


def visibility_timeouts(driver: SqsDriver, destination: Destination) -> list[str]:
    return [
        driver.client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
            "Attributes"
        ]["VisibilityTimeout"]
        for url in (destination.address, destination.dead_letter_address)
        if url is not None
    ]


@pytest.mark.parametrize(("asked", "expected"), [(10, "10"), (None, "30")])
def test_sqs_queues_take_the_redelivery_timeout(
    sqs: SqsDriver, asked: int | None, expected: str
) -> None:
    destination = sqs.create_destination(spec(asked))
    try:
        assert visibility_timeouts(sqs, destination) == [expected, expected]
    finally:
        sqs.delete_destination(destination)


@pytest.mark.parametrize(("asked", "expected"), [(10, 10), (None, 30)])
def test_pubsub_subscriptions_take_the_redelivery_timeout(
    pubsub: PubSubDriver, asked: int | None, expected: int
) -> None:
    destination = pubsub.create_destination(spec(asked))
    try:
        topics = [destination.address, destination.dead_letter_address]
        subscriptions = [
            pubsub._subscriber.get_subscription(
                subscription=f"{topic}--default".replace("/topics/", "/subscriptions/")
            )
            for topic in topics
            if topic is not None
        ]
        assert [s.ack_deadline_seconds for s in subscriptions] == [expected, expected]
    finally:
        pubsub.delete_destination(destination)
