"""A run across two machines, simulated on one (tests/netns_hosts.py, docs/test-hosts.md):
the master (`brokerbench run --master-bind`) in the root namespace on the bridge's address,
one `brokerbench worker` in each of two network namespaces with its own address and home,
against the shared stack's real Kafka. The run folder is a normal one: its history complete,
its checks valid, both workers' shards and clock offsets in it; the same suite run from one
machine gives the same counts and verdicts. The namespaces are removed on every way out.

The suite (distributed-suite.yaml) places both producers and both consumers on the workers,
so every send and every receive is recorded on a worker and comes back to the master.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.history.store import load
from harness.settings import Settings
from harness.stack.manager import Stack
from tests import netns_hosts
from tests.netns_hosts import Hosts, objects_of, simulated_hosts

pytestmark = pytest.mark.broker

REPO = Path(__file__).parents[2]
SUITE = Path(__file__).with_name("distributed-suite.yaml")
SCHEDULED = 300 * 5  # the suite's rate x duration
RUN_BOUND_SECONDS = 240


def brokerbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def run_suite(suite: Path, output: Path, *extra: str) -> list[str]:
    return brokerbench(
        "run", str(suite), "-o", str(output), "--metrics-port", "0", "--no-broker-warmup", *extra
    )


def one_machine_suite(folder: Path) -> Path:
    """The same suite without its ``distribution``: every load process on this machine."""
    document = yaml.safe_load(SUITE.read_text())
    del document["distribution"]
    suite = folder / "one-machine-suite.yaml"
    suite.write_text(yaml.safe_dump(document))
    return suite


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(address: str, port: int, master: "subprocess.Popen[Any]") -> None:
    """Until the master accepts connections (its workers then find it at once)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and master.poll() is None:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the master never listened on {address}:{port}")


def result_in(output: Path) -> tuple[Path, dict[str, Any]]:
    found = list(output.glob("dist-*/*/*/*/r0/result.json"))
    assert len(found) == 1, found
    loaded: dict[str, Any] = json.loads(found[0].read_text())
    return found[0].parent, loaded


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    return {check["name"]: check["valid"] for check in result["checks"]}


def workers_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """result.json's record of the run's workers, by name."""
    return {worker["name"]: worker for worker in result["distribution"]["workers"]}


def assert_complete_and_valid(result: dict[str, Any]) -> None:
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    counts = result["counts"]
    assert counts["sent"] == counts["ok"] == SCHEDULED
    assert counts["not_sent"] == 0
    assert counts["received"] >= counts["ok"]
    lost = next(check for check in result["checks"] if check["name"] == "lost")
    assert lost["valid"] is True
    assert lost["counts"]["acked"] == SCHEDULED
    assert lost["counts"]["lost"] == 0


def run_distributed(hosts: Hosts, output: Path, homes: Path) -> tuple[Path, dict[str, Any]]:
    port = free_port(hosts.bridge_address)
    master_at = f"{hosts.bridge_address}:{port}"
    master_log = homes / "master.log"
    with master_log.open("w") as log:
        argv = run_suite(SUITE, output, "--master-bind", master_at)
        master = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log)
    try:
        wait_listening(hosts.bridge_address, port, master)
        workers = []
        for host in hosts.hosts:
            # A machine of its own: its own home and temporary folder, the default settings.
            home = homes / host.name
            (home / "tmp").mkdir(parents=True)
            env = {**os.environ, "BROKERBENCH_HOME": str(home), "TMPDIR": str(home / "tmp")}
            env.pop("BROKERBENCH_CONFIG", None)
            log = (homes / f"{host.name}.log").open("w")
            argv = brokerbench("worker", "--master", master_at, "--name", host.name)
            workers.append(host.run(argv, cwd=REPO, env=env, stdout=log, stderr=log))
        master.wait(timeout=RUN_BOUND_SECONDS)
        assert master.returncode == 0, master_log.read_text()[-3000:]
        for worker in workers:  # a worker ends, cleanly, when its master does
            assert worker.wait(timeout=60) == 0
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    return result_in(output)


def test_two_workers_in_namespaces_match_one_machine(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    reason = netns_hosts.unable_reason()
    if reason is not None:
        pytest.skip(reason)  # a broker test: CI fails on this skip (tests/conftest.py)
    homes = tmp_path / "homes"
    homes.mkdir()
    with simulated_hosts(count=2, forward_ports=[settings.ports.kafka]) as hosts:
        tag = hosts.tag
        folder, distributed = run_distributed(hosts, tmp_path / "distributed", homes)
    assert objects_of(tag) == []

    assert_complete_and_valid(distributed)
    workers = workers_of(distributed)
    assert sorted(workers) == ["h1", "h2"]
    for name, worker in workers.items():
        # One producer and one consumer each (round-robin): their shards came back, or the
        # counts above would be short.
        assert len(worker["producers"]) == len(worker["consumers"]) == 1, name
        assert worker["offset_ns"] is not None, name
        assert worker["uncertainty_ns"] >= 0, name
        assert worker["samples"] >= 1, name
    assert distributed["distribution"]["lost"] == {}
    history = load(folder)  # the workers' shards, back and compacted with the rest
    assert set(history.sends.column("producer_id").to_pylist()) == {0, 1}
    assert set(history.receives.column("consumer_id").to_pylist()) == {0, 1}

    completed = subprocess.run(
        run_suite(one_machine_suite(tmp_path), tmp_path / "one-machine"),
        cwd=REPO, capture_output=True, text=True, timeout=RUN_BOUND_SECONDS, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    _, one_machine = result_in(tmp_path / "one-machine")
    assert_complete_and_valid(one_machine)
    # Not `received`: it counts redeliveries, which a consumer group's rebalance may add.
    for key in ("sent", "ok", "failed", "unknown", "not_sent"):
        assert distributed["counts"][key] == one_machine["counts"][key], key
    assert verdicts(distributed) == verdicts(one_machine)
