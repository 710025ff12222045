"""``brokerbench run`` across machines, on one machine: a master (``brokerbench run`` of a
suite with ``distribution:``) and two ``brokerbench worker`` processes on 127.0.0.1, against
the local Kafka. The workers' shards come back into the master's run folder, the checks are
valid, the counts are the schedule's, and result.json records both workers' clock offsets; a
worker killed mid-run fails the run with a reason naming it."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harness.history.store import load
from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

RATE, SECONDS = 200, 4
SOME_RUNS_FAILED = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_suite(path: Path, seconds: float, consumers: str) -> Path:
    suite = {
        "name": "spread",
        "brokers": ["kafka"],
        "broker_warmup": False,
        "distribution": {"workers": 2, "producers": "workers", "consumers": consumers},
        "workloads": [{"name": "w", "params": {
            "rate": RATE, "duration": seconds, "warmup": 1, "producers": 2, "processes": 2,
            "consumers": 2, "partitions": 4, "keys": 16}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def start_worker(port: int, name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "worker", "--master", f"127.0.0.1:{port}", "--name",
         name],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip


def run_master(suite: Path, output: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(suite), "-o", str(output),
         "--master-bind", f"127.0.0.1:{port}", "--metrics-port", "0", "--no-broker-warmup"],
        stdout=(output.parent / "master.out").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_dir(output: Path) -> Path:
    (root,) = [path for path in output.iterdir() if path.is_dir()]
    return root / "kafka" / "w" / "baseline" / "r0"


def result(output: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir(output) / "result.json").read_text())
    return loaded


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_two_workers_run_the_load_and_their_shards_come_back(stack: Stack, tmp_path: Path) -> None:
    port, output = free_port(), tmp_path / "runs"
    output.mkdir()
    workers = [start_worker(port, name, tmp_path / f"{name}.log") for name in ("w1", "w2")]
    master = run_master(write_suite(tmp_path / "s.yaml", SECONDS, "workers"), output, port)
    try:
        code = master.wait(timeout=240)
        for worker in workers:  # the master's end tells them to quit
            assert worker.wait(timeout=30) == 0
    finally:
        stop([master, *workers])
    assert code == 0, (tmp_path / "master.out").read_text()
    found = result(output)
    assert found["valid"] is True
    scheduled = RATE * SECONDS
    assert found["counts"]["sent"] == found["counts"]["ok"] == scheduled
    # at-least-once: a consumer group's rebalance may deliver some twice (valid says none lost)
    assert found["counts"]["received"] >= scheduled
    clocks = {worker["name"]: worker for worker in found["distribution"]["workers"]}
    assert set(clocks) == {"w1", "w2"}
    for clock in clocks.values():
        assert clock["samples"] >= 1
        assert isinstance(clock["offset_ns"], int)
        assert clock["uncertainty_ns"] >= 0
        assert len(clock["producers"]) == len(clock["consumers"]) == 1
    folder = run_dir(output)
    placed = {f"{name}.{label}.log" for name, clock in clocks.items()
              for label in clock["producers"] + clock["consumers"]}  # fmt: skip
    assert {path.name for path in (folder / "logs").iterdir()} == placed
    assert len(placed) == 4
    history = load(folder)  # every process's shards were compacted: the workers' too
    assert set(history.sends.column("producer_id").to_pylist()) == {0, 1}
    assert set(history.receives.column("consumer_id").to_pylist()) == {0, 1}


def test_a_worker_killed_mid_run_fails_the_run_naming_it(stack: Stack, tmp_path: Path) -> None:
    port, output = free_port(), tmp_path / "runs"
    output.mkdir()
    workers = [start_worker(port, name, tmp_path / f"{name}.log") for name in ("w1", "w2")]
    master = run_master(write_suite(tmp_path / "s.yaml", 60, "master"), output, port)
    try:
        doomed = psutil.Process(workers[0].pid)
        while not doomed.children():  # it started its load process: the run is under way
            assert master.poll() is None, (tmp_path / "master.out").read_text()
            time.sleep(0.2)
        orphans = doomed.children()
        workers[0].kill()
        code = master.wait(timeout=120)  # well before the 60 s schedule would end
        assert workers[1].wait(timeout=30) == 0
    finally:
        stop([master, *workers])
    assert code == SOME_RUNS_FAILED, (tmp_path / "master.out").read_text()
    found = result(output)
    assert found["valid"] is None
    assert "worker w1 (127.0.0.1) lost mid-run" in found["error"]
    assert found["distribution"]["lost"] == {"w1": "its heartbeats stopped"}
    _, alive = psutil.wait_procs(orphans, timeout=30)  # they die with their worker
    assert alive == []
