"""Producers as Locust users that follow an open-loop schedule.

Each user owns one driver producer and a share of the schedule. It sleeps until a message's
intended time, or sends at once if it is already late; the lateness is the *publish delay*,
recorded with every send. Locust's request events carry each completed send, so Locust's own
stats and web UI show the load, and its master/worker mode can spread users across machines.

Import this module only in a process meant to run gevent (Locust patches the standard library
on import); brokerbench runs it in producer processes of its own.
"""

import itertools
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import gevent
from locust import User, constant, task
from locust.exception import StopUser

from harness.drivers.base import Destination, Driver, Outcome, Producer, SendResult
from harness.drivers.targets import open_driver
from harness.history.envelope import Envelope, encode
from harness.history.recorder import Recorder
from harness.history.schema import SendOutcome
from harness.load.keys import key_ids, key_name
from harness.load.patience import with_patience
from harness.load.plan import ProducerPlan

MAX_BURST = 256
"""Messages a late producer sends in one go before it lets other greenlets run."""

_OUTCOMES = {
    Outcome.OK: SendOutcome.OK,
    Outcome.FAIL: SendOutcome.FAIL,
    Outcome.UNKNOWN: SendOutcome.UNKNOWN,
}


BodyMaker = Callable[[int, int, int], bytes]


def _body_maker(plan: ProducerPlan) -> BodyMaker:
    """Empty bodies (padding only), or the plan's flow generator's."""
    if plan.flow is None:
        return lambda producer_id, key_id, seq: b""
    from workloads.flows.api import event_rng
    from workloads.flows.registry import flow_class

    flow = flow_class(plan.flow)
    config = flow.config_model.model_validate(plan.flow_params)
    run_id = plan.run.run_id

    def make(producer_id: int, key_id: int, seq: int) -> bytes:
        rng = event_rng(run_id, producer_id, key_id, seq)
        return flow.generate(config, key_id, seq, rng)

    return make


class OpenLoopProducer(User):
    """Configured by ``configure`` before Locust spawns any user."""

    wait_time = constant(0)
    plan: ClassVar[ProducerPlan]
    recorder: ClassVar[Recorder]
    finished: ClassVar[gevent.event.Event]
    _indexes: ClassVar[Iterator[int]]
    _running: ClassVar[int] = 0

    @classmethod
    def configure(cls, plan: ProducerPlan, recorder: Recorder) -> None:
        cls.plan = plan
        cls.recorder = recorder
        cls.finished = gevent.event.Event()
        cls._indexes = itertools.count()
        cls._running = 0

    def global_index(self, local_index: int) -> int:
        """This user's producer id: its place among all producers of the run."""
        return self.plan.first_producer + local_index

    def schedule_start_ns(self) -> int:
        return self.plan.start_ns

    def on_start(self) -> None:
        plan = self.plan
        index = next(self._indexes)
        type(self)._running += 1
        self.producer_id = self.global_index(index)
        self.driver: Driver = with_patience(
            lambda: open_driver(
                plan.run.target, plan.run.settings, via_proxy=plan.run.producers_via_proxy
            )
        )
        spec = plan.run.destination.spec()
        self.destination: Destination = with_patience(lambda: self.driver.create_destination(spec))
        self.producer: Producer = self.driver.producer(self.destination)
        self.times = plan.schedule().intended_times(
            self.schedule_start_ns(), self.producer_id, plan.total_producers
        )
        self.keys = key_ids(
            plan.key_distribution,
            plan.keys,
            seed=plan.run.run_id ^ self.producer_id,
            zipf_exponent=plan.zipf_exponent,
            start=self.producer_id,
        )
        self.sequences: dict[int, int] = {}
        self._peeked: int | None = None
        self.request_type = plan.run.target
        self.body = _body_maker(plan)
        self.exactly_once = plan.run.destination.exactly_once

    @task
    def send_due(self) -> None:
        """Sleep until the next intended time, then send every message already due (up to
        ``MAX_BURST``, then yield to the other greenlets): a late producer catches up without a
        greenlet switch per message."""
        intended = self._next_time()
        if intended is None:
            raise StopUser
        wait = intended - time.time_ns()
        if wait > 0:
            gevent.sleep(wait / 1e9)
        now = time.time_ns()
        self._send(intended)
        for _ in range(MAX_BURST - 1):
            upcoming = self._next_time()
            if upcoming is None:
                return
            if upcoming > now:
                self._peeked = upcoming
                return
            self._send(upcoming)

    def _next_time(self) -> int | None:
        if self._peeked is not None:
            upcoming, self._peeked = self._peeked, None
            return upcoming
        return next(self.times, None)

    def _send(self, intended: int) -> None:
        key_id = next(self.keys)
        seq = self.sequences.get(key_id, 0)
        self.sequences[key_id] = seq + 1
        envelope = Envelope(self.plan.run.run_id, self.producer_id, key_id, seq, intended)
        payload = encode(envelope, self.plan.message_size, self.body(self.producer_id, key_id, seq))
        invoke_ns = time.time_ns()
        token = self.recorder.send_invoked(self.producer_id, key_id, seq, intended, invoke_ns)

        def completed(result: SendResult) -> None:
            complete_ns = time.time_ns()
            self.recorder.send_completed(
                token,
                _OUTCOMES[result.outcome],
                complete_ns,
                partition=-1 if result.partition is None else result.partition,
                offset=-1 if result.offset is None else result.offset,
            )
            self.environment.events.request.fire(
                request_type=self.request_type,
                name="send",
                response_time=(complete_ns - invoke_ns) / 1e6,
                response_length=len(payload),
                exception=None if result.ok else RuntimeError(f"{result.outcome}: {result.error}"),
                context={},
            )

        dedup_id = f"{self.producer_id}-{key_id}-{seq}" if self.exactly_once else None
        self.producer.send(key_name(key_id), payload, completed, dedup_id=dedup_id)

    def on_stop(self) -> None:
        self.producer.flush(60)
        self.producer.close()
        self.driver.close()
        type(self)._running -= 1
        if type(self)._running == 0:
            self.finished.set()
