"""Runs for the report and gate tests, made once per session on the memory TEST DOUBLE (what
is tested is the reports and the gate, not a broker): a tiny suite run three times on target
``gated`` (baseline, identical re-run, and with every message held 100 ms: a planted latency
regression), plus one run on target ``other`` so the report has two brokers."""

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.drivers.memory.knobs import Knobs
from tests.memory_double import MemoryStack, targets_file
from tests.stack import cli

SUITE = Path(__file__).with_name("gate-suite.yaml")
PLANTED_DELAY = Knobs(delay=1.0, delay_ms=100)


@dataclass(frozen=True)
class Runs:
    baseline: Path
    same: Path
    slow: Path
    """Run with every message held 100 ms by the broker, between ``slow_ns``."""
    other: Path
    slow_ns: tuple[int, int]


def brokerbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``brokerbench`` on run folders (report, gate, analyze): no broker needed."""
    return cli.brokerbench(*args, env={**os.environ, "COLUMNS": "200"}, timeout=timeout)


def run_suite(double: MemoryStack, suite: Path, output: Path, config: Path) -> Path:
    completed = double.brokerbench(
        "run", str(suite), "-o", str(output), "--metrics-port", "0", config=config
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return output


@pytest.fixture(scope="session")
def runs(memory_stack: MemoryStack, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two suites at a time (a run on the double takes about a quarter of this 2-core machine:
    two stay far from the harness-bound threshold): the baseline beside its identical re-run,
    then the slowed runs beside the other target's."""
    root = tmp_path_factory.mktemp("runs")
    healthy = targets_file(root / "healthy.yaml", {"gated": Knobs(), "other": Knobs()})
    slowed = targets_file(root / "slowed.yaml", {"gated": PLANTED_DELAY})
    other = root / "other-suite.yaml"
    text = SUITE.read_text().replace("brokers: [gated]", "brokers: [other]")
    other.write_text(text.replace("repeats: 3", "repeats: 1"))
    with ThreadPoolExecutor(2) as pool:
        baseline = pool.submit(run_suite, memory_stack, SUITE, root / "baseline", healthy)
        same = pool.submit(run_suite, memory_stack, SUITE, root / "same", healthy)
        baseline.result(), same.result()
        started = time.time_ns()
        slow = pool.submit(run_suite, memory_stack, SUITE, root / "slow", slowed)
        second = pool.submit(run_suite, memory_stack, other, root / "other", healthy)
        slow.result()
        ended = time.time_ns()
        return Runs(baseline.result(), same.result(), slow.result(), second.result(),
                    (started, ended))  # fmt: skip


def result_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("result.json"))


def edit_result(result_file: Path, change: Any) -> None:
    document = json.loads(result_file.read_text())
    change(document)
    result_file.write_text(json.dumps(document))


def copy_runs(source: Path, target: Path, repeats: int | None = None) -> Path:
    """Copy a suite output folder, keeping only the first ``repeats`` repeats."""
    shutil.copytree(source, target)
    if repeats is not None:
        for result_file in result_files(target):
            if int(result_file.parent.name.removeprefix("r")) >= repeats:
                shutil.rmtree(result_file.parent)
    return target
