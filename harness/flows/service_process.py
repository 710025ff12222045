"""A flow's service process: ``python -m harness.flows.service_process PLAN.json``.

Consumes one topic (or one topic's dead-letter destination), hands each event to the service in
its own database transaction, records every delivery in the run's history, acks what was
handled, nacks poison (so the broker dead-letters it), then publishes the outbox. Prints one
JSON progress line a second; stops cleanly on SIGTERM or SIGINT.
"""

import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path

from sqlalchemy import Engine

from harness.drivers.base import Destination, Driver, OrderingScope, Producer, Received
from harness.drivers.targets import open_driver
from harness.flows import outbox
from harness.flows.api import Event, PoisonError, Service, event_id
from harness.flows.database import READ_PHASE, create_tables, open_engine
from harness.flows.dead_letters import DeadLetterReader
from harness.flows.plan import ServicePlan, handled_key, partition_number, subscriber_name
from harness.flows.registry import flow_class
from harness.history.envelope import decode
from harness.history.recorder import Recorder, record_failed_acks
from harness.history.schema import Disposition, EventKind
from harness.load.consumer_process import BrokerErrors, scope_of
from harness.load.patience import with_patience
from harness.load.plan_file import read_plan
from harness.load.progress_line import LineKind, ProgressLine, emit

PUBLISH_EVERY_SECONDS = 0.05


class Outcome(Enum):
    """What became of one delivery."""

    HANDLED = "handled"  # committed: ack
    POISON = "poison"  # rolled back: nack, the broker dead-letters it in the end
    REDELIVER = "redeliver"  # committed, then nacked on purpose (``redeliver_rate``)
    FOREIGN = "foreign"  # not this run's payload: ack and ignore


class _Redeliveries:
    """Picks handled deliveries to nack after commit, at most once per broker message, and
    counts each message as handled once (a redelivery or a Kafka rewind shows it again)."""

    def __init__(self, rate: float, seed: str) -> None:
        self.rate = rate
        self._rng = random.Random(seed)
        self._picked: set[str] = set()
        self._counted: set[str] = set()

    def pick(self, message: Received) -> bool:
        if self.rate <= 0 or message.message_id in self._picked:
            return False
        if self._rng.random() >= self.rate:
            return False
        self._picked.add(message.message_id)
        return True

    def first_time(self, message: Received) -> bool:
        if self.rate <= 0:
            return True
        if message.message_id in self._counted:
            return False
        self._counted.add(message.message_id)
        return True


def _service(plan: ServicePlan) -> Service:
    flow = flow_class(plan.flow)
    config = flow.config_model.model_validate(plan.params)
    if plan.dead_letter_of is not None:
        return DeadLetterReader(config)
    for service in flow.services:
        if service.name == plan.service:
            return service(config)
    raise SystemExit(f"{plan.flow} has no service {plan.service!r}")


class _Destinations:
    """The run's destinations (opened on first use) and one producer per topic."""

    def __init__(self, driver: Driver, plan: ServicePlan) -> None:
        self.driver = driver
        self.plan = plan
        self._destinations: dict[str, Destination] = {}
        self._producers: dict[str, Producer] = {}
        self.index = {name: index for index, name in enumerate(plan.topics)}

    def destination(self, topic: str) -> Destination:
        if topic not in self._destinations:
            self._destinations[topic] = self.driver.create_destination(
                self.plan.topics[topic].spec()
            )
        return self._destinations[topic]

    def producer(self, topic: str) -> Producer:
        if topic not in self._producers:
            self._producers[topic] = self.driver.producer(self.destination(topic))
        return self._producers[topic]

    def partition(self, topic: str, partition: int | None) -> int:
        return partition_number(self.index[topic], partition)

    def close(self) -> None:
        for producer in self._producers.values():
            producer.flush(30)
            producer.close()


def main(plan_path: str) -> None:  # noqa: PLR0915 - one loop, read top to bottom
    plan = read_plan(plan_path, ServicePlan)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run = plan.run
    service = _service(plan)
    engine = open_engine(plan.database_url)
    create_tables(engine, service.metadata, outbox.OUTBOX_METADATA)
    recorder = Recorder(Path(run.run_dir), f"{plan.service}-{plan.topic}-{plan.consumer_id}")
    # A chaos run may start (or replace) this process while the broker is unreachable.
    driver = with_patience(
        lambda: open_driver(run.target, run.settings, via_proxy=run.consumers_via_proxy)
    )
    destinations = _Destinations(driver, plan)
    source = with_patience(lambda: destinations.destination(plan.topic))
    if plan.dead_letter_of is not None:
        source = source.dead_letter
    group = plan.group or plan.topics[plan.topic].group
    consumer = driver.consumer(source, group)
    ordering = driver.capabilities.ordering(plan.topics[plan.topic].ordered)
    publisher = outbox.OutboxPublisher(
        engine,
        owner=plan.owner,
        run_id=run.run_id,
        emitter_id=plan.emitter_id,
        producers=destinations.producer,
        recorder=recorder,
        partition_number=destinations.partition,
    )
    handled = nacked = foreign = 0
    next_report = time.monotonic() + 1.0
    next_publish = time.monotonic()
    redeliveries = _Redeliveries(
        service.config.redeliver_rate, f"{run.run_id}:{plan.consumer_id}:{plan.topic}"
    )
    handle = _handler(
        service,
        engine,
        plan=plan,
        recorder=recorder,
        destinations=destinations,
        ordering=ordering,
        redeliver=redeliveries.pick,
    )
    errors = BrokerErrors()

    busy_at = time.monotonic()

    def report(
        kind: LineKind, *, unpublished: int = 0, idle_seconds: float = 0.0, foreign: int = 0
    ) -> None:
        """A progress line: what this process handled (its source topic's events, or for a
        dead-letter reader the dead letters of the topic it reads) and published."""
        line = ProgressLine(
            kind=kind,
            consumer=plan.consumer_id,
            handled={handled_key(plan): handled},
            nacked=nacked,
            published=publisher.published,
            unpublished=unpublished,
            idle_seconds=idle_seconds,
            foreign=foreign,
        )
        emit(line)

    _record_subscription(recorder, plan)
    with_patience(publisher.publish_pending)  # rows a killed predecessor left in its outbox
    emit(ProgressLine(kind="ready", consumer=plan.consumer_id))
    try:
        while not stop.is_set():
            try:
                batch = consumer.poll(plan.poll_batch, 0.2)
            except Exception as exc:
                errors.failed(exc)  # the broker is down or unreachable (a fault): keep trying
                continue
            busy_at = time.monotonic() if batch else busy_at
            now = time.time_ns()
            outcomes = [(m, handle(m, now + position)) for position, m in enumerate(batch)]
            done = [m for m, o in outcomes if o in (Outcome.HANDLED, Outcome.FOREIGN)]
            again = [m for m, o in outcomes if o not in (Outcome.HANDLED, Outcome.FOREIGN)]
            handled += sum(redeliveries.first_time(m) for m, o in outcomes if o is Outcome.HANDLED)
            foreign += sum(o is Outcome.FOREIGN for _, o in outcomes)
            nacked += sum(o is Outcome.POISON for _, o in outcomes)
            if plan.durable_history and batch:
                recorder.flush()
            try:
                consumer.ack(done)
                if again:
                    consumer.nack(again)
                if time.monotonic() >= next_publish or time.monotonic() >= next_report:
                    publisher.publish_pending()
                    next_publish = time.monotonic() + PUBLISH_EVERY_SECONDS
            except Exception as exc:
                errors.failed(exc)  # unacked events come again; unpublished ones stay stored
            else:
                errors.succeeded()
            if time.monotonic() >= next_report:
                report(
                    "progress",
                    unpublished=publisher.unpublished(),
                    idle_seconds=round(time.monotonic() - busy_at, 3),
                )
                next_report += 1.0
        try:
            publisher.publish_pending()
        except Exception as exc:  # what is left stays in the outbox (counted as unpublished)
            sys.stderr.write(f"final publish failed: {exc}\n")
    finally:
        consumer.close()
        record_failed_acks(recorder, consumer, driver.name)
        destinations.close()
        driver.close()
        recorder.close()
        engine.dispose()
    report("done", foreign=foreign)


def _record_subscription(recorder: Recorder, plan: ServicePlan) -> None:
    """A fan-out subscriber says so in the history, so that it is judged even if it receives
    nothing (``harness.checkers.subscribers``)."""
    if plan.group is not None and plan.dead_letter_of is None:
        recorder.event(EventKind.SUBSCRIBED, subscriber_name(plan.topic, plan.group))


def _handler(
    service: Service,
    engine: Engine,
    *,
    plan: ServicePlan,
    recorder: Recorder,
    destinations: _Destinations,
    ordering: OrderingScope,
    redeliver: Callable[[Received], bool],
) -> Callable[[Received, int], Outcome]:
    """Handles one delivery and records it in the history."""
    run_id = plan.run.run_id
    topic = plan.topic
    record = plan.dead_letter_of is None
    prepares = type(service).prepare is not Service.prepare
    # On a fan-out topic, which of its subscribers got the delivery (docs/history.md).
    subscriber = None if plan.group is None else subscriber_name(topic, plan.group)

    def handle(message: Received, receive_ns: int) -> Outcome:
        decoded = decode(message.payload)
        if decoded is None or decoded[0].run_id != run_id:
            return Outcome.FOREIGN
        envelope, body = decoded
        event = Event(
            topic=topic,
            key=message.key,
            event_id=event_id(envelope.producer_id, envelope.key_id, envelope.seq),
            body=body,
            attempt=message.delivery_attempt or 0,
            intended_ns=envelope.intended_ns,
        )
        try:
            if prepares:
                with engine.connect() as db:
                    db.execution_options(**{READ_PHASE: True})
                    with db.begin():
                        event = replace(event, prepared=service.prepare(db, event))
            with engine.begin() as db:
                outbox.store(db, plan.owner, service.handle(db, event))
            outcome = Outcome.REDELIVER if redeliver(message) else Outcome.HANDLED
        except PoisonError:
            outcome = Outcome.POISON
        if record:
            recorder.received(
                consumer_id=plan.consumer_id,
                producer_id=envelope.producer_id,
                key_id=envelope.key_id,
                seq=envelope.seq,
                intended_ns=envelope.intended_ns,
                receive_ns=receive_ns,
                partition=destinations.partition(topic, message.partition),
                offset=-1 if message.offset is None else message.offset,
                message_id=None if message.offset is not None else message.message_id,
                delivery_attempt=message.delivery_attempt or 0,
                disposition=Disposition.ACKED if outcome is Outcome.HANDLED else Disposition.NACKED,
                scope=_scope(topic, message, ordering),
                subscriber=subscriber,
            )
        return outcome

    return handle


def _scope(topic: str, message: Received, ordering: OrderingScope) -> str | None:
    scope = scope_of(message, ordering)
    return None if scope is None else f"{topic}/{scope}"


if __name__ == "__main__":
    main(sys.argv[1])
