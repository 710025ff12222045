"""A business flow as a plain locustfile, for Locust's web UI (see ``workloads/locust/tracker.py``).

    locust -f workloads/locust/tracker.py --bb-target kafka --bb-rate 200 --bb-duration 60

Start users in the web UI (http://127.0.0.1:8089): the flow's topics are created and its
services start as child processes (as ``brokerbench run`` starts them), the users publish the
entry events on an open-loop schedule of ``--bb-rate`` events/s shared among them, and Locust's
charts show every send. When the test stops, the services get up to ``--bb-drain`` seconds to
catch up, stop, and the flow's checks (log-level and invariants) run on the recorded history; the
verdicts are printed and the run folder (``--bb-run-dir``/<run id>) keeps the history and the
services' databases. One process only (no master/worker: use ``brokerbench run`` for that).
"""

import json
import secrets
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any, ClassVar

import gevent
import locust  # noqa: F401 - first, for gevent
from grpc.experimental import gevent as grpc_gevent
from locust import events
from locust.env import Environment

from harness.checkers import check_all, derive_backlog
from harness.checkers.index import HistoryIndex
from harness.drivers.targets import open_driver
from harness.flows.api import Flow
from harness.flows.evaluate import flow_verdicts
from harness.flows.registry import flow_class
from harness.history.recorder import Recorder
from harness.history.store import compact, load
from harness.load import locust_producer
from harness.load.plan import ProducerPlan, RunShared, StepPlan
from harness.run.children import Children
from harness.run.quiescence import ServiceTotals
from harness.run.topology import consumer_plans_of, topic_plans
from harness.settings import load_settings

grpc_gevent.init_gevent()
START_LEAD_NS = 2_000_000_000


def _options(parser: ArgumentParser) -> None:
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


class _Session:
    """The flow's services and recorder for one Locust test."""

    def __init__(self, flow: type[Flow], options: Any, users: int) -> None:
        self.flow = flow
        params = {"rate": options.bb_rate, "duration": options.bb_duration}
        params |= json.loads(options.bb_params)
        self.config = flow.config_model.model_validate(params)
        self.run_id = secrets.randbits(63)
        self.run_dir = Path(options.bb_run_dir) / f"{flow.kind}-{self.run_id:016x}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = load_settings()
        topics = topic_plans(flow.kind, self.config, flow, self.run_id)
        self.driver = open_driver(options.bb_target, settings)
        self.created = [self.driver.create_destination(t.spec()) for t in topics.values()]
        shared = RunShared(
            run_dir=str(self.run_dir),
            run_id=self.run_id,
            target=options.bb_target,
            producers_via_proxy=options.bb_via_proxy,
            consumers_via_proxy=options.bb_via_proxy,
            settings=settings,
            destination=next(iter(topics.values())),
        )
        self.children = Children(self.run_dir)
        for label, (module, plan) in consumer_plans_of(self.config, flow, shared, topics).items():
            self.children.start(label, module, plan)
        self.recorder = Recorder(self.run_dir, "locust")
        self.plan = ProducerPlan(
            run=shared,
            process_index=0,
            first_producer=0,
            producers=users,
            total_producers=users,
            start_ns=time.time_ns() + START_LEAD_NS,
            steps=[StepPlan(rate=options.bb_rate, seconds=options.bb_duration)],
            message_size=self.config.message_size,
            keys=self.config.keys,
            key_distribution=self.config.key_distribution,
            zipf_exponent=self.config.zipf_exponent,
            flow=flow.kind,
            flow_params=self.config.model_dump(mode="json"),
        )

    def finish(self, drain_seconds: float, sent_ok: int) -> None:
        """Let the services catch up (at most ``drain_seconds``), stop them, check and print
        the verdicts."""
        self.recorder.close()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            lines = [child.last for child in self.children.children.values()]
            if ServiceTotals.of(lines, lines).quiescent(self.flow.entry_topic, sent_ok):
                break
            gevent.sleep(0.2)
        self.children.stop_all()
        for destination in self.created:
            self.driver.delete_destination(destination)
        self.driver.close()
        compact(self.run_dir)
        history = load(self.run_dir)
        ordering = self.driver.capabilities.ordering(self.config.ordered)
        lag = derive_backlog(HistoryIndex(history.sends, history.receives))
        verdicts = check_all(history.sends, history.receives, history.events, ordering, lag=lag)
        verdicts += flow_verdicts(
            self.flow.kind, self.config.model_dump(mode="json"), self.run_dir, self.run_id, history
        )
        print(f"brokerbench: {self.flow.kind} run {self.run_dir}")
        for verdict in verdicts:
            print(f"  {verdict.name:24} valid={verdict.valid} {json.dumps(verdict.counts)}")


def flow_producer(kind: str) -> type[locust_producer.OpenLoopProducer]:
    """The Locust user class of flow ``kind``, with the hooks that run its services."""
    flow = flow_class(kind)

    class FlowProducer(locust_producer.OpenLoopProducer):
        session: ClassVar[_Session | None] = None

    def test_start(environment: Environment, **_: Any) -> None:
        options = environment.parsed_options
        users = getattr(environment.runner, "target_user_count", None) or (
            options.num_users if options else None
        )
        session = _Session(flow, options, users or 1)
        FlowProducer.session = session
        FlowProducer.configure(session.plan, session.recorder)

    def test_stop(environment: Environment, **_: Any) -> None:
        if FlowProducer.session is not None:
            options = environment.parsed_options
            total = environment.stats.total
            FlowProducer.session.finish(
                options.bb_drain if options else 60.0, total.num_requests - total.num_failures
            )
            FlowProducer.session = None

    events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
    events.test_start.add_listener(test_start)  # type: ignore[no-untyped-call]
    events.test_stop.add_listener(test_stop)  # type: ignore[no-untyped-call]
    FlowProducer.__name__ = FlowProducer.__qualname__ = f"{kind.title()}Producer"
    return FlowProducer
