"""Google Pub/Sub through google-cloud-pubsub: topics, one subscription per group, ordering
keys, dead-letter policy. Targets the emulator (``emulator_host``) or Google Cloud itself.

Consumers use unary Pull with explicit acks so that a poll returns exactly what the caller
will ack; publishing goes through the client's batching publisher with a short max latency.
"""

import contextlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import grpc
from google.api_core import exceptions as google_errors
from google.api_core import retry as api_retry
from google.api_core.timeout import ConstantTimeout
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

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

KEY_ATTRIBUTE = "bb-key"
_EMPTY_PULL_BACKOFF = 0.005
# Errors that say the message was certainly not stored (the request was refused as such); after
# any other (a deadline, an unavailable or reset connection, retries that gave up) it may or
# may not have been.
_REFUSED_ERRORS = (
    google_errors.InvalidArgument,
    google_errors.NotFound,
    google_errors.PermissionDenied,
    google_errors.Unauthenticated,
    google_errors.FailedPrecondition,
)
# What the client library retries by default for Publish.
_RETRIED_ERRORS = (
    google_errors.Aborted,
    google_errors.Cancelled,
    google_errors.DeadlineExceeded,
    google_errors.InternalServerError,
    google_errors.ResourceExhausted,
    google_errors.ServiceUnavailable,
    google_errors.Unknown,
)


class PubSubEndpoint(FrozenModel):
    project: str
    emulator_host: str | None = None
    """``host:port`` of an emulator; None for Google Cloud with default credentials."""
    ack_deadline_seconds: int = 30
    publish_max_latency: float = 0.005
    publish_timeout: float = 60.0
    """How long a publish is retried before its outcome is reported unknown."""
    connect_timeout: float = 10.0


def emulator_publisher(host: str, **options: Any) -> pubsub_v1.PublisherClient:
    """A publisher for an emulator at ``host`` over plain gRPC (no PUBSUB_EMULATOR_HOST)."""
    transport = PublisherGrpcTransport(channel=grpc.insecure_channel(host))
    return pubsub_v1.PublisherClient(transport=transport, **options)


def _subscriber(endpoint: PubSubEndpoint) -> pubsub_v1.SubscriberClient:
    if endpoint.emulator_host is None:
        return pubsub_v1.SubscriberClient()
    transport = SubscriberGrpcTransport(channel=grpc.insecure_channel(endpoint.emulator_host))
    return pubsub_v1.SubscriberClient(transport=transport)


def _publisher(endpoint: PubSubEndpoint, **options: Any) -> pubsub_v1.PublisherClient:
    if endpoint.emulator_host is None:
        return pubsub_v1.PublisherClient(**options)
    return emulator_publisher(endpoint.emulator_host, **options)


def _subscription(topic_path: str, group: str) -> str:
    return f"{topic_path.replace('/topics/', '/subscriptions/')}--{group}"


class PubSubDriver:
    name: ClassVar[str] = "pubsub"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering_when_ordered=OrderingScope.ORDERING_KEY,
        ordering_when_unordered=OrderingScope.NONE,
        dead_letter=DeadLetterSupport.BROKER,
        exactly_once=frozenset({"exactly_once_delivery"}),
        lag_probe=LagProbe.DERIVED,
    )
    endpoint_model: ClassVar[type[PubSubEndpoint]] = PubSubEndpoint

    def __init__(self, endpoint: PubSubEndpoint) -> None:
        self.endpoint = endpoint
        self._admin = _publisher(endpoint)
        self._subscriber = _subscriber(endpoint)
        try:
            self._admin.list_topics(
                request={"project": f"projects/{endpoint.project}", "page_size": 1},
                timeout=endpoint.connect_timeout,
            )
        except (google_errors.ServiceUnavailable, google_errors.DeadlineExceeded) as exc:
            where = endpoint.emulator_host or "Google Cloud"
            raise BrokerUnreachableError(
                f"pubsub at {where} is unreachable: start it with `brokerbench up` or fix the "
                "target's emulator_host"
            ) from exc

    def _topic(self, name: str) -> str:
        return f"projects/{self.endpoint.project}/topics/{name}"

    def _create_topic(self, path: str) -> None:
        with contextlib.suppress(google_errors.AlreadyExists):
            self._admin.create_topic(name=path)

    def _create_subscription(self, path: str, topic: str, **settings: Any) -> None:
        with contextlib.suppress(google_errors.AlreadyExists):
            self._subscriber.create_subscription(
                request={
                    "name": path,
                    "topic": topic,
                    "ack_deadline_seconds": self.endpoint.ack_deadline_seconds,
                    **settings,
                }
            )

    def create_destination(self, spec: DestinationSpec) -> Destination:
        topic = self._topic(spec.name)
        self._create_topic(topic)
        settings: dict[str, Any] = {
            "enable_message_ordering": spec.ordered,
            "enable_exactly_once_delivery": spec.exactly_once,
        }
        dead_letter = None
        if spec.dead_letter is not None:
            if not 5 <= spec.dead_letter.max_deliveries <= 100:
                raise UserError(
                    f"pubsub: dead_letter max_deliveries is {spec.dead_letter.max_deliveries}; "
                    "Pub/Sub accepts 5 to 100"
                )
            dead_letter = self._topic(f"{spec.name}-dlq")
            self._create_topic(dead_letter)
            for group in spec.groups:
                self._create_subscription(_subscription(dead_letter, group), dead_letter)
            settings["dead_letter_policy"] = {
                "dead_letter_topic": dead_letter,
                "max_delivery_attempts": spec.dead_letter.max_deliveries,
            }
        for group in spec.groups:
            self._create_subscription(_subscription(topic, group), topic, **settings)
        return Destination(spec, topic, dead_letter)

    def delete_destination(self, destination: Destination) -> None:
        for topic in (destination.address, destination.dead_letter_address):
            if topic is None:
                continue
            for group in destination.spec.groups:
                with contextlib.suppress(google_errors.NotFound):
                    self._subscriber.delete_subscription(subscription=_subscription(topic, group))
            with contextlib.suppress(google_errors.NotFound):
                self._admin.delete_topic(topic=topic)

    def producer(self, destination: Destination) -> "PubSubProducer":
        return PubSubProducer(self.endpoint, destination)

    def consumer(self, destination: Destination, group: str) -> "PubSubConsumer":
        return PubSubConsumer(_subscriber(self.endpoint), _subscription(destination.address, group))

    def backlog(self, destination: Destination, group: str) -> int | None:
        return None

    def close(self) -> None:
        self._admin.transport.close()
        self._subscriber.close()


class PubSubProducer:
    def __init__(self, endpoint: PubSubEndpoint, destination: Destination) -> None:
        self._topic = destination.address
        self._ordered = destination.spec.ordered
        self._inflight = InFlight()
        self._publisher = _publisher(
            endpoint,
            batch_settings=pubsub_v1.types.BatchSettings(
                max_latency=endpoint.publish_max_latency, max_messages=100
            ),
            publisher_options=pubsub_v1.types.PublisherOptions(
                enable_message_ordering=self._ordered,
                retry=api_retry.Retry(
                    predicate=api_retry.if_exception_type(*_RETRIED_ERRORS),
                    initial=0.1,
                    maximum=5.0,
                    timeout=endpoint.publish_timeout,
                ),
                timeout=ConstantTimeout(min(60.0, endpoint.publish_timeout)),  # type: ignore[no-untyped-call]
            ),
        )

    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        self._inflight.add()
        future = self._publisher.publish(
            self._topic,
            payload,
            ordering_key=key if self._ordered else "",
            **{KEY_ATTRIBUTE: key},
        )

        def completed(done: Any) -> None:
            try:
                error = done.exception()
                if error is None:
                    on_complete(SendResult(key, Outcome.OK, str(done.result())))
                    return
                outcome = Outcome.FAIL if isinstance(error, _REFUSED_ERRORS) else Outcome.UNKNOWN
                if self._ordered:  # an ordered publisher pauses a key after a failure
                    self._publisher.resume_publish(self._topic, key)
                on_complete(SendResult(key, outcome, error=str(error)))
            finally:
                self._inflight.done()

        future.add_done_callback(completed)

    def flush(self, timeout: float) -> int:
        return self._inflight.wait(timeout)

    def close(self) -> None:
        self.flush(30)
        self._publisher.stop()
        self._publisher.transport.close()


_TRANSIENT_PULL_ERRORS = (
    google_errors.DeadlineExceeded,
    google_errors.Cancelled,  # the emulator (or a proxy) reset the stream
    google_errors.ServiceUnavailable,
)


class PubSubConsumer:
    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscription: str) -> None:
        self._subscriber = subscriber
        self._subscription = subscription

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                answer = self._subscriber.pull(
                    request={"subscription": self._subscription, "max_messages": max_messages},
                    timeout=max(remaining, 0.5),
                    retry=None,
                )
            except _TRANSIENT_PULL_ERRORS:  # the caller polls again
                return []
            if answer.received_messages or time.monotonic() >= deadline:
                return [_received(message) for message in answer.received_messages]
            time.sleep(_EMPTY_PULL_BACKOFF)  # the emulator answers an empty pull at once

    def ack(self, messages: Sequence[Received]) -> None:
        if messages:
            self._subscriber.acknowledge(
                request={
                    "subscription": self._subscription,
                    "ack_ids": [m.handle for m in messages],
                }
            )

    def nack(self, messages: Sequence[Received]) -> None:
        if messages:
            self._subscriber.modify_ack_deadline(
                request={
                    "subscription": self._subscription,
                    "ack_ids": [m.handle for m in messages],
                    "ack_deadline_seconds": 0,
                }
            )

    def close(self) -> None:
        self._subscriber.close()


def _received(message: Any) -> Received:
    body = message.message
    return Received(
        key=body.attributes.get(KEY_ATTRIBUTE, body.ordering_key),
        payload=bytes(body.data),
        message_id=body.message_id,
        delivery_attempt=message.delivery_attempt or None,
        handle=message.ack_id,
    )
