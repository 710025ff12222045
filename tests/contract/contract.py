"""The driver contract: one abstract suite that every broker's driver must pass, run against
the real local services (``Test*`` subclasses in this folder pick the target and path)."""

import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from harness.drivers import batching
from harness.drivers.base import (
    Capabilities,
    Consumer,
    DeadLetterPolicy,
    Destination,
    DestinationSpec,
    Driver,
    LagProbe,
    OrderingScope,
    Outcome,
    Producer,
    Received,
    ReceivedBatch,
    SendResult,
)
from harness.drivers.batching import batch_consumer
from harness.drivers.targets import open_driver
from harness.settings import Settings
from harness.stack.manager import Stack

KEYS = [f"key-{index}" for index in range(8)]


def payload(key: str, sequence: int) -> bytes:
    """Text prefix for humans, then bytes that are not UTF-8, so encodings are exercised."""
    return f"{key}:{sequence}:".encode() + bytes([0xFF, 0x00, 0xFE]) + os.urandom(16)


def sequence_of(message: Received) -> int:
    return int(message.payload.split(b":")[1])


def send_all(producer: Producer, messages: list[tuple[str, bytes]]) -> list[SendResult]:
    results: list[SendResult] = []
    for key, body in messages:
        producer.send(key, body, results.append)
    assert producer.flush(60) == 0, "sends still pending after 60 s"
    return results


def consume(
    consumer: Consumer,
    until: Callable[[list[Received]], bool],
    timeout: float = 60.0,
    on_batch: Callable[[list[Received]], None] | None = None,
) -> list[Received]:
    """Poll until ``until(all received so far)``; acks each batch unless ``on_batch`` is given."""
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    while not until(received) and time.monotonic() < deadline:
        batch = consumer.poll(100, 1.0)
        received.extend(batch)
        if on_batch is None:
            consumer.ack(batch)
        else:
            on_batch(batch)
    return received


class Completions:
    """A ``SendCompletions`` that keeps each index's outcome and every index reported twice."""

    def __init__(self, count: int) -> None:
        self.outcomes: list[Outcome | None] = [None] * count
        self.errors: dict[int, str] = {}
        self.reported_twice: list[int] = []
        self._lock = threading.Lock()

    def ok(self, index: int, partition: int = -1, offset: int = -1) -> None:
        self._report(index, Outcome.OK)

    def failed(self, index: int, outcome: Outcome, error: str) -> None:
        self.errors[index] = error
        self._report(index, outcome)

    def _report(self, index: int, outcome: Outcome) -> None:
        with self._lock:
            if self.outcomes[index] is not None:
                self.reported_twice.append(index)
            self.outcomes[index] = outcome


def send_all_batched(
    producer: Producer,
    messages: list[tuple[str, bytes]],
    *,
    chunk: int = 7,
    dedup_ids: list[str] | None = None,
) -> Completions:
    """``send_batch`` calls of ``chunk`` messages (7: requests of 10 straddle them), then flush."""
    completions = Completions(len(messages))
    for start in range(0, len(messages), chunk):
        part = messages[start : start + chunk]
        batching.send_batch(
            producer,
            [key for key, _ in part],
            [body for _, body in part],
            start,
            completions,
            dedup_ids=None if dedup_ids is None else dedup_ids[start : start + chunk],
        )
    assert producer.flush(60) == 0, "sends still pending after 60 s"
    assert completions.reported_twice == []
    return completions


def consume_batches(
    consumer: Consumer, until: Callable[[list[ReceivedBatch]], bool], timeout: float = 60.0
) -> list[ReceivedBatch]:
    """``poll_batch`` and ``ack_batch`` until ``until(every batch so far)``."""
    batches: list[ReceivedBatch] = []
    deadline = time.monotonic() + timeout
    while not until(batches) and time.monotonic() < deadline:
        batch = batching.poll_batch(consumer, 100, 1.0)
        if len(batch):
            batches.append(batch)
            batching.ack_batch(consumer, batch)
    return batches


def received_count(batches: list[ReceivedBatch]) -> int:
    return sum(len(batch) for batch in batches)


def columns(batches: list[ReceivedBatch]) -> list[tuple[str, bytes, str, int]]:
    """(key, payload, message id, delivery attempt) of every message, in delivery order."""
    rows: list[tuple[str, bytes, str, int]] = []
    for batch in batches:
        # A broker whose scope is not the key may leave keys out (the payload names it), and
        # one whose identity is partition:offset may leave message ids out.
        keys = batch.keys or [body.split(b":", 1)[0].decode() for body in batch.payloads]
        if batch.message_ids is not None:
            ids = batch.message_ids
        else:
            assert batch.partitions is not None and batch.offsets is not None
            ids = [f"{p}:{o}" for p, o in zip(batch.partitions, batch.offsets, strict=True)]
        attempts = batch.delivery_attempts or [0] * len(batch)
        rows.extend(zip(keys, batch.payloads, ids, attempts, strict=True))
    return rows


def background_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread is not threading.main_thread()}


class DriverContract:
    target: ClassVar[str]
    via_proxy: ClassVar[bool] = False
    expected_ordering: ClassVar[OrderingScope]
    expected_lag_probe: ClassVar[LagProbe]

    @pytest.fixture(scope="class")
    @classmethod
    def driver(cls, stack: Stack, settings: Settings) -> Iterator[Driver]:
        missing = _missing_for(cls.target)
        if missing:
            pytest.skip(missing)
        driver = open_driver(cls.target, settings, via_proxy=cls.via_proxy)
        yield driver
        driver.close()

    @pytest.fixture
    def create(self, driver: Driver) -> Iterator[Callable[..., Destination]]:
        created: list[Destination] = []

        def make(**options: Any) -> Destination:
            name = f"bb-contract-{uuid.uuid4().hex[:10]}"
            destination = driver.create_destination(DestinationSpec(name, **options))
            created.append(destination)
            return destination

        yield make
        for destination in created:
            driver.delete_destination(destination)

    def test_declares_its_capabilities(self, driver: Driver) -> None:
        assert isinstance(driver.capabilities, Capabilities)
        assert driver.capabilities.ordering(ordered=True) is self.expected_ordering
        assert driver.capabilities.lag_probe is self.expected_lag_probe

    def test_every_message_arrives_once_exactly_as_sent(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create(partitions=3)
        sent = [(key, payload(key, seq)) for seq in range(25) for key in KEYS]
        producer = driver.producer(destination)
        results = send_all(producer, sent)
        producer.close()
        assert Counter(r.outcome for r in results) == {Outcome.OK: len(sent)}
        assert len({r.message_id for r in results}) == len(sent)

        consumer = driver.consumer(destination, "default")
        received = consume(consumer, lambda got: len(got) >= len(sent))
        consumer.close()
        assert Counter((m.key, m.payload) for m in received) == Counter(sent)
        assert len({m.message_id for m in received}) == len(sent)

        again = driver.consumer(destination, "default")
        leftovers = consume(again, bool, timeout=3.0)
        again.close()
        assert leftovers == [], "acked messages were delivered again after a clean close"

    def test_order_holds_within_the_promised_scope(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create(partitions=3, ordered=True)
        per_key = 30
        sent = [(key, payload(key, seq)) for seq in range(per_key) for key in KEYS]
        producer = driver.producer(destination)
        assert all(r.ok for r in send_all(producer, sent))
        producer.close()

        consumer = driver.consumer(destination, "default")
        received = consume(consumer, lambda got: len(got) >= len(sent))
        consumer.close()
        by_key: dict[str, list[int]] = defaultdict(list)
        for message in received:
            by_key[message.key].append(sequence_of(message))
        assert by_key == {key: list(range(per_key)) for key in KEYS}

    def test_batches_carry_every_message_once_in_order_as_columns(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create(partitions=3, ordered=True)
        per_key = 30
        sent = [(key, payload(key, seq)) for seq in range(per_key) for key in KEYS]
        producer = driver.producer(destination)
        assert all(r.ok for r in send_all(producer, sent))
        producer.close()

        consumer = driver.consumer(destination, "default")
        batches = batch_consumer(consumer)  # the driver's own, or the per-message fallback
        received: list[ReceivedBatch] = []
        deadline = time.monotonic() + 60
        while sum(map(len, received)) < len(sent) and time.monotonic() < deadline:
            batch = batches.poll_batch(100, 1.0)
            received.append(batch)
            batches.ack_batch(batch)
        consumer.close()

        for batch in received:
            columns = [batch.partitions, batch.offsets, batch.message_ids, batch.keys]
            lengths = {len(column) for column in [*columns, batch.delivery_attempts] if column}
            assert lengths <= {len(batch)}, "a column of another length than the batch"
            assert set(batch.delivery_attempts or [0]) <= {0, 1}, "first deliveries"
        payloads = [p for batch in received for p in batch.payloads]
        assert Counter(payloads) == Counter(body for _, body in sent)
        by_key: dict[bytes, list[int]] = defaultdict(list)
        for body in payloads:
            by_key[body.split(b":")[0]].append(int(body.split(b":")[1]))
        assert by_key == {key.encode(): list(range(per_key)) for key in KEYS}
        ordering = driver.capabilities.ordering(ordered=True)
        if ordering is OrderingScope.PARTITION:  # the scope and the identity: partition:offset
            positions = [
                position
                for batch in received
                for position in zip(batch.partitions or [], batch.offsets or [], strict=True)
            ]
            assert len(set(positions)) == len(sent)
            assert all(partition >= 0 and offset >= 0 for partition, offset in positions)
        else:  # the scope is the key; the identity, the broker's message id
            keyed = [
                (key, body)
                for batch in received
                for key, body in zip(batch.keys or [], batch.payloads, strict=True)
            ]
            assert Counter(keyed) == Counter(sent)
            ids = [message_id for batch in received for message_id in batch.message_ids or []]
            assert len(set(ids)) == len(sent)

        again = batch_consumer(driver.consumer(destination, "default"))
        leftovers = [again.poll_batch(100, 1.0) for _ in range(3)]
        assert sum(map(len, leftovers)) == 0, "batch-acked messages were delivered again"

    def test_poison_message_is_dead_lettered_and_blocks_nothing(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        max_deliveries = 5
        destination = create(dead_letter=DeadLetterPolicy(max_deliveries=max_deliveries))
        good = [(f"good-{index}", payload(f"good-{index}", index)) for index in range(10)]
        poison = ("poison", b"poison:0:not-processable")
        producer = driver.producer(destination)
        assert all(r.ok for r in send_all(producer, [good[0], poison, *good[1:]]))
        producer.close()

        consumer = driver.consumer(destination, "default")
        attempts: list[int | None] = []
        good_seen: set[str] = set()

        def process(batch: list[Received]) -> None:
            bad = [m for m in batch if m.key == "poison"]
            attempts.extend(m.delivery_attempt for m in bad)
            good_seen.update(m.key for m in batch if m.key != "poison")
            consumer.ack([m for m in batch if m.key != "poison"])
            consumer.nack(bad)

        dead_letters = driver.consumer(destination.dead_letter, "default")
        dead: list[Received] = []

        def poison_dead_lettered(_: list[Received]) -> bool:
            dead.extend(dead_letters.poll(10, 0.2))
            dead_letters.ack(dead)
            return bool(dead) and len(good_seen) == len(good)

        consume(consumer, poison_dead_lettered, on_batch=process, timeout=90)
        consumer.close()
        dead_letters.close()
        assert good_seen == {key for key, _ in good}
        assert [(m.key, m.payload) for m in dead] == [poison]
        assert attempts == list(range(1, max_deliveries + 1))

    def test_backlog_counts_what_the_group_has_not_consumed(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create()
        sent = [(key, payload(key, 0)) for key in KEYS]
        consumer = driver.consumer(destination, "default")
        producer = driver.producer(destination)
        assert all(r.ok for r in send_all(producer, sent))
        producer.close()
        if self.expected_lag_probe is LagProbe.DERIVED:
            assert driver.backlog(destination, "default") is None
            consumer.close()
            return
        assert _eventually(lambda: driver.backlog(destination, "default") == len(sent))
        consume(consumer, lambda got: len(got) >= len(sent))
        consumer.close()
        assert _eventually(lambda: driver.backlog(destination, "default") == 0)


class BatchedPathContract:
    """The batched hot path (``send_batch``, ``poll_batch``, ``ack_batch``), through
    ``harness.drivers.batching``: the driver's own where it has one, else the per-message
    fallback."""

    expected_lag_probe: ClassVar[LagProbe]

    def test_batched_path_delivers_every_message_once(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create(partitions=3)
        sent = [(key, payload(key, seq)) for seq in range(25) for key in KEYS]
        producer = driver.producer(destination)
        completions = send_all_batched(producer, sent)
        producer.close()
        assert completions.outcomes == [Outcome.OK] * len(sent), completions.errors

        consumer = driver.consumer(destination, "default")
        batches = consume_batches(consumer, lambda got: received_count(got) >= len(sent))
        consumer.close()
        rows = columns(batches)
        got = Counter((key, body) for key, body, _, _ in rows)
        assert got == Counter(sent), f"missing {Counter(sent) - got}, extra {got - Counter(sent)}"
        assert len({message_id for _, _, message_id, _ in rows}) == len(sent)
        assert {attempt for _, _, _, attempt in rows} <= {0, 1}, "first deliveries only"

        if self.expected_lag_probe is not LagProbe.DERIVED:  # the acks reached the broker
            assert _eventually(lambda: driver.backlog(destination, "default") == 0)
        again = driver.consumer(destination, "default")
        leftovers = consume_batches(again, bool, timeout=3.0)
        again.close()
        assert leftovers == [], "acked messages were delivered again after a clean close"

    def test_batched_order_holds_within_the_promised_scope(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create(partitions=3, ordered=True)
        per_key = 30
        sent = [(key, payload(key, seq)) for seq in range(per_key) for key in KEYS]
        producer = driver.producer(destination)
        completions = send_all_batched(producer, sent, chunk=13)
        producer.close()
        assert completions.outcomes == [Outcome.OK] * len(sent), completions.errors

        consumer = driver.consumer(destination, "default")
        batches = consume_batches(consumer, lambda got: received_count(got) >= len(sent))
        consumer.close()
        by_key: dict[str, list[int]] = defaultdict(list)
        for key, body, _, _ in columns(batches):
            assert body.startswith(f"{key}:".encode())
            by_key[key].append(int(body.split(b":")[1]))
        assert by_key == {key: list(range(per_key)) for key in KEYS}

    def test_close_acks_only_what_poll_batch_returned_and_stops_its_threads(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        destination = create()
        sent = [(key, payload(key, seq)) for seq in range(5) for key in KEYS]
        producer = driver.producer(destination)
        assert send_all_batched(producer, sent).outcomes == [Outcome.OK] * len(sent)
        producer.close()
        before = background_threads()

        consumer = driver.consumer(destination, "default")
        taken = batching.poll_batch(consumer, 3, 10.0)
        deadline = time.monotonic() + 10
        while not len(taken) and time.monotonic() < deadline:
            taken = batching.poll_batch(consumer, 3, 1.0)
        assert 1 <= len(taken) <= 3
        batching.ack_batch(consumer, taken)
        time.sleep(0.5)  # receivers have prefetched more by now, which close must not ack
        consumer.close()
        assert background_threads() - before == set(), "close left threads running"

        rest = Counter(sent) - Counter((key, body) for key, body, _, _ in columns([taken]))
        again = driver.consumer(destination, "default")
        # Unacked messages come back at once if close released them, else after the
        # visibility timeout / ack deadline (30 s).
        batches = consume_batches(again, lambda got: received_count(got) >= rest.total(), 90)
        again.close()
        assert Counter((key, body) for key, body, _, _ in columns(batches)) == rest


class FifoDeduplicationContract:
    """For drivers with broker-side de-duplication (SQS FIFO) only: mixed into their classes
    rather than skipped elsewhere, since CI fails on a skipped broker test."""

    def test_batched_fifo_deduplication(
        self, driver: Driver, create: Callable[..., Destination]
    ) -> None:
        assert driver.capabilities.fifo_deduplication
        destination = create(ordered=True, exactly_once=True)
        sent = [(key, payload(key, 0)) for key in KEYS]
        dedup_ids = [f"dedup-{key}" for key, _ in sent]
        producer = driver.producer(destination)
        for _ in range(2):  # the second round is a duplicate publish of every message
            completions = send_all_batched(producer, sent, chunk=3, dedup_ids=dedup_ids)
            assert completions.outcomes == [Outcome.OK] * len(sent), completions.errors
        producer.close()
        consumer = driver.consumer(destination, "default")
        batches = consume_batches(consumer, lambda got: received_count(got) > len(sent), 5.0)
        consumer.close()
        assert Counter((key, body) for key, body, _, _ in columns(batches)) == Counter(sent)


def _eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def _missing_for(target: str) -> str | None:
    from tests.conftest import missing_services

    service = {"kafka": "kafka", "elasticmq": "elasticmq", "moto": "moto", "pubsub": "pubsub"}
    return missing_services().get(service[target])
