"""SQS batch requests whose entries fail (item 8 of issue 12), against the real ElasticMQ and
moto: DeleteMessageBatch / ChangeMessageVisibilityBatch answer 200 with a ``Failed`` entry for
a receipt handle they do not know. The driver checks ``Failed``, counts what fails for good,
and the consumer processes put the count in the history, where the duplicates check reads it.
The retry of entries SQS failed on its own side cannot be provoked here: see
tests/unit/test_sqs_batch_retries.py (botocore's Stubber)."""

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.duplicates import failed_acks_of
from harness.drivers.base import Destination, DestinationSpec, Received, SendResult
from harness.drivers.sqs import SqsConsumer, SqsDriver
from harness.drivers.targets import open_driver
from harness.history.recorder import Recorder, record_failed_acks
from harness.history.store import read_shards
from harness.settings import Settings
from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

UNKNOWN_HANDLE = "no-such-receipt-handle"


@pytest.fixture(params=["elasticmq", "moto"])
def queue(
    request: pytest.FixtureRequest, stack: Stack, settings: Settings
) -> Iterator[tuple[SqsDriver, Destination]]:
    driver = open_driver(request.param, settings)
    assert isinstance(driver, SqsDriver)
    destination = driver.create_destination(DestinationSpec(f"bb-failed-{uuid.uuid4().hex[:8]}"))
    yield driver, destination
    driver.delete_destination(destination)
    driver.close()


def send(driver: SqsDriver, destination: Destination, count: int) -> None:
    results: list[SendResult] = []
    producer = driver.producer(destination)
    for index in range(count):
        producer.send(f"k-{index}", f"body-{index}".encode(), results.append)
    assert producer.flush(60) == 0
    producer.close()
    assert [result.ok for result in results] == [True] * count


def receive(consumer: SqsConsumer, count: int) -> list[Received]:
    got: list[Received] = []
    for _ in range(30):  # long polls of up to 2 s each
        got += consumer.poll(10, 2)
        if len(got) >= count:
            break
    assert len(got) == count
    return got


def counting(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of ``target.name`` (entries per call), still calling it."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(target, name)

    def spy(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Entries"]))
        return real(**kwargs)

    monkeypatch.setattr(target, name, spy)
    return calls


def test_a_delete_sqs_refuses_is_counted_and_recorded_in_the_history(
    queue: tuple[SqsDriver, Destination], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    driver, destination = queue
    send(driver, destination, 1)
    consumer = driver.consumer(destination, "default")
    [message] = receive(consumer, 1)
    deletes = counting(driver.client, "delete_message_batch", monkeypatch)

    unknown = dataclasses.replace(message, handle=UNKNOWN_HANDLE)
    consumer.ack([message, unknown])  # one request: one entry deleted, one refused

    assert consumer.failed_acks == 1
    assert consumer.failed_ack_errors == {"ReceiptHandleIsInvalid": 1}
    assert deletes == [2]  # a sender fault fails the same way again: not retried
    assert driver.backlog(destination, "default") == 0  # the genuine entry was deleted
    consumer.close()
    with Recorder(tmp_path, "consumer-0") as recorder:
        assert record_failed_acks(recorder, consumer, driver.name) == 1
    assert failed_acks_of(read_shards(tmp_path, "events")) == 1


def test_a_nack_sqs_refuses_is_counted(queue: tuple[SqsDriver, Destination]) -> None:
    driver, destination = queue
    send(driver, destination, 1)
    consumer = driver.consumer(destination, "default")
    [message] = receive(consumer, 1)

    consumer.nack([dataclasses.replace(message, handle=UNKNOWN_HANDLE)])

    assert consumer.failed_nacks == 1
    assert consumer.failed_acks == 0
    consumer.ack([message])
    consumer.close()


def test_the_normal_paths_report_no_failure(
    queue: tuple[SqsDriver, Destination], tmp_path: Path
) -> None:
    driver, destination = queue
    send(driver, destination, 25)
    consumer = driver.consumer(destination, "default")
    first, *rest = receive(consumer, 25)
    consumer.nack([first])  # made visible again at once ...
    [again] = receive(consumer, 1)  # ... and delivered again
    consumer.ack([again, *rest])
    consumer.close()

    batched = driver.consumer(destination, "default")
    send(driver, destination, 25)
    taken = 0
    for _ in range(30):
        batch = batched.poll_batch(25, 2)
        batched.ack_batch(batch)  # deleted in the background
        taken += len(batch)
        if taken >= 25:
            break
    batched.close()  # completes the background deletes

    assert taken == 25
    assert (consumer.failed_acks, consumer.failed_nacks, batched.failed_acks) == (0, 0, 0)
    assert driver.backlog(destination, "default") == 0
    with Recorder(tmp_path, "consumer-0") as recorder:
        assert record_failed_acks(recorder, batched, driver.name) == 0
    assert read_shards(tmp_path, "events").num_rows == 0
