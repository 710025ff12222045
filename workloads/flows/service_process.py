"""A flow's service process: ``python -m workloads.flows.service_process PLAN.json``.

Consumes one topic (or one topic's dead-letter destination), hands each event to the service in
its own database transaction, records every delivery in the run's history, acks what was
handled, nacks poison (so the broker dead-letters it), then publishes the outbox. Prints one
JSON progress line a second; stops cleanly on SIGTERM or SIGINT.
"""

import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine

from harness.drivers.base import Destination, Driver, OrderingScope, Producer, Received
from harness.drivers.targets import open_driver
from harness.history.envelope import decode
from harness.history.recorder import Recorder
from harness.history.schema import Disposition
from harness.load.consumer_process import scope_of
from workloads.flows import outbox
from workloads.flows.api import Event, PoisonError, Service, event_id
from workloads.flows.database import READ_PHASE, create_tables, open_engine
from workloads.flows.dead_letters import DeadLetterReader
from workloads.flows.plan import ServicePlan, partition_number
from workloads.flows.registry import flow_class

PUBLISH_EVERY_SECONDS = 0.05


def _report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


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
    plan = ServicePlan.model_validate_json(Path(plan_path).read_text(encoding="utf-8"))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run = plan.run
    service = _service(plan)
    engine = open_engine(plan.database_url)
    create_tables(engine, service.metadata, outbox.OUTBOX_METADATA)
    recorder = Recorder(Path(run.run_dir), f"{plan.service}-{plan.topic}-{plan.consumer_id}")
    driver = open_driver(run.target, run.settings, via_proxy=run.consumers_via_proxy)
    destinations = _Destinations(driver, plan)
    source = destinations.destination(plan.topic)
    if plan.dead_letter_of is not None:
        source = source.dead_letter
    group = plan.topics[plan.topic].group
    consumer = driver.consumer(source, group)
    ordering = driver.capabilities.ordering(plan.topics[plan.topic].ordered)
    publisher = outbox.OutboxPublisher(
        engine,
        owner=plan.consumer_id,
        run_id=run.run_id,
        emitter_id=plan.emitter_id,
        producers=destinations.producer,
        recorder=recorder,
        partition_number=destinations.partition,
    )
    handled = nacked = foreign = 0
    firsts = _FirstAcks()
    next_report = time.monotonic() + 1.0
    next_publish = time.monotonic()
    handle = _handler(
        service, engine, plan=plan, recorder=recorder, destinations=destinations, ordering=ordering
    )
    publisher.publish_pending()  # rows a killed predecessor with this consumer id left behind
    _report(kind="ready", consumer=plan.consumer_id)
    try:
        while not stop.is_set():
            batch = consumer.poll(plan.poll_batch, 0.2)
            now = time.time_ns()
            done: list[Received] = []
            poison: list[Received] = []
            for position, message in enumerate(batch):
                outcome = handle(message, now + position)
                if outcome is None:
                    foreign += 1
                    done.append(message)
                elif outcome:
                    done.append(message)
                    handled += firsts.acked(message)
                else:
                    poison.append(message)
                    firsts.nacked(message)
            consumer.ack(done)
            if poison:
                consumer.nack(poison)
            nacked += len(poison)
            if time.monotonic() >= next_publish:
                publisher.publish_pending()
                next_publish = time.monotonic() + PUBLISH_EVERY_SECONDS
            if time.monotonic() >= next_report:
                _report(
                    kind="progress",
                    consumer=plan.consumer_id,
                    handled={plan.dead_letter_of or plan.topic: handled},
                    nacked=nacked,
                    published=publisher.published,
                )
                next_report += 1.0
        publisher.publish_pending()
    finally:
        consumer.close()
        destinations.close()
        driver.close()
        recorder.close()
        engine.dispose()
    _report(
        kind="done",
        consumer=plan.consumer_id,
        handled={plan.dead_letter_of or plan.topic: handled},
        nacked=nacked,
        published=publisher.published,
        foreign=foreign,
    )


class _FirstAcks:
    """Counts each message's first ack where the broker numbers messages (Kafka offsets): a
    nack rewinds the partition, re-delivering messages already handled after it, and the
    drain (handled >= published) must not count those twice and stop early. Relies on a
    partition's messages arriving in offset order, as Kafka delivers them to one consumer."""

    def __init__(self) -> None:
        self.highest: dict[int, int] = {}
        self.unacked: set[tuple[int, int]] = set()
        """Offsets at or below the highest seen that were nacked and not acked since."""

    def acked(self, message: Received) -> bool:
        if message.partition is None or message.offset is None:
            return True
        position = (message.partition, message.offset)
        if message.offset > self.highest.get(message.partition, -1):
            self.highest[message.partition] = message.offset
            return True
        if position in self.unacked:
            self.unacked.discard(position)
            return True
        return False

    def nacked(self, message: Received) -> None:
        if message.partition is None or message.offset is None:
            return
        if message.offset > self.highest.get(message.partition, -1):
            self.highest[message.partition] = message.offset
            self.unacked.add((message.partition, message.offset))


def _handler(
    service: Service,
    engine: Engine,
    *,
    plan: ServicePlan,
    recorder: Recorder,
    destinations: _Destinations,
    ordering: OrderingScope,
) -> Callable[[Received, int], bool | None]:
    """Handles one delivery: True when handled (ack), False to nack (poison, or a redelivery
    asked for by ``redeliver_rate``), None when the payload is not this run's."""
    run_id = plan.run.run_id
    topic = plan.topic
    record = plan.dead_letter_of is None
    prepares = type(service).prepare is not Service.prepare
    redeliver_rate = service.config.redeliver_rate if record else 0.0
    redeliveries = random.Random(f"{run_id}:{plan.consumer_id}")

    def handle(message: Received, receive_ns: int) -> bool | None:
        decoded = decode(message.payload)
        if decoded is None or decoded[0].run_id != run_id:
            return None
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
                outbox.store(db, plan.consumer_id, service.handle(db, event))
            # Committed; at redeliver_rate nacked anyway, as if the consumer died before acking.
            ok = not (redeliver_rate and redeliveries.random() < redeliver_rate)
        except PoisonError:
            ok = False
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
                disposition=Disposition.ACKED if ok else Disposition.NACKED,
                scope=_scope(topic, message, ordering),
            )
        return ok

    return handle


def _scope(topic: str, message: Received, ordering: OrderingScope) -> str | None:
    scope = scope_of(message, ordering)
    return None if scope is None else f"{topic}/{scope}"


if __name__ == "__main__":
    main(sys.argv[1])
