"""One run: one broker target x one workload x one repeat, in phases.

Phases, in order (each recorded as an event in the history):
1. start the consumer processes with the producer processes and wait until all are ready
   (with a backlog build, the consumers start later);
2. tell the producer processes one shared schedule start time;
3. warm-up ends ``warmup`` seconds after the start (only the figures exclude it);
4. when every producer finished its schedule: drain until the consumers received everything
   acknowledged (or ``drain_timeout`` passes);
5. stop the consumers. ``finish_run`` (``harness/run/suite_runner.py``) then compacts the
   history, runs the checkers and writes ``result.json``.

The run's resources (driver, destinations, samplers, load processes, faults) belong to its
``RunSession`` (``harness/run/session.py``), which releases them on every path; what the run
starts is in ``load_slots.py``, how it watches them in ``monitor.py``.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.collectors.lag import LagSampler
from harness.drivers.base import Driver
from harness.history.schema import EventKind
from harness.load.plan import END_GRACE_SECONDS, FLUSH_SECONDS
from harness.run.monitor import Monitor, Progress
from harness.run.session import RunRequest, RunSession

__all__ = ["Progress", "RunOutcome", "RunRequest", "drain_and_stop", "execute"]

NS_PER_S = 1_000_000_000
SCHEDULE_LEAD_SECONDS = 0.3
"""Time between telling the ready producer processes the start and the start itself."""
PRODUCER_HANG_SECONDS = 30.0
"""Past the producers' own bound, by this much, one of them hangs."""


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    start_ns: int
    warmup_end_ns: int
    end_ns: int
    drain_end_ns: int
    drained: bool
    sent: int
    failed: int
    received: int
    driver: Driver
    lag: LagSampler


def execute(request: RunRequest, progress: Callable[[Progress], None]) -> RunOutcome:
    config = request.config
    state = Progress(expected=sum(round(s.rate * s.seconds) for s in config.load_steps()))
    with RunSession(request) as session:
        load, children, events = session.load, session.children, session.events
        monitor = session.monitor(state, progress)
        # Producers and consumers start together; the schedule starts once all are ready.
        producers = load.start_producers()
        ready = list(producers)
        if config.backlog_build == 0:
            ready += load.start_consumers()
        monitor.wait_ready(request.target, ready, producers)
        session.lag.start()
        start_ns = time.time_ns() + round(SCHEDULE_LEAD_SECONDS * NS_PER_S)
        for label in producers:
            children.tell(label, f"start {start_ns}")
        schedule_seconds = sum(step.seconds for step in config.load_steps())
        events.event(EventKind.RUN_START, "schedule", time_ns=start_ns)
        session.nemesis.start(start_ns)
        warmup_end_ns = start_ns + round(config.warmup * NS_PER_S)
        events.event(EventKind.WARMUP_END, "warmup", time_ns=warmup_end_ns)
        state.phase = "load"
        if config.backlog_build > 0:
            build_end = start_ns + round(config.backlog_build * NS_PER_S)
            monitor.wait_for(lambda: time.time_ns() >= build_end, config.backlog_build + 60)
            load.start_consumers()
        # Producers stop at the schedule's end (+ grace), whatever is left unsent, then wait
        # for their sends' outcomes at most FLUSH_SECONDS: past this bound one of them hangs.
        bound = (
            schedule_seconds
            + END_GRACE_SECONDS
            + FLUSH_SECONDS
            + SCHEDULE_LEAD_SECONDS
            + PRODUCER_HANG_SECONDS
        )
        monitor.wait_producers_done(
            request.target, producers, bound, crashed=load.producer_slots.killed
        )
        session.nemesis.stop()
        return drain_and_stop(
            session,
            monitor,
            state,
            progress,
            start_ns=start_ns,
            warmup_end_ns=warmup_end_ns,
            drain_timeout=config.drain_timeout,
        )


def drain_and_stop(
    session: RunSession,
    monitor: Monitor,
    state: Progress,
    progress: Callable[[Progress], None],
    *,
    start_ns: int,
    warmup_end_ns: int,
    drain_timeout: float,
) -> RunOutcome:
    """The load's end: drain (at most ``drain_timeout``), stop the consuming processes, and
    the run's outcome. Also the flow locustfile's end (``workloads/locust/flow.py``)."""
    end_ns = time.time_ns()
    session.events.event(EventKind.DRAIN_START, "drain", time_ns=end_ns)
    state.phase = "drain"
    drained = monitor.drain(drain_timeout)
    drain_end_ns = time.time_ns()
    session.events.event(EventKind.DRAIN_END, "drain", time_ns=drain_end_ns)
    state.phase = "stopping"
    progress(state)
    session.children.stop([child.label for child in session.children.consuming()])
    monitor.refresh()
    return RunOutcome(
        run_id=session.run_id,
        start_ns=start_ns,
        warmup_end_ns=warmup_end_ns,
        end_ns=end_ns,
        drain_end_ns=drain_end_ns,
        drained=drained,
        sent=state.sent,
        failed=state.failed,
        received=state.received,
        driver=session.driver,
        lag=session.lag,
    )
