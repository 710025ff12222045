"""One run: one broker target x one workload x one repeat.

Phases, in order (each recorded as an event in the history):
1. create the destination; start the consumer processes and wait until they are ready
   (unless backlog build is asked, then they start later);
2. start the producer processes, all on one shared schedule start time;
3. warm-up ends ``warmup`` seconds after the start (only the figures exclude it);
4. when every producer finished its schedule: drain until the consumers received everything
   acknowledged (or ``drain_timeout`` passes);
5. stop the consumers, compact the history, run the checkers, write ``result.json``.

The load processes are always stopped, on success, error or Ctrl-C.
"""

import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.context import NemesisContext
from chaos.figures import SCENARIO_FILE
from chaos.nemesis import Nemesis
from chaos.scenario import Scenario
from harness.atomic import write_text_atomically
from harness.collectors.lag import LagSampler
from harness.collectors.live import LiveMetrics
from harness.drivers.base import Destination, Driver
from harness.drivers.targets import open_driver
from harness.errors import UserError
from harness.flows.api import Flow
from harness.history.recorder import Recorder
from harness.history.schema import EventKind
from harness.history.shards import read_shard, shard_path
from harness.load.plan import END_GRACE_SECONDS, FLUSH_SECONDS, ProducerPlan, RunShared
from harness.load.throughput import ThroughputConfig
from harness.run.children import Children
from harness.run.quiescence import ServiceTotals
from harness.run.saturation import sampler_for_run
from harness.run.topology import consumer_plans_of, replacement_plan, topic_plans
from harness.settings import Settings
from harness.suite import ProxyPath

NS_PER_S = 1_000_000_000
SCHEDULE_LEAD_SECONDS = 0.3
"""Time between telling the ready producer processes the start and the start itself."""
READY_SECONDS = 60.0
"""How long the load processes may take to start and connect."""


@dataclass(frozen=True)
class RunRequest:
    suite: str
    workload: str
    target: str
    repeat: int
    config: ThroughputConfig
    settings: Settings
    proxy: ProxyPath
    run_dir: Path
    metrics_port: int | None = None
    """Serve live Prometheus metrics on 127.0.0.1:port during the run (0: any free port)."""
    flow: type[Flow] | None = None
    """A business flow (``config`` is then its ``FlowConfig``); None: raw throughput."""
    scenario: Scenario | None = None
    """Faults to apply during the load (``chaos/``); None: none."""


@dataclass
class Progress:
    """What the run reports while it goes (for a progress bar)."""

    phase: str = "starting"
    sent: int = 0
    failed: int = 0
    received: int = 0
    """Deliveries on every topic (a flow's services count what they handled downstream too)."""
    expected: int = 0
    entry_received: int = 0
    """Deliveries of the messages the producers sent (a flow: its entry topic): the bar's
    measure against ``expected``."""


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


class LiveFeed:
    """Feeds the run's Prometheus metrics from the progress lines (deltas since last time)."""

    def __init__(self, metrics: LiveMetrics, message_size: int, lag: LagSampler) -> None:
        self.metrics = metrics
        self.message_size = message_size
        self.lag = lag
        self._seen = Progress()
        self._ticks: dict[str, int] = {}

    def update(self, state: Progress, consumers: dict[str, dict[str, Any]]) -> None:
        ok, seen_ok = state.sent - state.failed, self._seen.sent - self._seen.failed
        self.metrics.record_send("ok", self.message_size, max(0, ok - seen_ok))
        self.metrics.record_send(
            "fail", self.message_size, max(0, state.failed - self._seen.failed)
        )
        self.metrics.record_receive(count=max(0, state.received - self._seen.received))
        self._seen = Progress(sent=state.sent, failed=state.failed, received=state.received)
        for label, last in consumers.items():
            tick = int(last.get("tick", 0))
            if tick > self._ticks.get(label, 0):
                self._ticks[label] = tick
                for e2e_ms in last.get("e2e_ms", []):
                    self.metrics.record_receive(e2e_ms / 1000, count=0)
        if self.lag.samples:
            self.metrics.set_backlog(self.lag.samples[-1].backlog)


def _producer_shares(config: ThroughputConfig) -> list[int]:
    base, extra = divmod(config.producers, config.processes)
    return [base + (1 if index < extra else 0) for index in range(config.processes)]


def _start_producers(
    children: Children, shared: RunShared, config: ThroughputConfig, flow: type[Flow] | None
) -> list[str]:
    """One producer process per share; each connects, says ``ready`` and waits to be told the
    schedule's start (``Children.tell``)."""
    labels = []
    first = 0
    for index, count in enumerate(_producer_shares(config)):
        label = f"producer-{index}"
        plan = ProducerPlan(
            run=shared,
            process_index=index,
            first_producer=first,
            producers=count,
            total_producers=config.producers,
            steps=config.load_steps(),
            message_size=config.message_size,
            keys=config.keys,
            key_distribution=config.key_distribution,
            zipf_exponent=config.zipf_exponent,
            flow=None if flow is None else flow.kind,
            flow_params={} if flow is None else config.model_dump(mode="json"),
        )
        children.start(label, "harness.load.producer_process", plan, stdin=True)
        labels.append(label)
        first += count
    return labels


class LoadSlots:
    """The nemesis's handle on one kind of load process (``chaos.context.LoadProcesses``): kill
    the process in a slot (its exit is then expected) and start a replacement."""

    def __init__(
        self, children: Children, labels: list[str], start: Callable[[str, int], None] | None
    ) -> None:
        self.children = children
        self.current = {label: label for label in labels}
        self.killed: set[str] = set()
        self.final_received: dict[str, int] = {}
        """Deliveries a killed consumer recorded (its last progress line may be older)."""
        self._start = start
        self._generation = 0

    def labels(self) -> list[str]:
        return list(self.current)

    def kill(self, label: str) -> None:
        running = self.current[label]
        self.killed.add(running)
        child = self.children.children[running]
        child.process.kill()
        child.process.wait()
        shard = shard_path(self.children.run_dir, "receives", running)
        if shard.exists():
            self.final_received[running] = sum(batch.num_rows for batch in read_shard(shard))

    def restart(self, label: str) -> None:
        if self._start is None:
            raise RuntimeError(f"{label}: this kind of load process is not restarted")
        self._generation += 1
        index = int(label.rsplit("-", 1)[1]) + REPLACEMENT_ID_STEP * self._generation
        replacement = f"{label.rsplit('-', 1)[0]}-{index}"
        self._start(replacement, index)
        self.current[label] = replacement


REPLACEMENT_ID_STEP = 1000
"""A replacement consumer's id: its slot's id + 1000 x the replacement's number."""


def _slot_of(label: str) -> str:
    """The slot a replacement's label (``consumer-1003``) stands in for (``consumer-3``)."""
    prefix, index = label.rsplit("-", 1)
    return f"{prefix}-{int(index) % REPLACEMENT_ID_STEP}"


def execute(  # noqa: PLR0915 - the phases read best in one sequence
    request: RunRequest, progress: Callable[[Progress], None]
) -> RunOutcome:
    config = request.config
    run_id = secrets.randbits(63)
    run_dir = request.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    # The orchestrator's own client (destination, lag probe) goes direct: faults on the proxy
    # path must not blind the observer.
    driver = open_driver(request.target, request.settings)
    _require_exactly_once_support(request, driver)
    topics = topic_plans(request.workload, request.config, request.flow, run_id)
    destination_plan = next(iter(topics.values()))
    created = [driver.create_destination(plan.spec()) for plan in topics.values()]
    destination = created[0]
    shared = RunShared(
        run_dir=str(run_dir),
        run_id=run_id,
        target=request.target,
        producers_via_proxy=request.proxy in ("all", "producers"),
        consumers_via_proxy=request.proxy in ("all", "consumers"),
        settings=request.settings,
        destination=destination_plan,
    )
    events = Recorder(run_dir, "runner")
    children = Children(run_dir)
    state = Progress(expected=sum(round(s.rate * s.seconds) for s in config.load_steps()))
    lag = LagSampler(lambda: driver.backlog(destination, destination_plan.group), interval=1.0)
    scenario = request.scenario or Scenario(name="baseline")
    kills_consumers = any(fault.action == "consumer-kill" for fault in scenario.faults)
    consumer_plans = consumer_plans_of(
        request.config, request.flow, shared, topics, durable_history=kills_consumers
    )
    consumers = list(consumer_plans)

    def start_consumer(label: str, consumer_id: int) -> None:
        """Start ``label``, or a replacement of the slot it names (``<slot label>`` with a new
        consumer id), with the slot's plan."""
        module, plan = consumer_plans[label if label in consumer_plans else _slot_of(label)]
        children.start(label, module, replacement_plan(plan, consumer_id))

    def start_consumers() -> None:
        for label, (module, plan) in consumer_plans.items():
            children.start(label, module, plan)

    def recreate_destination() -> None:
        for plan in topics.values():
            driver.create_destination(plan.spec())

    consumer_slots = LoadSlots(children, consumers, start_consumer)
    producer_slots = LoadSlots(
        children, [f"producer-{i}" for i in range(len(_producer_shares(config)))], None
    )
    write_text_atomically(run_dir / SCENARIO_FILE, scenario.model_dump_json(indent=2))
    nemesis = Nemesis(
        scenario,
        NemesisContext(
            target=request.target,
            settings=request.settings,
            recorder=Recorder(run_dir, "nemesis"),
            consumers=consumer_slots,
            producers=producer_slots,
            recreate_destination=recreate_destination,
        ),
    )

    metrics = LiveMetrics(f"{run_id:016x}", request.target, request.workload)
    if request.metrics_port is not None:
        metrics.serve(request.metrics_port)
    monitor = _Monitor(
        children,
        state,
        progress,
        LiveFeed(metrics, config.message_size, lag),
        entry_topic=None if request.flow is None else request.flow.entry_topic,
    )
    monitor.slots = consumer_slots
    saturation = sampler_for_run(run_dir, children, request.target, request.proxy, request.settings)
    try:
        saturation.start()
        nemesis.check()
        # Producers and consumers start together; the schedule starts once all are ready.
        producers = _start_producers(children, shared, config, request.flow)
        ready = list(producers)
        if config.backlog_build == 0:
            start_consumers()
            ready += consumers
        if not monitor.wait_for(lambda: monitor.started(ready, producers), READY_SECONDS):
            late = [label for label in ready if not monitor.said([label], "ready")]
            raise UserError(f"{request.target}: {', '.join(late)} not ready within 60 s")
        lag.start()
        start_ns = time.time_ns() + round(SCHEDULE_LEAD_SECONDS * NS_PER_S)
        for label in producers:
            children.tell(label, f"start {start_ns}")
        schedule_seconds = sum(step.seconds for step in config.load_steps())
        events.event(EventKind.RUN_START, "schedule", time_ns=start_ns)
        nemesis.start(start_ns)
        warmup_end_ns = start_ns + round(config.warmup * NS_PER_S)
        events.event(EventKind.WARMUP_END, "warmup", time_ns=warmup_end_ns)
        state.phase = "load"
        if config.backlog_build > 0:
            build_end = start_ns + round(config.backlog_build * NS_PER_S)
            monitor.wait_for(lambda: time.time_ns() >= build_end, config.backlog_build + 60)
            start_consumers()
        # Producers stop at the schedule's end (+ grace), whatever is left unsent, then wait
        # for their sends' outcomes at most FLUSH_SECONDS: past this bound one of them hangs.
        bound = schedule_seconds + END_GRACE_SECONDS + FLUSH_SECONDS + SCHEDULE_LEAD_SECONDS + 30
        if not monitor.wait_for(lambda: monitor.exited(producers), bound):
            raise UserError(
                f"{request.target}: producer processes still running {bound:.0f} s after the "
                f"schedule started, though they stop at its end (logs: {run_dir / 'logs'})"
            )
        for label in producers:
            if (
                label not in producer_slots.killed
                and children.children[label].process.returncode != 0
            ):
                raise UserError(children.failure(label))
        nemesis.stop()
        end_ns = time.time_ns()
        events.event(EventKind.DRAIN_START, "drain", time_ns=end_ns)
        state.phase = "drain"
        drained = monitor.wait_for(
            monitor.quiescent,
            config.drain_timeout,
            settle_seconds=1.0,
        )
        drain_end_ns = time.time_ns()
        events.event(EventKind.DRAIN_END, "drain", time_ns=drain_end_ns)
        state.phase = "stopping"
        progress(state)
        children.stop([label for label in children.children if label.startswith("consumer")])
        monitor.refresh()
    finally:
        nemesis.__exit__(*sys.exc_info())  # heals whatever is still active
        if nemesis.context.recorder is not None:
            nemesis.context.recorder.close()
        lag.stop()
        children.stop_all()
        saturation.stop()  # writes saturation.parquet
        events.close()
        metrics.close()
        _delete_quietly(driver, created)
    return RunOutcome(
        run_id=run_id,
        start_ns=start_ns,
        warmup_end_ns=warmup_end_ns,
        end_ns=end_ns,
        drain_end_ns=drain_end_ns,
        drained=drained,
        sent=state.sent,
        failed=state.failed,
        received=state.received,
        driver=driver,
        lag=lag,
    )


def _delete_quietly(driver: Driver, destinations: list[Destination]) -> None:
    """The history holds every message; the broker need not keep the run's topics or queues."""
    for destination in destinations:
        try:
            driver.delete_destination(destination)
        except Exception as exc:
            logging.getLogger(__name__).warning("could not delete %s: %s", destination.address, exc)
    driver.close()


def _require_exactly_once_support(request: RunRequest, driver: Driver) -> None:
    config = request.config
    if getattr(config, "semantics", None) != "exactly-once":
        return
    if driver.capabilities.fifo_deduplication and not config.ordered:
        raise UserError(
            f"{request.target}: exactly-once on SQS needs FIFO queues: set `ordered: true` in "
            f"the params of workload {request.workload}"
        )


class _Monitor:
    """Folds the children's progress lines into ``state`` and the live metrics, reports it,
    and fails fast when a consumer dies."""

    def __init__(
        self,
        children: Children,
        state: Progress,
        report: Callable[[Progress], None],
        live: "LiveFeed",
        entry_topic: str | None = None,
    ) -> None:
        self.children = children
        self.state = state
        self.report = report
        self.live = live
        self.entry_topic = entry_topic
        self.services = ServiceTotals()
        self.slots: LoadSlots | None = None
        """The consumers the nemesis may kill: their exit is not a failure."""

    def refresh(self) -> None:
        lasts = {label: child.last for label, child in self.children.children.items()}
        producers = [last for label, last in lasts.items() if label.startswith("producer")]
        consumers = {label: last for label, last in lasts.items() if label.startswith("consumer")}
        for label, received in (self.slots.final_received if self.slots else {}).items():
            consumers[label] = {**consumers[label], "received": received}
        self.state.sent = sum(int(last.get("sent", 0)) for last in producers)
        self.state.failed = sum(int(last.get("failed", 0)) for last in producers)
        self.state.received = sum(int(last.get("received", 0)) for last in consumers.values())
        running = [
            consumers[label] for label in consumers if not self.children.children[label].exited
        ]
        self.services = ServiceTotals.of(consumers.values(), running)
        self.state.received += sum(self.services.handled.values())
        self.state.entry_received = (
            self.services.entry_handled(self.entry_topic)
            if self.entry_topic is not None
            else self.state.received
        )
        self.live.update(self.state, consumers)
        self.report(self.state)

    def quiescent(self) -> bool:
        """Everything acknowledged was consumed: plain consumers received every ok send; for
        a flow, each topic's events were handled (or dead-lettered) as often as published, and
        no service holds events it has yet to publish (its outbox)."""
        entry_ok = self.state.sent - self.state.failed
        if self.entry_topic is None:
            return self.state.received >= entry_ok
        return self.services.quiescent(self.entry_topic, entry_ok)

    def said(self, labels: list[str], kind: str) -> bool:
        return all(
            self.children.children[label].last.get("kind") in (kind, "progress") for label in labels
        )

    def started(self, labels: list[str], producers: list[str]) -> bool:
        """Every one of ``labels`` said ready; raises if a producer died before that."""
        for label in producers:
            if self.children.children[label].exited:
                raise UserError(self.children.failure(label))
        return self.said(labels, "ready")

    def exited(self, labels: list[str]) -> bool:
        return all(self.children.children[label].exited for label in labels)

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, settle_seconds: float = 0.0
    ) -> bool:
        """Wait until ``condition`` has held for ``settle_seconds``; False on timeout."""
        deadline = time.monotonic() + timeout
        held_since: float | None = None
        while time.monotonic() < deadline:
            self.refresh()
            for label, child in self.children.children.items():
                if (
                    label.startswith("consumer")
                    and child.exited
                    and (self.slots is None or label not in self.slots.killed)
                ):
                    raise UserError(self.children.failure(label))
            if condition():
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since >= settle_seconds:
                    return True
            else:
                held_since = None
            time.sleep(0.2)
        return False
