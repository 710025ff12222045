"""One run's resources, owned by a ``RunSession``: acquired in order when the session is
entered, released in reverse when it is left, on every path (success, an error, Ctrl-C, and
SIGTERM, which the CLI turns into Ctrl-C).

In order of acquisition (so released from the bottom up):

1. the orchestrator's own driver, direct (faults on the proxy path must not blind the
   observer), once the target is known to support what the workload asks (exactly-once);
2. the run's destinations (deleted at the end: the history holds every message);
3. the live Prometheus metrics (served on 127.0.0.1 when ``metrics_port`` is given);
4. the runner's events recorder (the phases in the history);
5. the saturation sampler (``saturation.parquet`` is written when it stops);
6. the load processes (``Children``: SIGTERM, then SIGKILL whatever is left);
7. the lag sampler (the run starts it when the load starts);
8. the nemesis and its recorder (leaving heals whatever fault is still active);
9. whatever the caller adds with ``enter`` or ``callback`` (released first).

What the run starts (``load``) and how it watches it (``monitor``) come from the session too;
the phases themselves are the caller's (``harness/run/single.py``, ``workloads/locust/flow.py``).
"""

import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from chaos.context import NemesisContext
from chaos.figures import SCENARIO_FILE
from chaos.nemesis import Nemesis
from chaos.scenario import Scenario
from harness.atomic import write_text_atomically
from harness.collectors.lag import LagSampler
from harness.collectors.live import LiveMetrics
from harness.collectors.saturation import SaturationSampler
from harness.drivers.base import Destination, Driver
from harness.drivers.targets import open_driver
from harness.errors import UserError
from harness.flows.api import Flow
from harness.history.recorder import Recorder
from harness.load.plan import DestinationPlan, RunShared
from harness.load.throughput import ThroughputConfig
from harness.run.children import Children
from harness.run.load_slots import Load, producer_plans
from harness.run.monitor import LiveFeed, Monitor, Progress, Sends
from harness.run.saturation import sampler_for_run
from harness.run.topology import consumer_plans_of, topic_plans
from harness.schemas.evolution import SchemaControl, write_control
from harness.settings import Settings
from harness.stack.schema_registry import local_registry_url
from harness.suite import ProxyPath

T = TypeVar("T")
ProbeCall = Callable[[Callable[[], int | None]], int | None]
"""Runs the lag probe: directly, or (in a gevent process) on a real thread."""


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
    sample_saturation: bool = True
    """Sample the CPU of the run's processes (``saturation.parquet``)."""
    run_id: int | None = None
    """The run's id, when the caller recorded it before the run (``run-state.json``)."""
    make_children: Callable[[Path], Children] = Children
    """What starts the load processes: here (``Children``), or here and on workers
    (``harness/distributed/placed_children.py``)."""


class RunSession:
    """The resources of one run (see the module's docstring for their order).

    ```python
    with RunSession(request) as session:
        session.load.start_consumers()
        ...
    # every load process stopped, faults healed, samplers stopped, destinations deleted
    ```
    """

    driver: Driver
    topics: dict[str, DestinationPlan]
    created: list[Destination]
    shared: RunShared
    metrics: LiveMetrics
    events: Recorder
    saturation: SaturationSampler | None
    children: Children
    load: Load
    lag: LagSampler
    nemesis: Nemesis

    def __init__(
        self,
        request: RunRequest,
        *,
        run_id: int | None = None,
        probe_call: ProbeCall | None = None,
    ) -> None:
        self.request = request
        self.run_id = next(
            (known for known in (run_id, request.run_id) if known is not None),
            secrets.randbits(63),
        )
        self.run_dir = request.run_dir
        self.scenario = request.scenario or Scenario(name="baseline")
        self._probe_call = probe_call
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        with ExitStack() as stack:  # released at once if acquiring fails half-way
            self._acquire(stack)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, traceback)

    def close(self) -> None:
        """Release everything now (idempotent; ``with`` does it on leaving)."""
        self._stack.close()

    def enter(self, resource: AbstractContextManager[T]) -> T:
        """Hold ``resource`` until the session ends (released before the session's own)."""
        return self._stack.enter_context(resource)

    def callback(self, release: Callable[[], object]) -> None:
        """Call ``release`` when the session ends (before the session's own releases)."""
        self._stack.callback(release)

    def _acquire(self, stack: ExitStack) -> None:
        request = self.request
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.driver = open_driver(request.target, request.settings)
        stack.callback(self.driver.close)
        _require_exactly_once_support(request, self.driver)
        self.topics = topic_plans(request.workload, request.config, request.flow, self.run_id)
        self.created = []
        stack.callback(_delete_quietly, self.driver, self.created)
        self.created += [self.driver.create_destination(t.spec()) for t in self.topics.values()]
        self.shared = RunShared(
            run_dir=str(self.run_dir),
            run_id=self.run_id,
            target=request.target,
            producers_via_proxy=request.proxy in ("all", "producers"),
            consumers_via_proxy=request.proxy in ("all", "consumers"),
            settings=request.settings.for_target(request.target),
            destination=self.entry_plan,
        )
        _write_schema_control(request, self.run_dir, self.entry_plan.name)

        self.metrics = LiveMetrics(f"{self.run_id:016x}", request.target, request.workload)
        stack.callback(self.metrics.close)
        if request.metrics_port is not None:
            self.metrics.serve(request.metrics_port)
        self.events = Recorder(self.run_dir, "runner")
        stack.callback(self.events.close)

        self.children = request.make_children(self.run_dir)
        self.saturation = None
        if request.sample_saturation:
            self.saturation = sampler_for_run(
                self.run_dir, self.children, request.target, request.proxy, request.settings
            )
            self.saturation.start()
            stack.callback(self.saturation.stop)
        stack.enter_context(self.children)

        kills_consumers = any(fault.action == "consumer-kill" for fault in self.scenario.faults)
        consumers = consumer_plans_of(
            request.config,
            request.flow,
            self.shared,
            self.topics,
            durable_history=kills_consumers,
        )
        producers = producer_plans(self.shared, request.config, request.flow)
        self.load = Load(self.children, producers, consumers)

        self.lag = LagSampler(self._lag_probe, interval=1.0)
        stack.callback(self.lag.stop)

        write_text_atomically(self.run_dir / SCENARIO_FILE, self.scenario.model_dump_json(indent=2))
        faults_recorder = Recorder(self.run_dir, "nemesis")
        stack.callback(faults_recorder.close)
        self.nemesis = stack.enter_context(
            Nemesis(
                self.scenario,
                NemesisContext(
                    target=request.target,
                    settings=request.settings,
                    recorder=faults_recorder,
                    consumers=self.load.consumer_slots,
                    producers=self.load.producer_slots,
                    recreate_destination=self._recreate_destinations,
                    run_dir=self.run_dir,
                ),
            )
        )

    @property
    def entry_plan(self) -> DestinationPlan:
        """The destination the producers send to (a flow's entry topic)."""
        return next(iter(self.topics.values()))

    def _lag_probe(self) -> int | None:
        def probe() -> int | None:
            return self.driver.backlog(self.created[0], self.entry_plan.group)

        return probe() if self._probe_call is None else self._probe_call(probe)

    def _recreate_destinations(self) -> None:
        """After an in-memory broker restarted (its queues and topics are gone)."""
        for plan in self.topics.values():
            self.driver.create_destination(plan.spec())

    def monitor(
        self,
        state: Progress,
        report: Callable[[Progress], None],
        sends: Callable[[], Sends] | None = None,
    ) -> Monitor:
        """A monitor of this session's load processes, feeding its live metrics."""
        flow = self.request.flow
        return Monitor(
            self.children,
            state,
            report,
            LiveFeed(self.metrics, self.request.config.message_size, self.lag),
            entry_topic=None if flow is None else flow.entry_topic,
            slots=self.load.consumer_slots,
            sends=sends,
        )


def _delete_quietly(driver: Driver, destinations: list[Destination]) -> None:
    """The history holds every message; the broker need not keep the run's topics or queues."""
    for destination in destinations:
        try:
            driver.delete_destination(destination)
        except Exception as exc:
            logging.getLogger(__name__).warning("could not delete %s: %s", destination.address, exc)


def _require_exactly_once_support(request: RunRequest, driver: Driver) -> None:
    config = request.config
    if getattr(config, "semantics", None) != "exactly-once":
        return
    if driver.capabilities.fifo_deduplication and not config.ordered:
        raise UserError(
            f"{request.target}: exactly-once on SQS needs FIFO queues: set `ordered: true` in "
            f"the params of workload {request.workload}"
        )


def _write_schema_control(request: RunRequest, run_dir: Path, topic: str) -> None:
    """A workload with ``payload_schema: avro``: where its schemas live, before any load."""
    if request.config.payload_schema != "avro":
        return
    if request.flow is not None:
        raise UserError(
            "payload_schema: avro is for the raw-throughput workload: remove it from the "
            f"{request.flow.kind} workload's params"
        )
    url = request.config.registry_url or local_registry_url(request.settings.ports.registry)
    write_control(run_dir, SchemaControl(registry_url=url, topic=topic))
