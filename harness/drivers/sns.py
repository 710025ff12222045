"""Fan-out on SQS: an SNS topic in front of one SQS queue per group.

A ``DestinationSpec`` with several groups becomes, on an endpoint that serves SNS (moto, AWS):

- the SNS topic ``<name>`` (``<name>.fifo`` when ordered: a FIFO topic feeds FIFO queues,
  each message group in order), the destination's ``address``;
- per group, the queue ``<name>--<group>`` (+ ``.fifo``) subscribed to the topic with raw
  message delivery (the body and the ``bb-*`` attributes arrive as published, not wrapped in
  SNS's JSON envelope), and, with a dead-letter policy, its own ``<name>--<group>-dlq`` with a
  redrive policy: each group's poison ends in its own dead-letter queue.

Each queue carries a policy letting the topic send to it (AWS needs it; moto ignores it). Every
step is idempotent (CreateTopic, CreateQueue with the same attributes, Subscribe with the same
endpoint and attributes answer with what exists), so every process of a run may create the
destination it uses. Deleting unsubscribes the queues, then deletes the topic and the queues.

The producer (``SnsProducer`` in ``harness.drivers.sqs``) publishes to the topic; a group's
consumer reads its queue (``Destination.address_for``)."""

import contextlib
import json
from typing import Any, Protocol

from harness.drivers.base import Destination, DestinationSpec


class QueueMaker(Protocol):
    """What fan-out needs of the SQS driver (kept apart so this module does not import it)."""

    def sns_client(self) -> Any: ...

    def queue_arn(self, url: str) -> str: ...

    def create_queue_with_dead_letter(
        self, name: str, spec: DestinationSpec, attributes: Any = None
    ) -> tuple[str, str | None]: ...

    def delete_queue(self, url: str) -> None: ...


def queue_name(destination: str, group: str) -> str:
    """The queue of ``group`` in the fan-out destination ``destination``."""
    return f"{destination}--{group}"


def _send_policy(topic_arn: str) -> str:
    """A queue policy letting the SNS topic (and only it) send to the queue."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": "*",
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        },
        sort_keys=True,
    )


def create_fan_out(driver: QueueMaker, spec: DestinationSpec) -> Destination:
    """The topic, a queue per group subscribed with raw delivery, their dead-letter queues."""
    client = driver.sns_client()
    attributes = {"FifoTopic": "true"} if spec.ordered else {}
    name = f"{spec.name}.fifo" if spec.ordered else spec.name
    topic_arn: str = client.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    queues: list[tuple[str, str]] = []
    dead_letters: list[tuple[str, str]] = []
    for group in spec.groups:
        url, dead_letter_url = driver.create_queue_with_dead_letter(
            queue_name(spec.name, group), spec, {"Policy": _send_policy(topic_arn)}
        )
        client.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=driver.queue_arn(url),
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        queues.append((group, url))
        if dead_letter_url is not None:
            dead_letters.append((group, dead_letter_url))
    return Destination(
        spec,
        topic_arn,
        group_addresses=tuple(queues),
        dead_letter_group_addresses=tuple(dead_letters),
    )


def delete_fan_out(driver: QueueMaker, destination: Destination) -> None:
    """Unsubscribe every queue, delete the topic, then the queues and dead-letter queues."""
    client = driver.sns_client()
    not_found = client.exceptions.NotFoundException
    with contextlib.suppress(not_found):
        pages = client.get_paginator("list_subscriptions_by_topic").paginate(
            TopicArn=destination.address
        )
        for page in pages:
            for subscription in page.get("Subscriptions", []):
                with contextlib.suppress(not_found):
                    client.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    with contextlib.suppress(not_found):
        client.delete_topic(TopicArn=destination.address)
    for _, url in (*destination.group_addresses, *destination.dead_letter_group_addresses):
        driver.delete_queue(url)
