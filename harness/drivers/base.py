"""The driver protocol: the only way the rest of brokerbench talks to a broker.

The surface is deliberately small (OpenMessaging Benchmark's shape): create a destination,
a producer with an asynchronous ``send`` that reports each outcome through a callback, and a
consumer that polls, acks and nacks. Each driver declares its ``Capabilities`` so checkers
hold a broker only to what it promises.

Words used throughout:
- *destination*: a Kafka topic, an SQS queue, a Pub/Sub topic with its subscriptions.
- *group*: who shares the work of consuming: a Kafka consumer group, a Pub/Sub
  subscription; SQS has one per queue.
- *key*: the application key; it chooses the Kafka partition, the SQS FIFO message group,
  the Pub/Sub ordering key, and is also carried as a header/attribute on every broker.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from harness.drivers.replication import Replication


class OrderingScope(StrEnum):
    """Within what a broker promises to deliver messages in the order they were sent."""

    NONE = "none"
    PARTITION = "partition"
    MESSAGE_GROUP = "message_group"
    ORDERING_KEY = "ordering_key"


class DeadLetterSupport(StrEnum):
    BROKER = "broker"
    """The broker moves a message after too many deliveries (SQS redrive, Pub/Sub policy)."""
    CLIENT = "client"
    """The driver's consumer publishes it to a dead-letter topic (Kafka has no broker DLQ)."""


class FanOut(StrEnum):
    """How a broker gives every one of several groups each message of one destination."""

    NONE = "none"
    GROUPS = "groups"
    """Natively: Kafka consumer groups, Pub/Sub subscriptions (each group reads the whole log)."""
    SNS = "sns"
    """An SNS topic in front of one SQS queue per group (raw message delivery), where the
    endpoint serves SNS (moto, AWS; not ElasticMQ): the driver's ``fan_out_unavailable``."""


class LagProbe(StrEnum):
    OFFSETS = "offsets"
    """End offset minus committed offset, per partition (Kafka)."""
    QUEUE_ATTRIBUTES = "queue_attributes"
    """Visible plus in-flight messages, from the queue's attributes (SQS)."""
    DERIVED = "derived"
    """No broker metric: the backlog must be derived from the recorded history."""


@dataclass(frozen=True)
class Capabilities:
    """What a broker promises; checkers judge a run only against these promises."""

    ordering_when_ordered: OrderingScope
    """The scope promised for a destination created with ``ordered=True``."""
    ordering_when_unordered: OrderingScope
    """The scope promised otherwise (Kafka orders every partition regardless)."""
    dead_letter: DeadLetterSupport
    exactly_once: frozenset[str]
    """Names of the exactly-once options the broker offers (e.g. ``transactions``)."""
    lag_probe: LagProbe
    fifo_deduplication: bool = False
    partitions: bool = False
    fan_out: FanOut = FanOut.NONE
    """Whether a destination may have several groups, each receiving every message."""

    def ordering(self, ordered: bool) -> OrderingScope:
        return self.ordering_when_ordered if ordered else self.ordering_when_unordered


@dataclass(frozen=True)
class DeadLetterPolicy:
    max_deliveries: int = 5
    """Deliveries (the first one included) after which a nacked message is dead-lettered."""


@dataclass(frozen=True)
class DestinationSpec:
    name: str
    partitions: int = 1
    ordered: bool = False
    """SQS: a FIFO queue; Pub/Sub: message ordering on; Kafka: always ordered per partition."""
    groups: tuple[str, ...] = ("default",)
    """Consumer groups (Pub/Sub subscriptions) created with the destination. Several groups
    are a fan-out: each gets every message (``Capabilities.fan_out``; on SQS an SNS topic with
    one queue per group)."""
    dead_letter: DeadLetterPolicy | None = None
    exactly_once: bool = False
    """Use the broker's exactly-once options: Kafka's idempotent producer and read_committed
    consumers, SQS FIFO deduplication (by the ``dedup_id`` each send passes), Pub/Sub's
    exactly-once delivery on the subscriptions."""
    idempotent_producer: bool | None = None
    """Kafka: the producer's ``enable.idempotence``; None follows the Kafka clients' default
    (on, with ``acks=all``). False lets a client retry write a message twice (a duplicate
    publish by the client). Exactly-once always has it on; other brokers ignore it."""
    replication: Replication | None = None
    """Kafka: the topics' replication factor, ``min.insync.replicas``, unclean leader election
    and the producer's ``acks`` (None: the broker's and clients' defaults); others ignore it."""
    redelivery_timeout: int | None = None
    """Seconds before a delivered, unacknowledged message is delivered again: the SQS queue's
    visibility timeout, the Pub/Sub subscriptions' ack deadline, the test double's lease. None
    keeps the target's setting; Kafka has no such timeout and ignores it."""

    def redelivery_or(self, target_setting: int) -> int:
        """This destination's redelivery timeout: its own, else the target's."""
        return target_setting if self.redelivery_timeout is None else self.redelivery_timeout


@dataclass(frozen=True)
class Destination:
    """A created destination: the spec plus the broker's own addresses for it."""

    spec: DestinationSpec
    address: str
    dead_letter_address: str | None = None
    group_addresses: tuple[tuple[str, str], ...] = ()
    """Where each group reads, where that is not ``address`` (SQS fan-out: ``address`` is the
    SNS topic, each group has its own subscribed queue)."""
    dead_letter_group_addresses: tuple[tuple[str, str], ...] = ()
    """Each group's own dead-letter destination (SQS fan-out: a queue per subscribed queue)."""

    def address_for(self, group: str) -> str:
        """Where ``group`` reads this destination."""
        return dict(self.group_addresses).get(group, self.address)

    @property
    def dead_letter(self) -> "Destination":
        """The dead-letter destination, readable with ``consumer(dest.dead_letter, group)``."""
        if self.dead_letter_address is None and not self.dead_letter_group_addresses:
            raise ValueError(f"{self.spec.name} was created without a dead-letter policy")
        spec = DestinationSpec(
            name=f"{self.spec.name}-dlq",
            groups=self.spec.groups,
            ordered=self.spec.ordered,
            redelivery_timeout=self.spec.redelivery_timeout,
        )
        address = self.dead_letter_address or self.dead_letter_group_addresses[0][1]
        return Destination(spec, address, group_addresses=self.dead_letter_group_addresses)


class Outcome(StrEnum):
    """How a send completed, in Jepsen's terms."""

    OK = "ok"
    FAIL = "fail"
    """The broker certainly did not take the message."""
    UNKNOWN = "unknown"
    """A timeout or lost connection: the broker may or may not have taken it."""


@dataclass(frozen=True)
class SendResult:
    key: str
    outcome: Outcome
    message_id: str | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


SendCallback = Callable[[SendResult], None]


@dataclass(frozen=True)
class Received:
    key: str
    payload: bytes
    message_id: str
    """The broker's id: Kafka ``partition:offset``, SQS MessageId, Pub/Sub message id."""
    partition: int | None = None
    offset: int | None = None
    delivery_attempt: int | None = None
    """1 for a first delivery, where the broker counts (SQS, Pub/Sub with a DLQ, Kafka nacks)."""
    handle: Any = field(default=None, compare=False, repr=False)
    """The driver's own ack handle; opaque to everyone else."""


@runtime_checkable
class Producer(Protocol):
    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        """Queue one message; ``on_complete`` runs exactly once with its outcome.

        ``dedup_id`` is the broker-side de-duplication id where the broker offers one
        (SQS FIFO); elsewhere it is ignored.
        """

    def flush(self, timeout: float) -> int:
        """Wait until every queued send completed; returns how many are still pending."""

    def close(self) -> None: ...


@runtime_checkable
class Consumer(Protocol):
    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        """Up to ``max_messages``; waits at most about ``timeout`` seconds for the first."""

    def ack(self, messages: Sequence[Received]) -> None:
        """Done with these: they are not delivered again to this group."""

    def nack(self, messages: Sequence[Received]) -> None:
        """Not processed: deliver again (dead-letter after the policy's max deliveries)."""

    def close(self) -> None:
        """Leave the group cleanly, committing what was acked."""


class SendCompletions(Protocol):
    """Where a batch-sending producer reports each message's outcome, by the index the message
    was given (``BatchProducer.send_batch``). May be called from any thread; each index exactly
    once."""

    def ok(self, index: int, partition: int = -1, offset: int = -1) -> None: ...

    def failed(self, index: int, outcome: Outcome, error: str) -> None:
        """``outcome`` is ``FAIL`` (certainly not taken) or ``UNKNOWN``."""


@runtime_checkable
class BatchProducer(Protocol):
    """The load generators' hot path: many messages per call, outcomes reported by index into
    preallocated columns instead of a callback object per message. Optional: a driver without
    it is driven through ``Producer.send`` (``harness.drivers.batching``)."""

    def send_batch(
        self,
        keys: Sequence[str],
        payloads: Sequence[bytes],
        first_index: int,
        completions: SendCompletions,
        *,
        dedup_ids: Sequence[str] | None = None,
    ) -> None:
        """Queue ``payloads[i]`` with key ``keys[i]``; its outcome is reported to
        ``completions`` as index ``first_index + i``. Never waits on the network, except when
        the client's own buffer is full."""


@dataclass(slots=True)
class ReceivedBatch:
    """One poll's deliveries as columns, in delivery order: the consumers' hot path
    (``Received`` is the per-message form). Columns a broker has no use for are None."""

    payloads: list[bytes]
    partitions: list[int] | None = None
    offsets: list[int] | None = None
    message_ids: list[str] | None = None
    """The broker's ids where partition:offset is not the identity (SQS, Pub/Sub)."""
    keys: list[str] | None = None
    """Present where the ordering scope is the key (SQS FIFO group, Pub/Sub ordering key)."""
    delivery_attempts: list[int] | None = None
    handle: Any = None
    """The driver's own ack state for the batch; opaque to everyone else."""

    def __len__(self) -> int:
        return len(self.payloads)


@runtime_checkable
class BatchConsumer(Protocol):
    """Optional batched form of ``Consumer`` (``harness.drivers.batching`` adapts the rest)."""

    def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
        """Up to ``max_messages``; waits at most about ``timeout`` seconds for the first."""

    def ack_batch(self, batch: ReceivedBatch) -> None:
        """Done with every message of ``batch``."""


class Driver(Protocol):
    """A connection to one broker endpoint.

    A driver class may also set ``test_double: ClassVar[bool] = True`` (the memory driver
    does): it stands in for a broker in brokerbench's own tests, and results say so."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    endpoint_model: ClassVar[type[BaseModel]]

    def __init__(self, endpoint: Any) -> None:
        """Connect to ``endpoint`` (an ``endpoint_model``); BrokerUnreachableError if it
        does not answer."""

    def create_destination(self, spec: DestinationSpec) -> Destination:
        """Create (or reuse, if identical) the destination and its groups."""

    def delete_destination(self, destination: Destination) -> None: ...

    def producer(self, destination: Destination) -> Producer: ...

    def consumer(self, destination: Destination, group: str) -> Consumer: ...

    def backlog(self, destination: Destination, group: str) -> int | None:
        """Messages not yet consumed by ``group`` per the broker, or None (LagProbe.DERIVED)."""

    def close(self) -> None: ...


def fan_out_unavailable(driver: type[Driver], endpoint: BaseModel) -> str | None:
    """Why ``driver`` at ``endpoint`` cannot fan out (a destination with several groups), or
    None if it can. A driver whose support depends on the endpoint (SQS: only where SNS is
    served) defines a classmethod of this name."""
    if driver.capabilities.fan_out is FanOut.NONE:
        return f"the {driver.name} driver has no fan-out"
    check = getattr(driver, "fan_out_unavailable", None)
    reason: str | None = check(endpoint) if check is not None else None
    return reason


def is_test_double(driver: Driver | type[Driver]) -> bool:
    """Whether ``driver`` (an instance or a class) declares itself a test double: not a real
    broker (``test_double = True``, e.g. the memory driver)."""
    return bool(getattr(driver, "test_double", False))
