"""Google Pub/Sub through google-cloud-pubsub: topics, one subscription per group, ordering
keys, dead-letter policy. Targets the emulator (``emulator_host``) or Google Cloud itself.

Publishing goes through the shared ``Batcher`` (``harness.drivers.batcher``): Publish requests
of the generated (GAPIC) client, full whenever the arrival rate allows, several in flight, an
ordering key never in two at once. The library's batching publisher costs 5 to 10 times more CPU
per message (a thread per batch, a future and a proto-plus message per message) and lingers a
fixed time whatever the rate.

Consumers use unary Pull with explicit acks, so a poll returns exactly what the caller will ack:
``poll``/``ack``/``nack`` directly, ``poll_batch`` from a pull thread that pulls ahead
(``harness.drivers.prefetch``), ``ack_batch`` with Acknowledge requests in the background.
Streaming pull was measured and not kept: it costs more CPU per message and is slower (the
library dispatches, leases and acks each message on its own).
"""

import contextlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TypeAlias

import grpc
from google.api_core import exceptions as google_errors
from google.api_core import retry as api_retry
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.client import PublisherClient as PublishApi
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import PublishRequest, PubsubMessage

from harness.drivers.base import (
    Capabilities,
    DeadLetterSupport,
    Destination,
    DestinationSpec,
    FanOut,
    LagProbe,
    OrderingScope,
    Outcome,
    Received,
    ReceivedBatch,
    SendCallback,
    SendCompletions,
)
from harness.drivers.batcher import Batcher, MessageOutcomes, ToCallback, ToCompletions
from harness.drivers.prefetch import (
    FailedAcks,
    Fields,
    Prefetcher,
    Receipt,
    as_batch,
    as_received,
    empty_batch,
)
from harness.errors import BrokerUnreachableError, UserError
from harness.models import FrozenModel

KEY_ATTRIBUTE = "bb-key"
_EMPTY_PULL_BACKOFF = 0.005
MAX_PUBLISH_MESSAGES = 1000
"""Pub/Sub's limit per Publish request."""
MAX_PUBLISH_BYTES = 1_000_000
"""Bytes per Publish request (the library's batching default; Pub/Sub allows 10 MB)."""
FULL_PUBLISH = 10
"""The request size the linger waits for: a Publish costs about as much CPU as 10 messages."""
PULL_MAX = 1000
PULL_TIMEOUT = 2.0
"""A pull thread's request deadline. The emulator holds an empty pull until about a second
before the deadline (and answers at once when it is under a second), Pub/Sub may hold it up to
the deadline: either way ``close`` is prompt."""
MAX_ACK_IDS = 1000
_MESSAGE_PB = PubsubMessage.pb()
_PUBLISH_REQUEST_PB = PublishRequest.pb()
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
    publish_max_latency: float = 0.05
    """The longest a message waits for its Publish request to fill; the wait itself follows
    the arrival rate (``harness.drivers.batcher.linger_for_rate``)."""
    publish_threads: int = 4
    """Publish requests in flight at most."""
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


def _publisher(endpoint: PubSubEndpoint) -> pubsub_v1.PublisherClient:
    if endpoint.emulator_host is None:
        return pubsub_v1.PublisherClient()
    return emulator_publisher(endpoint.emulator_host)


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
        fan_out=FanOut.GROUPS,
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

    def _create_subscription(
        self, path: str, topic: str, ack_deadline_seconds: int, **settings: Any
    ) -> None:
        with contextlib.suppress(google_errors.AlreadyExists):
            self._subscriber.create_subscription(
                request={
                    "name": path,
                    "topic": topic,
                    "ack_deadline_seconds": ack_deadline_seconds,
                    **settings,
                }
            )

    def create_destination(self, spec: DestinationSpec) -> Destination:
        topic = self._topic(spec.name)
        self._create_topic(topic)
        deadline = spec.redelivery_or(self.endpoint.ack_deadline_seconds)
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
                self._create_subscription(_subscription(dead_letter, group), dead_letter, deadline)
            settings["dead_letter_policy"] = {
                "dead_letter_topic": dead_letter,
                "max_delivery_attempts": spec.dead_letter.max_deliveries,
            }
        for group in spec.groups:
            self._create_subscription(_subscription(topic, group), topic, deadline, **settings)
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


def _publish_api(endpoint: PubSubEndpoint) -> PublishApi:
    if endpoint.emulator_host is None:
        return PublishApi()
    return PublishApi(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(endpoint.emulator_host))
    )


_Pending: TypeAlias = tuple[Any, MessageOutcomes, int]
"""A queued message: its PubsubMessage protobuf, where its outcome goes, and its index."""


class PubSubProducer:
    """Sends through a ``Batcher``: Publish requests of up to 1000 messages, up to
    ``publish_threads`` in flight; an ordering key never has two requests in flight, so its
    messages reach Pub/Sub in the order they were sent."""

    def __init__(self, endpoint: PubSubEndpoint, destination: Destination) -> None:
        self._topic = destination.address
        self._ordered = destination.spec.ordered
        self._api = _publish_api(endpoint)
        self._retry = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_RETRIED_ERRORS),
            initial=0.1,
            maximum=5.0,
            timeout=endpoint.publish_timeout,
        )
        self._attempt_timeout = min(60.0, endpoint.publish_timeout)
        self._batcher: Batcher[_Pending] = Batcher(
            self._send_request,
            name="pubsub-publish",
            max_batch=MAX_PUBLISH_MESSAGES,
            max_in_flight=endpoint.publish_threads,
            max_linger=endpoint.publish_max_latency,
            fill=FULL_PUBLISH,
            max_bytes=MAX_PUBLISH_BYTES,
            ordered=self._ordered,
        )

    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        self._queue([key], [payload], 0, ToCallback(key, on_complete))

    def send_batch(
        self,
        keys: Sequence[str],
        payloads: Sequence[bytes],
        first_index: int,
        completions: SendCompletions,
        *,
        dedup_ids: Sequence[str] | None = None,
    ) -> None:
        self._queue(keys, payloads, first_index, ToCompletions(completions))

    def _queue(
        self,
        keys: Sequence[str],
        payloads: Sequence[bytes],
        first_index: int,
        outcomes: MessageOutcomes,
    ) -> None:
        ordered = self._ordered
        items: list[_Pending] = [
            (
                _MESSAGE_PB(
                    data=payload,
                    attributes={KEY_ATTRIBUTE: key},
                    ordering_key=key if ordered else "",
                ),
                outcomes,
                first_index + position,
            )
            for position, (key, payload) in enumerate(zip(keys, payloads, strict=True))
        ]
        sizes = [
            len(payload) + 2 * len(key) + 32 for key, payload in zip(keys, payloads, strict=True)
        ]
        self._batcher.add(items, keys if ordered else None, sizes)

    def _send_request(self, items: list[_Pending]) -> None:
        request = PublishRequest.wrap(
            _PUBLISH_REQUEST_PB(topic=self._topic, messages=[message for message, _, _ in items])
        )
        try:
            answer = self._api.publish(
                request=request, retry=self._retry, timeout=self._attempt_timeout
            )
        except Exception as error:  # a refusal fails; anything else leaves the outcome open
            outcome = Outcome.FAIL if isinstance(error, _REFUSED_ERRORS) else Outcome.UNKNOWN
            for _, outcomes, index in items:
                outcomes.failed(index, outcome, str(error))
            return
        for (_, outcomes, index), message_id in zip(items, answer.message_ids, strict=True):
            outcomes.sent(index, message_id)

    def flush(self, timeout: float) -> int:
        return self._batcher.flush(timeout)

    def close(self) -> None:
        self._batcher.close(30)
        self._api.transport.close()  # type: ignore[no-untyped-call]


_TRANSIENT_PULL_ERRORS = (
    google_errors.DeadlineExceeded,
    google_errors.Cancelled,  # the emulator (or a proxy) reset the stream
    google_errors.ServiceUnavailable,
)


class PubSubConsumer:
    """``poll``/``ack``/``nack`` call Pub/Sub directly; ``poll_batch`` takes from a pull thread
    started by its first call, and ``ack_batch`` acknowledges in the background. A consumer is
    used one way or the other."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscription: str) -> None:
        self._subscriber = subscriber
        self._subscription = subscription
        self._prefetcher: Prefetcher | None = None
        self._acks: Batcher[str] | None = None
        self._failed_acks = FailedAcks("pubsub")

    @property
    def failed_acks(self) -> int:
        """Messages whose background acknowledge failed: Pub/Sub delivers them again."""
        return self._failed_acks.count

    @property
    def failed_ack_errors(self) -> dict[str, int]:
        """``failed_acks`` by kind of error."""
        return dict(self._failed_acks.errors)

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                answer = self._pull(max_messages, max(remaining, 0.5))
            except _TRANSIENT_PULL_ERRORS:  # the caller polls again
                return []
            if answer.received_messages or time.monotonic() >= deadline:
                return as_received([_fields(m) for m in answer.received_messages])
            time.sleep(_EMPTY_PULL_BACKOFF)  # the emulator answers a short pull at once

    def ack(self, messages: Sequence[Received]) -> None:
        if messages:
            self._acknowledge([m.handle for m in messages])

    def nack(self, messages: Sequence[Received]) -> None:
        if messages:
            self._make_available([m.handle for m in messages])

    def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
        if self._prefetcher is None:
            self._prefetcher = Prefetcher(
                self._pull_batch,
                name="pubsub-pull",
                threads=1,  # a second pull could overtake the first: keys stay in order
                full=PULL_MAX,
                max_buffered=PULL_MAX,
                release=lambda batch: self._make_available(batch.handle),
            )
        return self._prefetcher.take(max_messages, timeout)

    def ack_batch(self, batch: ReceivedBatch) -> None:
        if self._acks is None:
            self._acks = Batcher(
                self._acknowledge_in_background,
                name="pubsub-ack",
                max_batch=MAX_ACK_IDS,
                max_in_flight=1,
            )
        self._acks.add(batch.handle)

    def close(self) -> None:
        """Stops the pull thread (what it pulled but ``poll_batch`` never returned is made
        available again, not acked) and completes the acks of what was acked."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self._acks is not None:
            self._acks.close(30)
        self._subscriber.close()

    def _pull(self, max_messages: int, timeout: float) -> Any:
        """A Pull's answer as the protobuf itself: reading its fields through the library's
        proto-plus wrappers costs several times more."""
        answer = self._subscriber.pull(
            request={"subscription": self._subscription, "max_messages": max_messages},
            timeout=timeout,
            retry=None,
        )
        return type(answer).pb(answer)

    def _pull_batch(self, long_poll: bool) -> Receipt:
        try:
            answer = self._pull(PULL_MAX, PULL_TIMEOUT)
        except _TRANSIENT_PULL_ERRORS:
            return Receipt(empty_batch())
        received = answer.received_messages
        published = [m.message.publish_time.ToNanoseconds() for m in received]
        return Receipt(
            as_batch([_fields(m) for m in received]),
            min(published) / 1e9 if published else None,
            max(published) / 1e9 if published else None,
        )

    def _acknowledge(self, ack_ids: list[str]) -> None:
        self._subscriber.acknowledge(
            request={"subscription": self._subscription, "ack_ids": ack_ids}
        )

    def _acknowledge_in_background(self, ack_ids: list[str]) -> None:
        try:
            self._acknowledge(ack_ids)
        except Exception as exc:
            self._failed_acks.add(len(ack_ids), exc)

    def _make_available(self, ack_ids: list[str]) -> None:
        self._subscriber.modify_ack_deadline(
            request={
                "subscription": self._subscription,
                "ack_ids": ack_ids,
                "ack_deadline_seconds": 0,
            }
        )


def _fields(received: Any) -> Fields:
    """A pulled message's (a ReceivedMessage protobuf) key, payload, message id, delivery
    attempt (0: not counted, without a dead-letter policy) and ack id."""
    message = received.message
    key = message.attributes.get(KEY_ATTRIBUTE, message.ordering_key)
    return key, message.data, message.message_id, received.delivery_attempt, received.ack_id
