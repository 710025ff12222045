"""SQS through boto3: standard and FIFO queues, redrive to a dead-letter queue, long polling.

Works against AWS, ElasticMQ and moto alike (the endpoint picks which). A queue is the one
consumer group SQS has. Sends are batched (up to 10 per SendMessageBatch, a few ms of linger)
on a background thread, so ``send`` never blocks the caller on the network.
"""

import base64
import contextlib
import json
import math
import queue
import re
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from harness.drivers.base import (
    Capabilities,
    DeadLetterSupport,
    Destination,
    DestinationSpec,
    LagProbe,
    OrderingScope,
    Outcome,
    Received,
    SendCallback,
    SendResult,
)
from harness.drivers.inflight import InFlight
from harness.errors import BrokerUnreachableError, UserError
from harness.settings import FrozenModel

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

KEY_ATTRIBUTE = "bb-key"
ENCODING_ATTRIBUTE = "bb-encoding"
MAX_BATCH = 10
# Characters SQS refuses in a message body; such payloads travel base64-encoded.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class SqsEndpoint(FrozenModel):
    endpoint_url: str | None = None
    """None for AWS itself; ``http://127.0.0.1:9324`` for the local ElasticMQ."""
    region: str = "us-east-1"
    access_key_id: str | None = None
    """None uses boto3's default credential chain."""
    secret_access_key: str | None = None
    visibility_timeout: int = 30
    linger_seconds: float = 0.005
    send_threads: int = 4


def _encode(payload: bytes) -> tuple[str, str]:
    try:
        text = payload.decode("utf-8")
        if not _NOT_SQS_TEXT.search(text):
            return text, "utf-8"
    except UnicodeDecodeError:
        pass
    return base64.b64encode(payload).decode("ascii"), "base64"


def _decode(body: str, encoding: str) -> bytes:
    return base64.b64decode(body) if encoding == "base64" else body.encode("utf-8")


def _queue_name(name: str, fifo: bool) -> str:
    return f"{name}.fifo" if fifo else name


class SqsDriver:
    name: ClassVar[str] = "sqs"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering_when_ordered=OrderingScope.MESSAGE_GROUP,
        ordering_when_unordered=OrderingScope.NONE,
        dead_letter=DeadLetterSupport.BROKER,
        exactly_once=frozenset({"fifo_deduplication"}),
        lag_probe=LagProbe.QUEUE_ATTRIBUTES,
        fifo_deduplication=True,
        fan_out=False,
    )
    endpoint_model: ClassVar[type[SqsEndpoint]] = SqsEndpoint

    def __init__(self, endpoint: SqsEndpoint) -> None:
        self.endpoint = endpoint
        self.client: SQSClient = boto3.client(
            "sqs",
            endpoint_url=endpoint.endpoint_url,
            region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key_id,
            aws_secret_access_key=endpoint.secret_access_key,
            config=Config(
                connect_timeout=3,
                read_timeout=25,  # above the 20 s long-poll maximum
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=max(10, endpoint.send_threads * 2),
            ),
        )
        try:
            self.client.list_queues(MaxResults=1)
        except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
            where = endpoint.endpoint_url or f"AWS {endpoint.region}"
            raise BrokerUnreachableError(
                f"sqs at {where} is unreachable: start it with `brokerbench up` or fix the "
                "target's endpoint_url"
            ) from exc

    def _create_queue(
        self, name: str, fifo: bool, attributes: "dict[QueueAttributeNameType, str]"
    ) -> str:
        queue_attributes: dict[QueueAttributeNameType, str] = {
            "VisibilityTimeout": str(self.endpoint.visibility_timeout)
        }
        if fifo:
            queue_attributes["FifoQueue"] = "true"
        answer = self.client.create_queue(
            QueueName=_queue_name(name, fifo), Attributes=queue_attributes | attributes
        )
        return answer["QueueUrl"]

    def create_destination(self, spec: DestinationSpec) -> Destination:
        if len(spec.groups) != 1:
            raise UserError(
                f"sqs: destination {spec.name} asks for {len(spec.groups)} consumer groups; an "
                "SQS queue has exactly one (fan-out needs SNS, which brokerbench does not drive)"
            )
        redrive: dict[QueueAttributeNameType, str] = {}
        dead_letter_url = None
        if spec.dead_letter is not None:
            dead_letter_url = self._create_queue(f"{spec.name}-dlq", spec.ordered, {})
            arn = self.client.get_queue_attributes(
                QueueUrl=dead_letter_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            redrive["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": arn,
                    "maxReceiveCount": str(spec.dead_letter.max_deliveries),
                }
            )
        url = self._create_queue(spec.name, spec.ordered, redrive)
        return Destination(spec, url, dead_letter_url)

    def delete_destination(self, destination: Destination) -> None:
        for url in (destination.address, destination.dead_letter_address):
            if url is None:
                continue
            with contextlib.suppress(self.client.exceptions.QueueDoesNotExist):
                self.client.delete_queue(QueueUrl=url)

    def producer(self, destination: Destination) -> "SqsProducer":
        return SqsProducer(self.client, destination, self.endpoint)

    def consumer(self, destination: Destination, group: str) -> "SqsConsumer":
        return SqsConsumer(self.client, destination)

    def backlog(self, destination: Destination, group: str) -> int | None:
        attributes = self.client.get_queue_attributes(
            QueueUrl=destination.address,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class _Pending:
    key: str
    payload: bytes
    on_complete: SendCallback
    dedup_id: str | None


def _outcome_of(error: Exception) -> Outcome:
    """Fail only when SQS itself refused the first and only attempt. botocore retries a batch
    on timeouts and connection errors, so whatever the last attempt's error, an earlier one may
    have reached SQS: unknown (seen in link-down runs: "failed" sends that were delivered)."""
    if isinstance(error, ClientError):
        retries = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return Outcome.FAIL if retries == 0 else Outcome.UNKNOWN
    return Outcome.UNKNOWN


class SqsProducer:
    """Sends through ``send_threads`` lanes; a key always takes the same lane, so messages of
    one key (one FIFO message group) reach SQS in the order they were sent."""

    def __init__(self, client: "SQSClient", destination: Destination, endpoint: SqsEndpoint):
        self._client = client
        self._url = destination.address
        self._fifo = destination.spec.ordered
        self._linger = endpoint.linger_seconds
        self._inflight = InFlight()
        self._lanes: list[queue.SimpleQueue[_Pending | None]] = [
            queue.SimpleQueue() for _ in range(endpoint.send_threads)
        ]
        self._threads = [
            threading.Thread(target=self._send_forever, args=(lane,), name="sqs-send", daemon=True)
            for lane in self._lanes
        ]
        for thread in self._threads:
            thread.start()

    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        self._inflight.add()
        lane = self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]
        lane.put(_Pending(key, payload, on_complete, dedup_id))

    def _send_forever(self, lane: "queue.SimpleQueue[_Pending | None]") -> None:
        """Collect up to 10 messages or for ``linger`` seconds, send them, repeat."""
        while True:
            first = lane.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._linger
            closing = False
            while len(batch) < MAX_BATCH:
                try:
                    item = lane.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            self._send_batch(batch)
            if closing:
                return

    def _entry(self, index: int, item: _Pending) -> "SendMessageBatchRequestEntryTypeDef":
        body, encoding = _encode(item.payload)
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(index),
            "MessageBody": body,
            "MessageAttributes": {
                KEY_ATTRIBUTE: {"DataType": "String", "StringValue": item.key},
                ENCODING_ATTRIBUTE: {"DataType": "String", "StringValue": encoding},
            },
        }
        if self._fifo:
            entry["MessageGroupId"] = item.key
            entry["MessageDeduplicationId"] = item.dedup_id or uuid.uuid4().hex
        return entry

    def _send_batch(self, batch: list[_Pending]) -> None:
        try:
            answer = self._client.send_message_batch(
                QueueUrl=self._url, Entries=[self._entry(i, item) for i, item in enumerate(batch)]
            )
        except (BotoCoreError, ClientError) as exc:
            for item in batch:
                item.on_complete(SendResult(item.key, _outcome_of(exc), error=str(exc)))
            self._inflight.done(len(batch))
            return
        for success in answer.get("Successful", []):
            item = batch[int(success["Id"])]
            item.on_complete(SendResult(item.key, Outcome.OK, success["MessageId"]))
        for failure in answer.get("Failed", []):
            item = batch[int(failure["Id"])]
            error = f"{failure['Code']}: {failure.get('Message', '')}"
            item.on_complete(SendResult(item.key, Outcome.FAIL, error=error))
        self._inflight.done(len(batch))

    def flush(self, timeout: float) -> int:
        return self._inflight.wait(timeout)

    def close(self) -> None:
        self.flush(30)
        for lane in self._lanes:
            lane.put(None)
        for thread in self._threads:
            thread.join(timeout=5)


class SqsConsumer:
    def __init__(self, client: "SQSClient", destination: Destination) -> None:
        self._client = client
        self._url = destination.address

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        answer = self._client.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=max(1, min(max_messages, MAX_BATCH)),
            WaitTimeSeconds=min(20, math.ceil(timeout)),
            AttributeNames=["ApproximateReceiveCount"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=[KEY_ATTRIBUTE, ENCODING_ATTRIBUTE],
        )
        return [_received(message) for message in answer.get("Messages", [])]

    def _each_batch(self, messages: Sequence[Received]) -> list[list[Received]]:
        return [list(messages[i : i + MAX_BATCH]) for i in range(0, len(messages), MAX_BATCH)]

    def ack(self, messages: Sequence[Received]) -> None:
        for batch in self._each_batch(messages):
            self._client.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(i), "ReceiptHandle": m.handle} for i, m in enumerate(batch)],
            )

    def nack(self, messages: Sequence[Received]) -> None:
        for batch in self._each_batch(messages):
            self._client.change_message_visibility_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(batch)
                ],
            )

    def close(self) -> None:
        """The boto3 client belongs to the driver; nothing to release here."""


def _received(message: Any) -> Received:
    attributes = message.get("MessageAttributes", {})
    key = attributes.get(KEY_ATTRIBUTE, {}).get("StringValue", "")
    encoding = attributes.get(ENCODING_ATTRIBUTE, {}).get("StringValue", "utf-8")
    count = message.get("Attributes", {}).get("ApproximateReceiveCount")
    return Received(
        key=key,
        payload=_decode(message["Body"], encoding),
        message_id=message["MessageId"],
        delivery_attempt=int(count) if count is not None else None,
        handle=message["ReceiptHandle"],
    )
