"""A business flow as a plain locustfile, for Locust's web UI (see ``workloads/locust/tracker.py``).

    locust -f workloads/locust/tracker.py --bb-target kafka --bb-rate 200 --bb-duration 60

Start users in the web UI (http://127.0.0.1:8089): the test is one brokerbench run. Its
``RunSession`` (``harness/run/session.py``, as ``brokerbench run`` has one) creates the flow's
topics and starts its services as child processes; the users publish the entry events on an
open-loop schedule of ``--bb-rate`` events/s shared among them, and Locust's charts show every
send. When the test stops, the services get up to ``--bb-drain`` seconds to catch up (the same
drain as ``brokerbench run``'s) and stop, and ``finish_run`` checks the recorded history (the
log-level checks, exactly-once where the flow asks for it, and the flow's invariants) and
writes ``result.json``, as ``brokerbench run`` does; the verdicts are printed. The run folder
(``--bb-run-dir``/<flow>-<run id>) keeps the history, the services' databases and result.json.
The session releases everything it holds on every path, also when Locust quits without
stopping the test. One process only (no master/worker: use ``brokerbench run`` for that); no
saturation samples (the producers are Locust users in this very process).
"""

import json
import secrets
import time
from argparse import ArgumentParser
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

import gevent
import locust  # noqa: F401 - first, for gevent
from grpc.experimental import gevent as grpc_gevent
from locust import events
from locust.env import Environment

from harness.drivers.targets import target_driver
from harness.flows.api import Flow
from harness.flows.fan_out import resolve_fan_out
from harness.flows.registry import flow_class
from harness.history.recorder import Recorder
from harness.history.schema import EventKind
from harness.load import locust_producer
from harness.load.plan import ProducerPlan, StepPlan
from harness.run.lifecycle import identity, record_failure, record_interruption
from harness.run.monitor import Progress, Sends
from harness.run.run_state import RunState, mark_ended, mark_running
from harness.run.session import RunRequest, RunSession
from harness.run.single import drain_and_stop
from harness.run.suite_runner import PlannedRun, finish_run
from harness.settings import load_settings
from harness.suite import ProxyPath, Suite, WorkloadEntry
from workloads.locust.binding import listen_on_loopback_by_default

grpc_gevent.init_gevent()
START_LEAD_NS = 2_000_000_000
NS_PER_S = 1_000_000_000
SUITE = "locust"
"""The suite name in result.json."""


def _options(parser: ArgumentParser) -> None:
    listen_on_loopback_by_default(parser)
    group = parser.add_argument_group("brokerbench")
    group.add_argument("--bb-target", default="kafka", help="broker target, e.g. kafka")
    group.add_argument("--bb-via-proxy", action="store_true", help="go through toxiproxy")
    group.add_argument("--bb-rate", type=float, default=100.0, help="entry events/s, all users")
    group.add_argument("--bb-duration", type=float, default=60.0, help="seconds of schedule")
    group.add_argument("--bb-params", default="{}", help="the flow's params as JSON")
    group.add_argument("--bb-run-dir", default="runs/locust", help="run folders go here")
    group.add_argument(
        "--bb-drain", type=float, default=60.0, help="at most this many seconds to catch up"
    )


class _LocustRun:
    """One Locust test as one run: its session (the flow's topics and services), the users'
    recorder and plan, from ``test_start`` until ``finish`` (``test_stop``) or ``abandon``."""

    def __init__(self, flow: type[Flow], options: Any, users: int) -> None:
        params = {"rate": options.bb_rate, "duration": options.bb_duration}
        params |= json.loads(options.bb_params)
        self.settings = load_settings()
        config = resolve_fan_out(
            flow.config_model.model_validate(params), flow, options.bb_target, self.settings
        )
        run_id = secrets.randbits(63)
        proxy: ProxyPath = "all" if options.bb_via_proxy else "none"
        self.request = RunRequest(
            suite=SUITE,
            workload=flow.kind,
            target=options.bb_target,
            repeat=0,
            config=config,
            settings=self.settings,
            proxy=proxy,
            run_dir=Path(options.bb_run_dir) / f"{flow.kind}-{run_id:016x}",
            flow=flow,
            sample_saturation=False,
        )
        self.started = time.monotonic()
        self.known = identity(
            SUITE, options.bb_target, target_driver(options.bb_target, self.settings), proxy,
            0, {"name": flow.kind, "kind": flow.kind, "params": config.model_dump(mode="json")},
            getattr(config, "semantics", "at-least-once"), config.ordered, "baseline", run_id,
        )  # fmt: skip
        mark_running(self.request.run_dir, self.known)  # its state from the first second
        try:
            self._start(flow, options, users, config, run_id)
        except Exception as exc:
            record_failure(self.request.run_dir, self.known, exc)
            raise

    def _start(self, flow: type[Flow], options: Any, users: int, config: Any, run_id: int) -> None:
        with ExitStack() as stack:  # on an error here, the session is released at once
            session = stack.enter_context(
                RunSession(
                    self.request, run_id=run_id, probe_call=gevent.get_hub().threadpool.apply
                )
            )
            session.load.start_consumers()
            self.recorder = session.enter(Recorder(session.run_dir, "locust"))
            self.start_ns = time.time_ns() + START_LEAD_NS
            self.warmup_end_ns = self.start_ns + round(config.warmup * NS_PER_S)
            self.plan = ProducerPlan(
                run=session.shared,
                process_index=0,
                first_producer=0,
                producers=users,
                total_producers=users,
                start_ns=self.start_ns,
                steps=[StepPlan(rate=options.bb_rate, seconds=options.bb_duration)],
                message_size=config.message_size,
                keys=config.keys,
                key_distribution=config.key_distribution,
                zipf_exponent=config.zipf_exponent,
                flow=flow.kind,
                flow_params=config.model_dump(mode="json"),
            )
            session.lag.start()
            session.events.event(EventKind.RUN_START, "schedule", time_ns=self.start_ns)
            session.events.event(EventKind.WARMUP_END, "warmup", time_ns=self.warmup_end_ns)
            self._held = stack.pop_all()
        self.session = session

    def finish(self, drain_seconds: float, sends: Sends) -> None:
        """Drain (at most ``drain_seconds``), release the session, check the history, write
        result.json and print the verdicts (or record the run as failed)."""
        try:
            self._finish(drain_seconds, sends)
        except Exception as exc:
            record_failure(self.request.run_dir, self.known, exc)
            raise
        mark_ended(self.request.run_dir, RunState.COMPLETE)

    def _finish(self, drain_seconds: float, sends: Sends) -> None:
        session, state = self.session, Progress()
        with self._held:  # releases the session on leaving, however it is left
            self.recorder.close()  # the users have stopped: their sends are all recorded
            monitor = session.monitor(state, lambda _: None, sends=lambda: sends)
            outcome = drain_and_stop(
                session,
                monitor,
                state,
                lambda _: None,
                start_ns=self.start_ns,
                warmup_end_ns=self.warmup_end_ns,
                drain_timeout=drain_seconds,
            )
        request = self.request
        suite = Suite(
            name=SUITE,
            brokers=[request.target],
            proxy=request.proxy,
            workloads=[WorkloadEntry(name=request.workload, kind=request.workload)],
        )
        planned = PlannedRun(
            request.target,
            request.workload,
            request.repeat,
            request.config,
            request.run_dir,
            kind=request.workload,
            scenario=session.scenario,
        )
        result = finish_run(suite, planned, outcome, time.monotonic() - self.started, self.settings)
        print(f"brokerbench: {request.workload} run {request.run_dir}")
        for check in result.checks:
            print(f"  {check.name:24} valid={check.valid} {json.dumps(check.counts)}")
        print(f"brokerbench: result {request.run_dir / 'result.json'}")

    def abandon(self) -> None:
        """Release the session without checking (Locust quits without stopping the test)."""
        self._held.close()
        record_interruption(self.request.run_dir)


def flow_producer(kind: str) -> type[locust_producer.OpenLoopProducer]:
    """The Locust user class of flow ``kind``, with the hooks that run its services."""
    flow = flow_class(kind)

    class FlowProducer(locust_producer.OpenLoopProducer):
        locust_run: ClassVar[_LocustRun | None] = None

    def test_start(environment: Environment, **_: Any) -> None:
        options = environment.parsed_options
        users = getattr(environment.runner, "target_user_count", None) or (
            options.num_users if options else None
        )
        run = _LocustRun(flow, options, users or 1)
        FlowProducer.locust_run = run
        FlowProducer.configure(run.plan, run.recorder)

    def test_stop(environment: Environment, **_: Any) -> None:
        run, FlowProducer.locust_run = FlowProducer.locust_run, None
        if run is not None:
            options = environment.parsed_options
            total = environment.stats.total
            run.finish(
                options.bb_drain if options else 60.0,
                Sends(total.num_requests, total.num_failures),
            )

    def quitting(**_: Any) -> None:
        run, FlowProducer.locust_run = FlowProducer.locust_run, None
        if run is not None:
            run.abandon()

    events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
    events.test_start.add_listener(test_start)  # type: ignore[no-untyped-call]
    events.test_stop.add_listener(test_stop)  # type: ignore[no-untyped-call]
    events.quit.add_listener(quitting)  # type: ignore[no-untyped-call]
    FlowProducer.__name__ = FlowProducer.__qualname__ = f"{kind.title()}Producer"
    return FlowProducer
