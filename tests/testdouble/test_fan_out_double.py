"""Fan-out on the memory TEST DOUBLE broker: a destination with two groups, whose knobs lose
a share of the messages for one group only (``lose_only_for``). Recorded as the service
processes record a fan-out (``receives.subscriber``, ``subscribed`` events) and checked by
``check_all``: the losses are caught as missing for THAT subscriber, and nowhere else (not
lost to the broker: the other subscriber got them). A test of the checkers through the real
recording path, not of any broker."""

import uuid
from pathlib import Path

import pytest

from harness.checkers import check_all
from harness.drivers.base import DestinationSpec, OrderingScope, SendResult
from harness.drivers.memory.driver import MemoryDriver
from harness.drivers.targets import open_driver
from harness.flows.plan import subscriber_name
from harness.history.envelope import Envelope, decode, encode
from harness.history.recorder import Recorder, partition_scope
from harness.history.schema import Disposition, EventKind, SendOutcome
from harness.history.store import compact, load
from harness.settings import ExternalTarget
from tests.memory_double import MemoryStack

pytestmark = pytest.mark.test_double

GROUPS = ("aggregator", "archive")
MESSAGES = 200


def test_a_subscriber_losing_messages_is_caught_for_that_subscriber(
    memory_stack: MemoryStack, tmp_path: Path
) -> None:
    knobs = {"lose": 0.1, "lose_only_for": "archive", "seed": 5}
    target = ExternalTarget(driver="memory", settings=knobs)
    settings = memory_stack.settings.model_copy(update={"targets": {"memory-lossy": target}})
    driver = open_driver("memory-lossy", settings)
    assert isinstance(driver, MemoryDriver)
    spec = DestinationSpec(f"bb-fan-{uuid.uuid4().hex[:8]}", partitions=2, groups=GROUPS)
    destination = driver.create_destination(spec)
    with Recorder(tmp_path, "run") as recorder:
        results: list[SendResult] = []
        producer = driver.producer(destination)
        for seq in range(MESSAGES):
            token = recorder.send_invoked(1, seq % 4, seq // 4, seq, seq)
            producer.send(
                f"k-{seq % 4}", encode(Envelope(7, 1, seq % 4, seq // 4, seq), 0), results.append
            )
            assert producer.flush(10) == 0
            recorder.send_completed(token, SendOutcome.OK, seq + 1)
        producer.close()
        assert all(result.ok for result in results)
        for consumer_id, group in enumerate(GROUPS):
            subscriber = subscriber_name("clicks", group)
            recorder.event(EventKind.SUBSCRIBED, subscriber)
            consumer = driver.consumer(destination, group)
            while batch := consumer.poll(100, 0.5):
                for message in batch:
                    decoded = decode(message.payload)
                    assert decoded is not None
                    envelope = decoded[0]
                    recorder.received(
                        consumer_id=consumer_id,
                        producer_id=envelope.producer_id,
                        key_id=envelope.key_id,
                        seq=envelope.seq,
                        intended_ns=envelope.intended_ns,
                        receive_ns=envelope.intended_ns + 10,
                        partition=message.partition if message.partition is not None else -1,
                        offset=message.offset if message.offset is not None else -1,
                        disposition=Disposition.ACKED,
                        scope=partition_scope(message.partition or 0),
                        subscriber=subscriber,
                    )
                consumer.ack(batch)
            consumer.close()
    lost = driver.stats(destination)["lost"]
    driver.delete_destination(destination)
    driver.close()
    assert lost > 0

    compact(tmp_path)
    history = load(tmp_path)
    found = {
        v.name: v
        for v in check_all(history.sends, history.receives, history.events, OrderingScope.PARTITION)
    }
    subscribers = found["subscribers"]
    assert subscribers.valid is False
    assert subscribers.counts["clicks/archive:missing"] == lost
    assert subscribers.counts["clicks/aggregator:missing"] == 0
    assert subscribers.counts["clicks/aggregator:received"] == MESSAGES
    assert found["lost"].valid is True  # every message reached a subscriber
    assert found["duplicates"].counts["extra_deliveries"] == 0
    assert found["ordering"].valid is True
    assert found["ordering"].counts["rebalance"] == 0  # each subscriber's partitions are its own
