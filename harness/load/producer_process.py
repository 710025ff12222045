"""A producer process: ``python -m harness.load.producer_process PLAN.json``.

Runs the plan's producers as Locust users in this process (headless local runner), writes the
sends to its own history shard and prints one JSON progress line per second on stdout for the
orchestrator. Exits when every user has finished its share of the schedule.
"""

import json
import sys
from pathlib import Path

import gevent
import locust  # noqa: F401 - must come first: it patches the standard library for gevent
from grpc.experimental import gevent as grpc_gevent
from locust.env import Environment

from harness.history.recorder import Recorder
from harness.load.gc_tuning import tune_for_load
from harness.load.locust_producer import OpenLoopProducer
from harness.load.plan import ProducerPlan


def _report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(plan_path: str) -> None:
    grpc_gevent.init_gevent()
    tune_for_load()
    plan = ProducerPlan.model_validate_json(Path(plan_path).read_text(encoding="utf-8"))
    recorder = Recorder(Path(plan.run.run_dir), f"producer-{plan.process_index}")
    OpenLoopProducer.configure(plan, recorder)
    environment = Environment(user_classes=[OpenLoopProducer], catch_exceptions=False)
    runner = environment.create_local_runner()
    runner.start(plan.producers, spawn_rate=min(100, plan.producers * 10))
    while not OpenLoopProducer.finished.wait(timeout=1.0):
        total = environment.stats.total  # replaced when the runner resets its stats
        _report(kind="progress", sent=total.num_requests, failed=total.num_failures)
        if runner.exceptions:  # a user raised; failed sends (runner.errors) are history
            break
    runner.quit()
    recorder.close()
    total = environment.stats.total
    errors = [str(exception["msg"]) for exception in runner.exceptions.values()]
    _report(kind="done", sent=total.num_requests, failed=total.num_failures, errors=errors[:5])
    gevent.sleep(0)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main(sys.argv[1])
