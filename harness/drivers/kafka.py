"""Kafka through confluent-kafka (librdkafka): topics by AdminClient, keyed produce, group consume.

Acks store the offset after the message and librdkafka commits stored offsets every second
and on close (at-least-once). Kafka has no broker-side dead-letter queue, so a nack seeks back
to the message and, after the policy's max deliveries, the consumer publishes it to
``<topic>.dlq`` and acks it (the shape of Kafka Connect's and Spring's dead-letter topics).
"""

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import ClassVar, cast

from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pydantic import Field

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
    SendResult,
)
from harness.drivers.replication import Replication
from harness.errors import BrokerUnreachableError, UserError
from harness.models import FrozenModel

ClientConfig = dict[str, str | int | float | bool]

# A send that timed out or lost its connection after leaving the client may have been written.
_UNKNOWN_ERRORS = frozenset(
    {KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError.REQUEST_TIMED_OUT}
)
_POLL_INTERVAL = 0.0005
PRODUCER_DEFAULTS: ClientConfig = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
"""The Kafka clients' defaults since Kafka 3.0 (the Java producer; librdkafka's own default is
still off): the idempotent producer, so a retried produce request is never written twice."""


def _conflicts_with_idempotence(config: ClientConfig) -> bool:
    """Settings the idempotent producer refuses. As the Java client does, a default-on
    idempotence yields to them; only an explicit ``enable.idempotence: true`` clashes."""
    acks = str(config.get("acks", "all")).lower()
    in_flight = int(config.get("max.in.flight.requests.per.connection", 5))
    return acks not in {"all", "-1"} or in_flight > 5 or int(config.get("retries", 1)) == 0


def producer_config(base: ClientConfig, user: ClientConfig, spec: DestinationSpec) -> ClientConfig:
    """The producer's effective librdkafka settings: ``PRODUCER_DEFAULTS``, then the target's
    ``client_config`` (``base``) and ``producer_config`` (``user``), then the workload's
    ``replication.acks`` and ``idempotent_producer``; exactly-once always has idempotence on."""
    config = {**PRODUCER_DEFAULTS, **base, **user}
    if spec.replication is not None and spec.replication.acks is not None:
        config["acks"] = spec.replication.acks
    if "enable.idempotence" not in user and _conflicts_with_idempotence(config):
        config["enable.idempotence"] = False
    if spec.idempotent_producer is not None:
        config["enable.idempotence"] = spec.idempotent_producer
    if spec.exactly_once:
        config["enable.idempotence"] = True
    return config


class KafkaEndpoint(FrozenModel):
    bootstrap_servers: str
    client_config: ClientConfig = Field(default_factory=dict)
    """Extra librdkafka settings for every client (security, SASL, ...)."""
    producer_config: ClientConfig = Field(default_factory=dict)
    consumer_config: ClientConfig = Field(default_factory=dict)
    connect_timeout: float = 10.0


def _dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


class KafkaDriver:
    name: ClassVar[str] = "kafka"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering_when_ordered=OrderingScope.PARTITION,
        ordering_when_unordered=OrderingScope.PARTITION,
        dead_letter=DeadLetterSupport.CLIENT,
        exactly_once=frozenset({"idempotent_producer", "transactions"}),
        lag_probe=LagProbe.OFFSETS,
        partitions=True,
        fan_out=FanOut.GROUPS,
    )
    endpoint_model: ClassVar[type[KafkaEndpoint]] = KafkaEndpoint

    def __init__(self, endpoint: KafkaEndpoint) -> None:
        self.endpoint = endpoint
        self._base: ClientConfig = {
            "bootstrap.servers": endpoint.bootstrap_servers,
            **endpoint.client_config,
        }
        self._admin = AdminClient({**self._base, "log_level": 0})
        try:
            self._admin.list_topics(timeout=endpoint.connect_timeout)
        except KafkaException as exc:
            raise BrokerUnreachableError(
                f"kafka at {endpoint.bootstrap_servers} is unreachable: start it with "
                "`brokerbench up` or fix the target's bootstrap_servers"
            ) from exc

    def create_destination(self, spec: DestinationSpec) -> Destination:
        topics = [spec.name]
        if spec.dead_letter is not None:
            topics.append(_dead_letter_topic(spec.name))
        replication = spec.replication or Replication()
        new_topics = [
            NewTopic(
                topic,
                num_partitions=spec.partitions,
                replication_factor=replication.factor or -1,
                config=replication.topic_config(),
            )
            for topic in topics
        ]
        futures = self._admin.create_topics(new_topics, operation_timeout=30)
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                    raise self._too_few_brokers(replication) from exc
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        dead_letter = _dead_letter_topic(spec.name) if spec.dead_letter else None
        return Destination(spec, spec.name, dead_letter)

    def _too_few_brokers(self, replication: Replication) -> UserError:
        brokers = len(self._admin.list_topics(timeout=self.endpoint.connect_timeout).brokers)
        return UserError(
            f"kafka at {self.endpoint.bootstrap_servers} has {brokers} broker(s), too few for "
            f"replication factor {replication.factor}: lower replication.factor or start a "
            "cluster (stack: {kafka: {nodes: 3}} in brokerbench.yaml, then brokerbench up)"
        )

    def delete_destination(self, destination: Destination) -> None:
        topics = [destination.address]
        if destination.dead_letter_address:
            topics.append(destination.dead_letter_address)
        for future in self._admin.delete_topics(topics, operation_timeout=30).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise

    def producer(self, destination: Destination) -> "KafkaProducer":
        config = producer_config(self._base, self.endpoint.producer_config, destination.spec)
        return KafkaProducer(config, destination.address)

    def consumer(self, destination: Destination, group: str) -> "KafkaConsumer":
        return KafkaConsumer(
            {
                **self._base,
                "isolation.level": "read_committed",
                **self.endpoint.consumer_config,
                "group.id": _group_id(destination, group),
            },
            destination,
            self,
        )

    def backlog(self, destination: Destination, group: str) -> int | None:
        probe = ConfluentConsumer(
            {
                **self._base,
                "group.id": _group_id(destination, group),
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        try:
            metadata = probe.list_topics(destination.address, timeout=10)
            partitions = [
                TopicPartition(destination.address, partition)
                for partition in metadata.topics[destination.address].partitions
            ]
            total = 0
            for committed in probe.committed(partitions, timeout=10):
                low, high = probe.get_watermark_offsets(committed, timeout=10)
                position = committed.offset if committed.offset >= 0 else low
                total += max(0, high - position)
            return total
        finally:
            probe.close()

    def close(self) -> None:
        """Nothing to release: the AdminClient closes when collected."""


class KafkaProducer:
    """librdkafka runs delivery callbacks only inside ``poll``; a small poller thread serves
    them within a millisecond. Every wait is ``poll(0)`` plus ``time.sleep``, never a blocking
    librdkafka call, so the producer also behaves under gevent (Locust), where a blocking
    ``flush(2)`` would freeze every greenlet."""

    def __init__(self, config: ClientConfig, topic: str) -> None:
        self._topic = topic
        self.config: ClientConfig = dict(config)
        """The librdkafka settings this producer was made with (credentials included: never
        write it anywhere)."""
        self._producer = ConfluentProducer(dict(self.config))
        self._report: (
            tuple[SendCompletions, Callable[[int, KafkaError | None, Message], None]] | None
        ) = None
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._closed.is_set():
            if self._producer.poll(0) == 0:
                time.sleep(_POLL_INTERVAL)

    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                partition, offset = message.partition(), message.offset()
                on_complete(SendResult(key, Outcome.OK, f"{partition}:{offset}", partition, offset))
                return
            outcome = Outcome.UNKNOWN if error.code() in _UNKNOWN_ERRORS else Outcome.FAIL
            on_complete(SendResult(key, outcome, error=error.str()))

        while True:
            try:
                self._producer.produce(
                    self._topic, value=payload, key=key.encode(), on_delivery=delivered
                )
                return
            except BufferError:  # the local queue is full: wait for deliveries to drain it
                time.sleep(_POLL_INTERVAL)

    def send_batch(
        self,
        keys: Sequence[str],
        payloads: Sequence[bytes],
        first_index: int,
        completions: SendCompletions,
        *,
        dedup_ids: Sequence[str] | None = None,
    ) -> None:
        """``BatchProducer.send_batch``: librdkafka batches by itself; what is saved here is the
        per-message Python around ``produce`` (one small partial per message is all the state
        a delivery report needs)."""
        produce = self._producer.produce
        topic = self._topic
        report = self._reporter(completions)
        for index, key, payload in zip(
            range(first_index, first_index + len(payloads)), keys, payloads, strict=True
        ):
            on_delivery = partial(report, index)
            while True:
                try:
                    produce(topic, payload, key, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: wait for deliveries to drain it
                    time.sleep(_POLL_INTERVAL)

    def _reporter(
        self, completions: SendCompletions
    ) -> Callable[[int, KafkaError | None, Message], None]:
        if self._report is not None and self._report[0] is completions:
            return self._report[1]
        ok, failed = completions.ok, completions.failed

        def report(index: int, error: KafkaError | None, message: Message) -> None:
            if error is None:
                ok(index, message.partition(), message.offset())  # type: ignore[arg-type]
            else:
                unknown = error.code() in _UNKNOWN_ERRORS
                failed(index, Outcome.UNKNOWN if unknown else Outcome.FAIL, error.str())

        self._report = (completions, report)
        return report

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self._producer) > 0 and time.monotonic() < deadline:
            self._producer.poll(0)
            time.sleep(_POLL_INTERVAL)
        return len(self._producer)

    def close(self) -> None:
        self.flush(30)
        self._closed.set()
        self._poller.join(timeout=5)


class KafkaConsumer:
    """Polls per message (``poll``/``ack``/``nack``, the flows) or per batch as columns
    (``poll_batch``/``ack_batch``, the raw consumers); both share the fetching and the offset
    stores. The batch path skips the nack bookkeeping while no nack is pending."""

    def __init__(self, config: ClientConfig, destination: Destination, driver: KafkaDriver) -> None:
        self._destination = destination
        self._driver = driver
        self._consumer = ConfluentConsumer(
            {
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
                # A dead consumer's partitions move to the others after 10 s, not librdkafka's
                # 45 s (the Java client's default before 3.0; chaos runs kill consumers).
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 3000,
                **config,
            }
        )
        self._consumer.subscribe([destination.address])
        self._attempts: dict[tuple[int, int], int] = {}
        self._stored: dict[int, int] = {}
        # A nack rewinds its partition, so messages after it that were acked come back from
        # the broker: acked offsets are kept (since the last poll, and while a partition has a
        # nacked message pending or its rewind has not yet read past them) and dropped when
        # they come back, instead of redelivered.
        self._acked: dict[int, set[int]] = {}
        # (partitions, offsets) of batches acked since the last poll while no nack was pending:
        # they go into _acked only if a nack follows before the next poll (never, for a raw
        # consumer), which keeps the batch path free of per-message bookkeeping.
        self._acked_batches: list[tuple[list[int], list[int]]] = []
        self._dead_letters: KafkaProducer | None = None

    def _fetch(self, max_messages: int, timeout: float) -> list[Message]:
        """The next messages, without errors and without the acked ones a rewind brought back."""
        self._acked_batches.clear()
        # consume(n, timeout) waits for n messages or the timeout, which would add up to
        # ``timeout`` of latency at low rates: wait for the first, then take what is buffered.
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        messages = [first]
        if max_messages > 1:
            messages += self._consumer.consume(num_messages=max_messages - 1, timeout=0)
        if any([message.error() is not None for message in messages]):  # noqa: C419 - faster
            messages = [message for message in messages if _usable(message)]
        if self._acked:
            fetched = messages
            messages = [m for m in messages if not self._acked_already(m)]
            self._settle(fetched)
        return messages

    def _settle(self, fetched: list[Message]) -> None:
        """Forget a partition's acked offsets once no nack is pending in it and its fetch has
        gone past the highest of them: the rewind can bring none of them back any more. (Not
        at the nack's settling alone: the rewound fetch may still be on its way, e.g. when the
        last nacked message was dead-lettered, and would redeliver acked messages.)"""
        pending = {partition for partition, _ in self._attempts}
        beyond: dict[int, int] = {}
        for message in fetched:
            partition, offset = message.partition() or 0, message.offset() or 0
            beyond[partition] = max(offset, beyond.get(partition, -1))
        for partition in [p for p in self._acked if p not in pending and p in beyond]:
            if beyond[partition] > max(self._acked[partition], default=-1):
                del self._acked[partition]

    def _acked_already(self, message: Message) -> bool:
        return message.offset() in self._acked.get(message.partition() or 0, ())

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        received = []
        for message in self._fetch(max_messages, timeout):
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None, "consumed messages have both"
            key = message.key()
            received.append(
                Received(
                    key=key.decode() if key else "",
                    payload=message.value() or b"",
                    message_id=f"{partition}:{offset}",
                    partition=partition,
                    offset=offset,
                    delivery_attempt=self._attempts.get((partition, offset), 0) + 1,
                    handle=message,
                )
            )
        return received

    def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
        messages = self._fetch(max_messages, timeout)
        # Consumed messages (errors are filtered out) always have both.
        partitions = cast(list[int], [message.partition() for message in messages])
        offsets = cast(list[int], [message.offset() for message in messages])
        if self._attempts:
            attempts = self._attempts
            delivery_attempts = [
                attempts.get(position, 0) + 1 for position in zip(partitions, offsets, strict=True)
            ]
        else:
            delivery_attempts = [1] * len(messages)
        return ReceivedBatch(
            payloads=[message.value() or b"" for message in messages],
            partitions=partitions,
            offsets=offsets,
            delivery_attempts=delivery_attempts,
        )

    def ack(self, messages: Sequence[Received]) -> None:
        self._ack_positions([_position(message) for message in messages])

    def ack_batch(self, batch: ReceivedBatch) -> None:
        assert batch.partitions is not None and batch.offsets is not None, "not a Kafka batch"
        if self._attempts:  # a nack is pending: the full bookkeeping
            self._ack_positions(list(zip(batch.partitions, batch.offsets, strict=True)))
            return
        self._acked_batches.append((batch.partitions, batch.offsets))
        # One poll's messages of a partition come in offset order (librdkafka drops what a
        # seek or rebalance made stale), so the last offset of each partition is its highest.
        self._store(dict(zip(batch.partitions, batch.offsets, strict=True)))

    def _ack_positions(self, positions: list[tuple[int, int]]) -> None:
        for partition, offset in positions:
            self._attempts.pop((partition, offset), None)
            self._acked.setdefault(partition, set()).add(offset)
        self._store(_highest_offsets(positions))

    def _store(self, highest: dict[int, int]) -> None:
        """Store the offset after each partition's highest acked one, once per partition: it is
        what the next commit keeps. Never moves a stored offset back."""
        for partition, offset in highest.items():
            next_offset = offset + 1
            if next_offset <= self._stored.get(partition, -1):
                continue
            try:
                self._consumer.store_offsets(
                    offsets=[TopicPartition(self._destination.address, partition, next_offset)]
                )
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._STATE:  # partition revoked meanwhile
                    raise
                continue
            self._stored[partition] = next_offset

    def nack(self, messages: Sequence[Received]) -> None:
        for partitions, offsets in self._acked_batches:  # the rewind may bring these back
            for partition, offset in zip(partitions, offsets, strict=True):
                self._acked.setdefault(partition, set()).add(offset)
        self._acked_batches.clear()
        policy = self._destination.spec.dead_letter
        rewind: dict[int, int] = {}
        for message in messages:
            partition, offset = _position(message)
            attempts = self._attempts.get((partition, offset), 0) + 1
            if policy is not None and attempts >= policy.max_deliveries:
                self._dead_letter(message)
                self.ack([message])
                continue
            self._attempts[(partition, offset)] = attempts
            rewind[partition] = min(offset, rewind.get(partition, offset))
        for partition, offset in rewind.items():
            self._consumer.seek(TopicPartition(self._destination.address, partition, offset))

    def _dead_letter(self, message: Received) -> None:
        if self._dead_letters is None:
            self._dead_letters = self._driver.producer(self._destination.dead_letter)
        outcomes: list[SendResult] = []
        self._dead_letters.send(message.key, message.payload, outcomes.append)
        self._dead_letters.flush(30)
        if not outcomes or not outcomes[0].ok:
            error = outcomes[0].error if outcomes else "timed out"
            raise KafkaException(f"dead-lettering {message.message_id} failed: {error}")

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()
        self._consumer.close()


def _usable(message: Message) -> bool:
    """False for an error event (skipped); a fatal error raises."""
    error = message.error()
    if error is not None and error.fatal():
        raise KafkaException(error)
    return error is None


def _highest_offsets(positions: Iterable[tuple[int, int]]) -> dict[int, int]:
    """The highest offset of each partition among ``(partition, offset)`` positions."""
    highest: dict[int, int] = {}
    for partition, offset in positions:
        if offset > highest.get(partition, -1):
            highest[partition] = offset
    return highest


def _group_id(destination: Destination, group: str) -> str:
    """Kafka consumer groups are cluster-wide: one per destination and group, so that services
    reading different topics never rebalance each other, nor do runs sharing a broker."""
    return f"{destination.address}.{group}"


def _position(message: Received) -> tuple[int, int]:
    partition, offset = message.partition, message.offset
    assert partition is not None and offset is not None, "not a Kafka message"
    return partition, offset
