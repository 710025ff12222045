"""The SQS driver's retries of batch entries SQS failed on its own side (``SenderFault``
false), which neither ElasticMQ nor moto can be made to answer: these tests use botocore's
Stubber, a STUB of SQS's answers (no broker). What real brokers answer is in
tests/contract/test_sqs_batch_failures.py."""

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from harness.drivers import sqs
from harness.drivers.base import Destination, DestinationSpec, Received
from harness.drivers.sqs import BATCH_RETRIES, SqsConsumer, SqsEndpoint

URL = "http://127.0.0.1:1/000000000000/q"
INTERNAL = {"SenderFault": False, "Code": "InternalError", "Message": "try again"}


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqsConsumer, Stubber]]:
    monkeypatch.setattr(sqs.time, "sleep", lambda _seconds: None)  # the back-off
    client = boto3.client(
        "sqs",
        endpoint_url="http://127.0.0.1:1",
        region_name="us-east-1",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
    )
    consumer = SqsConsumer(client, Destination(DestinationSpec("q"), URL), SqsEndpoint())
    with Stubber(client) as stubber:
        yield consumer, stubber
        stubber.assert_no_pending_responses()


def messages(*handles: str) -> list[Received]:
    return [Received("k", b"", f"m-{h}", handle=h) for h in handles]


def delete(stubber: Stubber, entries: dict[str, str], failed: list[dict[str, object]]) -> None:
    """Expect a DeleteMessageBatch of ``entries`` (id -> handle); answer with ``failed``."""
    failed_ids = {entry["Id"] for entry in failed}
    stubber.add_response(
        "delete_message_batch",
        {
            "Successful": [{"Id": i} for i in entries if i not in failed_ids],
            "Failed": failed,
        },
        {
            "QueueUrl": URL,
            "Entries": [{"Id": i, "ReceiptHandle": h} for i, h in entries.items()],
        },
    )


def test_an_entry_sqs_failed_on_its_side_is_retried_alone_until_it_succeeds(
    stubbed: tuple[SqsConsumer, Stubber],
) -> None:
    consumer, stubber = stubbed
    delete(stubber, {"0": "a", "1": "b"}, [{"Id": "1", **INTERNAL}])
    delete(stubber, {"1": "b"}, [])  # the retry carries only the failed entry

    consumer.ack(messages("a", "b"))

    assert consumer.failed_acks == 0


def test_an_entry_that_keeps_failing_is_counted_after_the_last_retry(
    stubbed: tuple[SqsConsumer, Stubber],
) -> None:
    consumer, stubber = stubbed
    delete(stubber, {"0": "a", "1": "b"}, [{"Id": "1", **INTERNAL}])
    for _ in range(BATCH_RETRIES):
        delete(stubber, {"1": "b"}, [{"Id": "1", **INTERNAL}])

    consumer.ack(messages("a", "b"))

    assert consumer.failed_acks == 1
    assert consumer.failed_ack_errors == {"InternalError": 1}


def test_the_background_deletes_retry_too(stubbed: tuple[SqsConsumer, Stubber]) -> None:
    consumer, stubber = stubbed
    delete(stubber, {"0": "a"}, [{"Id": "0", **INTERNAL}])
    delete(stubber, {"0": "a"}, [])

    consumer._delete_in_background(["a"])

    assert consumer.failed_acks == 0


def test_a_visibility_change_that_keeps_failing_is_counted(
    stubbed: tuple[SqsConsumer, Stubber],
) -> None:
    consumer, stubber = stubbed
    expected = {
        "QueueUrl": URL,
        "Entries": [{"Id": "0", "ReceiptHandle": "a", "VisibilityTimeout": 0}],
    }
    for _ in range(BATCH_RETRIES + 1):
        answer = {"Successful": [], "Failed": [{"Id": "0", **INTERNAL}]}
        stubber.add_response("change_message_visibility_batch", answer, expected)

    consumer.nack(messages("a"))

    assert (consumer.failed_nacks, consumer.failed_acks) == (1, 0)
