"""The throughput workload as a plain locustfile, for Locust's own command line: its web UI,
or its master/worker mode across processes and machines.

    locust -f workloads/locust/throughput.py --bb-target kafka --bb-rate 1000 --bb-duration 30
    locust -f workloads/locust/throughput.py --master --headless --users 4 --spawn-rate 4 \\
        --expect-workers 2 --bb-workers 2 --bb-run-dir runs/manual --bb-target kafka ...
    locust -f workloads/locust/throughput.py --worker --bb-workers 2 --bb-run-dir runs/manual ...

Every process must get the same ``--bb-*`` options and ``--users`` must be a multiple of
``--bb-workers`` (Locust spreads users evenly, and producer ``i`` of worker ``w`` takes share
``i * workers + w`` of the schedule). The master picks the schedule's start time and sends it to
the workers. Each worker records its sends in ``<run dir>/history/shards``; run consumers with
``python -m harness.load.consumer_process`` and check the result with ``brokerbench analyze``
-style tools (see tests/e2e/test_locust_distributed.py).

To spread a whole ``brokerbench run`` over machines (consumers too, shards returned to one run
folder, clock offsets measured and taken out), use a suite's ``distribution:`` block with
``brokerbench run SUITE --master-bind HOST:PORT`` and ``brokerbench worker --master HOST:PORT``
on each load machine instead (docs/distributed.md).
"""

import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any, ClassVar

import gevent
import locust  # noqa: F401 - first, for gevent
from grpc.experimental import gevent as grpc_gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.history.recorder import Recorder
from harness.load import locust_producer
from harness.load.plan import DestinationPlan, ProducerPlan, RunShared, StepPlan
from harness.settings import load_settings
from workloads.locust.binding import listen_on_loopback_by_default

grpc_gevent.init_gevent()
START_MESSAGE = "brokerbench-start"
START_LEAD_NS = 3_000_000_000


def _options(parser: ArgumentParser) -> None:
    listen_on_loopback_by_default(parser)
    group = parser.add_argument_group("brokerbench")
    group.add_argument("--bb-target", default="kafka", help="broker target, e.g. kafka")
    group.add_argument("--bb-via-proxy", action="store_true", help="go through toxiproxy")
    group.add_argument("--bb-rate", type=float, default=100.0, help="messages/s, all users")
    group.add_argument("--bb-duration", type=float, default=30.0, help="seconds of schedule")
    group.add_argument("--bb-message-size", type=int, default=200)
    group.add_argument("--bb-keys", type=int, default=100)
    group.add_argument("--bb-partitions", type=int, default=6)
    group.add_argument("--bb-destination", default="bb-locust", help="topic/queue name")
    group.add_argument("--bb-run-dir", default="runs/locust", help="where history shards go")
    group.add_argument("--bb-run-id", type=int, default=1, help="the same on every process")
    group.add_argument("--bb-workers", type=int, default=1, help="= --expect-workers")


# Imported as a module so that Locust finds only ThroughputProducer as this file's user class.
class ThroughputProducer(locust_producer.OpenLoopProducer):
    """``OpenLoopProducer`` whose share and start time come from Locust's distribution."""

    start_ns: ClassVar[int | None] = None
    workers: ClassVar[int] = 1

    def global_index(self, local_index: int) -> int:
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        return local_index * self.workers + max(worker, 0)

    def schedule_start_ns(self) -> int:
        while ThroughputProducer.start_ns is None:
            gevent.sleep(0.05)
        return ThroughputProducer.start_ns


def _plan(options: Any, users: int) -> ProducerPlan:
    run = RunShared(
        run_dir=options.bb_run_dir,
        run_id=options.bb_run_id,
        target=options.bb_target,
        producers_via_proxy=options.bb_via_proxy,
        settings=load_settings(),
        destination=DestinationPlan(name=options.bb_destination, partitions=options.bb_partitions),
    )
    return ProducerPlan(
        run=run,
        process_index=0,
        first_producer=0,
        producers=users,
        total_producers=users,
        start_ns=0,
        steps=[StepPlan(rate=options.bb_rate, seconds=options.bb_duration)],
        message_size=options.bb_message_size,
        keys=options.bb_keys,
    )


def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner):
        return
    users = options.num_users or 1
    label = f"locust-{time.time_ns()}"
    recorder = Recorder(Path(options.bb_run_dir), label)
    ThroughputProducer.configure(_plan(options, users), recorder)
    ThroughputProducer.workers = options.bb_workers
    events.quitting.add_listener(lambda **_: recorder.close())  # type: ignore[no-untyped-call]
    if isinstance(environment.runner, WorkerRunner):

        def started(environment: Environment, msg: Any, **_: Any) -> None:
            ThroughputProducer.start_ns = int(msg.data["start_ns"])

        environment.runner.register_message(START_MESSAGE, started)


def _start(environment: Environment, **_: Any) -> None:
    start_ns = time.time_ns() + START_LEAD_NS
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(START_MESSAGE, {"start_ns": start_ns})
    elif not isinstance(environment.runner, WorkerRunner):
        ThroughputProducer.start_ns = start_ns


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_init)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_start)  # type: ignore[no-untyped-call]
