"""A producer process: ``python -m harness.load.producer_process PLAN.json``.

Runs the plan's producers as Locust users in this process (headless local runner), writes the
sends to its own history shard and prints one JSON progress line per second on stdout for the
orchestrator: sends completed (``sent``, ``failed``), how late the sends of the last second were
(``late_ms_p99``, ``late_ms_max``) and messages left unsent at the run's bound (``not_sent``).
Exits when every user has finished its share of the schedule, or on SIGTERM (having written
the sends recorded so far).
"""

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import gevent
import locust  # noqa: F401 - must come first: it patches the standard library for gevent
from grpc.experimental import gevent as grpc_gevent
from locust.env import Environment
from locust.runners import LocalRunner

from harness.history.recorder import Recorder
from harness.load.gc_tuning import tune_for_load
from harness.load.locust_producer import OpenLoopProducer
from harness.load.plan import ProducerPlan
from harness.load.plan_file import read_plan
from harness.load.progress_line import LineKind, ProgressLine, emit


def _line(kind: LineKind, environment: Environment, errors: Sequence[str] = ()) -> ProgressLine:
    total = environment.stats.total  # replaced when the runner resets its stats
    late_p99, late_max = OpenLoopProducer.lateness.take()
    return ProgressLine(
        kind=kind,
        sent=total.num_requests,
        failed=total.num_failures,
        late_ms_p99=round(late_p99, 3),
        late_ms_max=round(late_max, 3),
        not_sent=OpenLoopProducer.not_sent,
        errors=list(errors),
    )


def _await_start(plan: ProducerPlan, runner: LocalRunner) -> None:
    """Once every user is connected, say ``ready`` and wait for ``start <ns>`` on stdin."""
    while OpenLoopProducer.connected < plan.producers and not runner.exceptions:
        gevent.sleep(0.02)
    emit(ProgressLine(kind="ready"))
    line = gevent.get_hub().threadpool.apply(sys.stdin.readline)
    if not line.startswith("start "):  # the orchestrator went away
        sys.exit(1)
    OpenLoopProducer.begin(int(line.split()[1]))


def _stop() -> None:
    """SIGTERM (the run was interrupted): write the sends recorded so far (those in flight as
    unknown) and exit, so an interrupted run's history can still be checked (``brokerbench
    analyze``). Not through the users' own stop: that waits for the sends in flight, which a
    user killed mid-send never completes. On a greenlet of its own (the handler runs on the
    hub, which must not wait for the recorder's lock)."""

    def close_and_exit() -> None:
        if OpenLoopProducer.started():
            OpenLoopProducer.recorder.close()
        os._exit(128 + signal.SIGTERM)

    gevent.spawn(close_and_exit)


def main(plan_path: str) -> None:
    grpc_gevent.init_gevent()
    tune_for_load()
    plan = read_plan(plan_path, ProducerPlan)
    recorder = Recorder(Path(plan.run.run_dir), f"producer-{plan.process_index}")
    OpenLoopProducer.configure(plan, recorder)
    gevent.signal_handler(signal.SIGTERM, _stop)
    environment = Environment(user_classes=[OpenLoopProducer], catch_exceptions=False)
    runner = environment.create_local_runner()
    runner.start(plan.producers, spawn_rate=min(100, plan.producers * 10))
    if plan.start_ns is None:
        _await_start(plan, runner)
    while not OpenLoopProducer.finished.wait(timeout=1.0):
        emit(_line("progress", environment))
        if runner.exceptions:  # a user raised; failed sends (runner.errors) are history
            break
    runner.quit()
    recorder.close()
    errors = [str(exception["msg"]) for exception in runner.exceptions.values()]
    emit(_line("done", environment, errors[:5]))
    gevent.sleep(0)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main(sys.argv[1])
