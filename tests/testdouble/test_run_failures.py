"""Failures mid-suite, through the real ``brokerbench run`` against the memory TEST DOUBLE
broker (what is tested is the harness's handling of a run that fails or is killed, never a
broker): a run whose consumers die is recorded as failed and the suite goes on (exit 3), or
stops with ``--fail-fast``; a harness killed mid-run leaves an interrupted run that ``report``
flags and ``analyze`` re-checks as far as it goes."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harness.drivers.memory.knobs import Knobs
from tests.memory_double import MemoryStack, free_port, targets_file

pytestmark = pytest.mark.test_double

LOAD = {"rate": 100, "duration": 1.5, "warmup": 0.5, "producers": 1, "consumers": 1,
        "partitions": 1, "keys": 4, "drain_timeout": 3}  # fmt: skip
SOME_RUNS_FAILED = 3


def write_suite(path: Path, brokers: list[str], repeats: int = 1, **load: Any) -> Path:
    suite = {
        "name": "failures",
        "brokers": brokers,
        "proxy": "none",
        "repeats": repeats,
        "workloads": [{"name": "w", "kind": "throughput", "params": LOAD | load}],
    }
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def run_dirs(output: Path) -> dict[str, Path]:
    """Broker -> its r0 folder, for the one suite folder under ``output``."""
    (root,) = output.iterdir()
    return {broker.name: broker / "w" / "baseline" / "r0" for broker in root.iterdir()
            if broker.is_dir()}  # fmt: skip


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("failures")
    return targets_file(root / "brokerbench.yaml", {"broken": Knobs(refuse_consumers=True)})


def test_a_failed_run_is_recorded_and_the_suite_goes_on(
    memory_stack: MemoryStack, config: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path / "suite.yaml", ["broken", "memory"])
    completed = memory_stack.brokerbench(
        "run", str(suite), "-o", str(tmp_path / "runs"), "--metrics-port", "0", config=config
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == SOME_RUNS_FAILED, output[-3000:]
    folders = run_dirs(tmp_path / "runs")
    broken = read(folders["broken"] / "result.json")
    healthy = read(folders["memory"] / "result.json")
    assert broken["valid"] is None and broken["checks"] == []
    assert "consumer-0 exited with code 1" in broken["error"], broken["error"]
    assert "refuses consumers" in broken["error"]
    assert read(folders["broken"] / "run-state.json")["state"] == "failed"
    assert healthy["valid"] is True, "the run after the failed one ran, and ran well"
    assert read(folders["memory"] / "run-state.json")["state"] == "complete"
    assert f"failed: {folders['broken']}" in " ".join(completed.stderr.split())

    report = memory_stack.brokerbench(
        "report", str(tmp_path / "runs"), "--md", str(tmp_path / "report.md"), config=config
    )
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "report.md").read_text()
    assert "**failed** broken / w / baseline r0: consumer-0 exited" in markdown
    assert "overall: **⚠️ unknown**" in markdown

    # It failed before the schedule started: nothing to re-check, said in one line.
    analyzed = memory_stack.brokerbench("analyze", str(folders["broken"]), config=config)
    errors = [line for line in analyzed.stderr.splitlines() if "truncated shard" not in line]
    assert analyzed.returncode == 2 and len(errors) == 1, analyzed.stderr
    assert "the run is failed and its history holds no send to check" in errors[0]
    assert read(folders["broken"] / "result.json")["error"] == broken["error"], "kept"


def test_fail_fast_stops_at_the_first_failed_run(
    memory_stack: MemoryStack, config: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path / "suite.yaml", ["broken", "memory"])
    completed = memory_stack.brokerbench(
        "run", str(suite), "-o", str(tmp_path / "runs"), "--metrics-port", "0", "--fail-fast",
        config=config,
    )  # fmt: skip
    assert completed.returncode == SOME_RUNS_FAILED, completed.stderr[-3000:]
    folders = run_dirs(tmp_path / "runs")
    assert read(folders["broken"] / "run-state.json")["state"] == "failed"
    assert "memory" not in folders, "the run after the failed one never started"
    report = memory_stack.brokerbench(
        "report", str(tmp_path / "runs"), "--md", str(tmp_path / "report.md"), config=config
    )
    assert "missing: memory / w / baseline r0: never started" in report.stdout


def received_so_far(port: int) -> float:
    """``brokerbench_messages_received_total`` on the live metrics endpoint (0 before)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
            text = page.read().decode()
    except OSError:
        return 0.0
    lines = [line for line in text.splitlines() if line.startswith("brokerbench_messages_received")]
    return sum(float(line.split()[-1]) for line in lines if "_total" in line)


def start_suite(
    memory_stack: MemoryStack, config: Path, tmp_path: Path, **load: Any
) -> tuple[subprocess.Popen[bytes], Path]:
    """``brokerbench run`` of two repeats in the background, once its first run received
    something (read on the live metrics endpoint)."""
    suite = write_suite(tmp_path / "suite.yaml", ["memory"], repeats=2, **load)
    port = free_port()
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(suite), "-o", str(tmp_path / "runs"),
         "--metrics-port", str(port)],
        env=memory_stack.environment(config), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120  # a bound for a stuck start, not a measurement
    while received_so_far(port) == 0:
        if harness.poll() is not None or time.monotonic() > deadline:
            harness.kill()
            pytest.fail(f"the run never received anything (exit {harness.poll()})")
        time.sleep(0.2)
    (root,) = (tmp_path / "runs").iterdir()
    return harness, root / "memory" / "w" / "baseline"


def test_a_killed_harness_leaves_an_interrupted_run(
    memory_stack: MemoryStack, config: Path, tmp_path: Path
) -> None:
    harness, runs = start_suite(memory_stack, config, tmp_path, duration=30)
    children = psutil.Process(harness.pid).children(recursive=True)
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    # Its load processes outlive it (sessions of their own): stop them as an operator would.
    for child in children:
        child.terminate()
    psutil.wait_procs(children, timeout=30)

    r0 = runs / "r0"
    assert read(r0 / "run-state.json")["state"] == "running", "as the killed harness left it"
    assert not (r0 / "result.json").exists()
    report = memory_stack.brokerbench(
        "report", str(tmp_path / "runs"), "--md", str(tmp_path / "report.md"), config=config
    )
    assert report.returncode == 0, report.stderr
    assert "interrupted: memory / w / baseline r0: the harness (pid" in report.stdout
    assert "missing: memory / w / baseline r1: never started" in report.stdout
    markdown = (tmp_path / "report.md").read_text()
    assert "overall: **✅ pass**" not in markdown and "overall: **⚠️ unknown**" in markdown

    # The history holds what its writers flushed before they died (maybe no send at all):
    # analyze checks that, or says in one line that there is nothing to check.
    analyzed = memory_stack.brokerbench("analyze", str(r0), config=config)
    errors = [line for line in analyzed.stderr.splitlines() if "truncated shard" not in line]
    if analyzed.returncode == 0:
        assert "the run is interrupted" in analyzed.stderr
        assert read(r0 / "analysis.json")["valid"] is not True
    else:
        assert analyzed.returncode == 2 and len(errors) == 1, analyzed.stderr
        assert "the run is interrupted and its history holds no send" in errors[0]


def test_an_interrupted_run_is_checked_as_far_as_it_went(
    memory_stack: MemoryStack, config: Path, tmp_path: Path
) -> None:
    harness, runs = start_suite(memory_stack, config, tmp_path, duration=8)
    harness.send_signal(signal.SIGTERM)  # the CLI's clean-up runs, as for Ctrl-C
    assert harness.wait(timeout=120) == 130
    r0 = runs / "r0"
    state = read(r0 / "run-state.json")
    assert state["state"] == "interrupted" and "SIGTERM" in state["error"]
    assert not (runs / "r1").exists()

    analyzed = memory_stack.brokerbench("analyze", str(r0), config=config)
    assert analyzed.returncode == 0, analyzed.stderr
    assert "the run is interrupted: interrupted by Ctrl-C or SIGTERM" in analyzed.stderr
    assert "valid at most unknown" in analyzed.stderr
    assert not (r0 / "result.json").exists(), "analyze writes analysis.json unless --write"
    result = read(r0 / "analysis.json")
    assert result["counts"]["received"] > 0, "what was there was checked"
    assert result["valid"] is None, [c for c in result["checks"] if c["valid"] is not None]
    assert all(check["valid"] is None for check in result["checks"])
    assert any("interrupted" in check["notes"] for check in result["checks"])
