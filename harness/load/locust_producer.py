"""Producers as Locust users that follow an open-loop schedule, a batch at a time.

Each user owns one driver producer and a share of the schedule. It sleeps until the next
intended time, then hands every message already due (up to ``MAX_BATCH``) to the driver in one
``send_batch`` call: a producer that falls behind catches up in large batches instead of paying
a task, a greenlet switch and a callback object per message. How late each send was (the
*publish delay*) is recorded with it. Sends live in a columnar ``SendLog``; what completed is
harvested every ``HARVEST_SECONDS`` into the history shard and into Locust's request statistics
(``log_sends``: true counts and response times, fed per batch), so Locust's stats and web UI
show the load, and its master/worker mode can spread users across machines.

A run is bounded: a user stops sending ``END_GRACE_SECONDS`` after its schedule's end, whatever
the schedule still holds; those messages are counted as ``not_sent`` (the harness fell behind)
and recorded as a ``not-sent`` event in the history.

Import this module only in a process meant to run gevent (Locust patches the standard library
on import); brokerbench runs it in producer processes of its own.
"""

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import ClassVar, NoReturn

import gevent
import numpy as np
import numpy.typing as npt
from locust import User, constant, task
from locust.exception import StopUser

from harness.drivers.base import BatchProducer, Destination, Driver, Producer
from harness.drivers.batching import send_batch
from harness.drivers.targets import open_driver
from harness.history.envelope import Envelope, EnvelopePacker, encode
from harness.history.recorder import Recorder
from harness.history.schema import EventKind
from harness.history.send_log import SendLog
from harness.load.keys import KeyStream
from harness.load.locust_stats import log_sends
from harness.load.patience import with_patience
from harness.load.plan import END_GRACE_SECONDS, FLUSH_SECONDS, ProducerPlan
from harness.load.schedule import NS_PER_S, Cursor

MAX_BATCH = 1024
"""Messages handed to the driver in one call; also bounds how far apart the sends of one batch
are from the ``invoke_ns`` they share (a few hundred microseconds on Kafka)."""
HARVEST_SECONDS = 0.05
"""How often completed sends go to the history shard and Locust's statistics."""

BodyMaker = Callable[[int, int, int], bytes]


def _body_maker(plan: ProducerPlan) -> BodyMaker | None:
    """None for empty bodies (padding only), else the plan's flow generator."""
    if plan.flow is None:
        return None
    from harness.flows.api import event_rng
    from harness.flows.registry import flow_class

    flow = flow_class(plan.flow)
    config = flow.config_model.model_validate(plan.flow_params)
    run_id = plan.run.run_id

    def make(producer_id: int, key_id: int, seq: int) -> bytes:
        rng = event_rng(run_id, producer_id, key_id, seq)
        return flow.generate(config, key_id, seq, rng)

    return make


class Lateness:
    """Publish delays (send - intended) since the last ``take``: the producers' share of the
    saturation figures (a producer that cannot keep up falls behind its schedule)."""

    def __init__(self) -> None:
        self._delays: list[npt.NDArray[np.int64]] = []

    def add(self, delays_ns: npt.NDArray[np.int64]) -> None:
        self._delays.append(delays_ns)

    def take(self) -> tuple[float, float]:
        """(p99, max) in ms since the last call; (0, 0) when nothing was sent."""
        delays, self._delays = self._delays, []
        if not delays:
            return 0.0, 0.0
        joined = np.concatenate(delays)
        return float(np.percentile(joined, 99)) / 1e6, float(joined.max()) / 1e6


class OpenLoopProducer(User):
    """Configured by ``configure`` before Locust spawns any user."""

    wait_time = constant(0)
    plan: ClassVar[ProducerPlan]
    recorder: ClassVar[Recorder]
    finished: ClassVar[gevent.event.Event]
    lateness: ClassVar[Lateness]
    connected: ClassVar[int] = 0
    """Users whose producer is connected (they then wait for the schedule's start)."""
    _start: ClassVar["gevent.event.AsyncResult[int]"]
    not_sent: ClassVar[int] = 0
    _next_index: ClassVar[int] = 0
    _running: ClassVar[int] = 0

    @classmethod
    def configure(cls, plan: ProducerPlan, recorder: Recorder) -> None:
        cls.plan = plan
        cls.recorder = recorder
        cls.finished = gevent.event.Event()
        cls.lateness = Lateness()
        cls.connected = 0
        cls._start = gevent.event.AsyncResult()
        cls.not_sent = 0
        cls._next_index = 0
        cls._running = 0

    def global_index(self, local_index: int) -> int:
        """This user's producer id: its place among all producers of the run."""
        return self.plan.first_producer + local_index

    def schedule_start_ns(self) -> int:
        """The plan's start, or the one given to ``begin`` (waits for it)."""
        return self.plan.start_ns if self.plan.start_ns is not None else self._start.get()

    @classmethod
    def started(cls) -> bool:
        """The schedule's start is known: sends may have been recorded."""
        return cls.plan.start_ns is not None or cls._start.ready()

    @classmethod
    def begin(cls, start_ns: int) -> None:
        """The schedule starts at ``start_ns`` (plans without a start wait for this)."""
        cls._start.set(start_ns)

    def on_start(self) -> None:
        plan = self.plan
        cls = type(self)
        index, cls._next_index = cls._next_index, cls._next_index + 1
        cls._running += 1
        self.producer_id = self.global_index(index)
        self.driver: Driver = with_patience(
            lambda: open_driver(
                plan.run.target, plan.run.settings, via_proxy=plan.run.producers_via_proxy
            )
        )
        spec = plan.run.destination.spec()
        self.destination: Destination = with_patience(lambda: self.driver.create_destination(spec))
        self.producer: Producer = self.driver.producer(self.destination)
        # Resolved once: isinstance against a runtime-checkable protocol costs 4-8 us a call.
        self.send_batch: Callable[..., None] = (
            self.producer.send_batch
            if isinstance(self.producer, BatchProducer)
            else partial(send_batch, self.producer)
        )
        type(self).connected += 1
        schedule = plan.schedule()
        start_ns = self.schedule_start_ns()
        self.cursor: Cursor = schedule.cursor(start_ns, self.producer_id, plan.total_producers)
        self.stop_ns = start_ns + round((schedule.seconds + END_GRACE_SECONDS) * NS_PER_S)
        self.keys = KeyStream(
            plan.key_distribution,
            plan.keys,
            seed=plan.run.run_id ^ self.producer_id,
            zipf_exponent=plan.zipf_exponent,
            start=self.producer_id,
        )
        self.log: SendLog = self.recorder.send_log(self.producer_id)
        self.body = _body_maker(plan)
        self.schema_writer = None
        if plan.schema_bodies:
            from harness.schemas.bodies import SchemaWriter

            self.schema_writer = SchemaWriter(Path(plan.run.run_dir), plan.process_index)
        self.packer = EnvelopePacker(plan.run.run_id, self.producer_id, plan.message_size)
        self.payload_bytes = plan.message_size
        self.request_type = plan.run.target
        self.exactly_once = plan.run.destination.exactly_once
        self.next_harvest_ns = 0

    @task
    def send_due(self) -> None:
        """Sleep until the next intended time (waking to harvest meanwhile), then send every
        message already due; stop at the schedule's end or the run's bound."""
        now = time.time_ns()
        if now >= self.next_harvest_ns:
            self.harvest()
            self.next_harvest_ns = now + round(HARVEST_SECONDS * NS_PER_S)
            now = time.time_ns()
        upcoming = self.cursor.next_time()
        if upcoming is None or now >= self.stop_ns:
            self._end_schedule()
        if upcoming > now:
            gevent.sleep((min(upcoming, self.next_harvest_ns) - now) / NS_PER_S)
            return
        self._send(self.cursor.take_due(now, MAX_BATCH), now)

    def _send(self, intended_ns: npt.NDArray[np.int64], invoke_ns: int) -> None:
        """Send a batch whose send began at ``invoke_ns`` (before the bound): the time taken
        to pack it counts in its publish latency, never past the run's bound."""
        key_ids, seqs = self.keys.take(len(intended_ns))
        if self.schema_writer is not None:
            payloads = self._payloads_with_schema(key_ids, seqs, intended_ns)
        elif self.body is None:
            payloads = self.packer.pack(key_ids, seqs, intended_ns)
        else:
            payloads = self._payloads_with_bodies(key_ids, seqs, intended_ns)
        names = self.keys.names
        ids = key_ids.tolist()
        keys = [names[key_id] for key_id in ids]
        dedup_ids = (
            [f"{self.producer_id}-{k}-{s}" for k, s in zip(ids, seqs.tolist(), strict=True)]
            if self.exactly_once
            else None
        )
        first = self.log.invoked(key_ids, seqs, intended_ns, invoke_ns)
        self.send_batch(keys, payloads, first, self.log, dedup_ids=dedup_ids)
        self.lateness.add(invoke_ns - intended_ns)

    def _payloads_with_bodies(
        self,
        key_ids: npt.NDArray[np.uint32],
        seqs: npt.NDArray[np.uint64],
        intended_ns: npt.NDArray[np.int64],
    ) -> list[bytes]:
        assert self.body is not None
        run_id, producer_id, size, body = (
            self.plan.run.run_id,
            self.producer_id,
            self.plan.message_size,
            self.body,
        )
        payloads = [
            encode(Envelope(run_id, producer_id, k, s, t), size, body(producer_id, k, s))
            for k, s, t in zip(key_ids.tolist(), seqs.tolist(), intended_ns.tolist(), strict=True)
        ]
        self.payload_bytes = sum(map(len, payloads)) // len(payloads)
        return payloads

    def _payloads_with_schema(
        self,
        key_ids: npt.NDArray[np.uint32],
        seqs: npt.NDArray[np.uint64],
        intended_ns: npt.NDArray[np.int64],
    ) -> list[bytes]:
        """Bodies through the registry, the whole batch in the version the control file names
        when the batch is made."""
        writer = self.schema_writer
        assert writer is not None
        run_id, producer_id, size = self.plan.run.run_id, self.producer_id, self.plan.message_size
        version = writer.version()
        return [
            encode(
                Envelope(run_id, producer_id, k, s, t),
                size,
                writer.body(version, producer_id, k, s),
            )
            for k, s, t in zip(key_ids.tolist(), seqs.tolist(), intended_ns.tolist(), strict=True)
        ]

    def harvest(self) -> None:
        """Completed sends to the history shard and Locust's statistics."""
        harvest = self.log.harvest()
        if harvest.completed:
            stats = self.environment.stats
            log_sends(stats, self.request_type, "send", harvest, self.payload_bytes)

    def _end_schedule(self) -> NoReturn:
        rest = self.cursor.count_rest()
        if rest:
            type(self).not_sent += rest
            self.recorder.event(
                EventKind.NOT_SENT,
                "schedule",
                f"producer-{self.producer_id}",
                {"producer_id": self.producer_id, "count": rest},
            )
        raise StopUser

    def on_stop(self) -> None:
        deadline = time.monotonic() + FLUSH_SECONDS
        while self.log.in_flight and time.monotonic() < deadline:
            self.producer.flush(0.05)
            self.harvest()
        self.producer.close()
        self.driver.close()
        self.harvest()
        if self.schema_writer is not None:
            summary = self.schema_writer.summary(self.producer_id)
            self.recorder.event(
                EventKind.SCHEMA_WRITTEN, "schema", f"producer-{self.producer_id}", summary
            )
        type(self)._running -= 1
        if type(self)._running == 0:
            self.finished.set()
