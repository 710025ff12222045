"""Locust's master/worker mode: a master and two workers as separate processes on loopback
drive one open-loop schedule into Kafka; the recorded history is complete and valid."""

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.checkers import HistoryIndex, all_valid, check_all, derive_backlog
from harness.drivers.base import OrderingScope
from harness.history.store import compact, load
from harness.load.plan import ConsumerPlan, DestinationPlan, RunShared
from harness.run.children import Children, Role
from harness.settings import Settings
from harness.stack.manager import Stack

# alone: every scheduled message must be sent; beside four busy workers a late Locust worker
# sent 499 of 800 before the schedule's end
pytestmark = [pytest.mark.broker, pytest.mark.alone]

LOCUSTFILE = Path(__file__).parents[2] / "workloads" / "locust" / "throughput.py"
RATE, SECONDS, USERS, WORKERS = 200, 4, 4, 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_master_and_two_workers_share_one_schedule(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    run_id = secrets.randbits(62)
    destination = f"bb-locust-{run_id:x}"
    shared = RunShared(
        run_dir=str(tmp_path),
        run_id=run_id,
        target="kafka",
        settings=settings,
        destination=DestinationPlan(name=destination, partitions=4),
    )
    children = Children(tmp_path)
    consumer = children.start(
        "consumer-0",
        Role.CONSUMER,
        "harness.load.consumer_process",
        ConsumerPlan(run=shared, consumer_id=0),
    )
    port = free_port()
    common = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(USERS), "--spawn-rate", str(USERS),
        "--bb-target", "kafka", "--bb-rate", str(RATE), "--bb-duration", str(SECONDS),
        "--bb-run-dir", str(tmp_path), "--bb-run-id", str(run_id),
        "--bb-destination", destination, "--bb-partitions", "4", "--bb-workers", str(WORKERS),
    ]  # fmt: skip
    master = subprocess.Popen(
        [*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
         str(port), "--expect-workers", str(WORKERS), "--run-time", f"{SECONDS + 20}s"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "master.log").open("w"),
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"worker-{index}.log").open("w"),
        )
        for index in range(WORKERS)
    ]
    try:
        master.wait(timeout=90)
        for worker in workers:
            worker.wait(timeout=30)
        deadline = time.monotonic() + 30
        while consumer.last.received < RATE * SECONDS and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
        children.stop_all()
    compact(tmp_path)
    history = load(tmp_path)
    assert history.sends.num_rows == RATE * SECONDS
    assert sorted(set(history.sends["producer_id"].to_pylist())) == list(range(USERS))
    shards = {path.name for path in (tmp_path / "history").glob("*.parquet")}
    assert shards == {"sends.parquet", "receives.parquet", "events.parquet"}
    lag = derive_backlog(HistoryIndex(history.sends, history.receives))
    verdicts = check_all(
        history.sends, history.receives, history.events, OrderingScope.PARTITION, lag=lag
    )
    assert all_valid(verdicts) is True, [v for v in verdicts if v.valid is not True]
    assert history.receives.num_rows == RATE * SECONDS
