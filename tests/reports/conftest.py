"""Real runs for the report and gate tests, made once per session: a tiny kafka suite run
three times (baseline, identical re-run, and with a 100 ms latency toxic on the kafka proxy
that the producers go through) plus one elasticmq run, so the report has two brokers."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.settings import Settings
from harness.stack.manager import Stack
from harness.stack.toxiproxy import Client, Toxic

SUITE = Path(__file__).parents[1] / "e2e" / "gate-suite.yaml"
TOXIC = Toxic("latency", "planted-latency", stream="upstream", attributes={"latency": 100})


@dataclass(frozen=True)
class Runs:
    baseline: Path
    same: Path
    slow: Path
    """Run with the latency toxic between ``toxic_ns``."""
    elasticmq: Path
    toxic_ns: tuple[int, int]


def brokerbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def run_suite(suite: Path, output: Path) -> Path:
    completed = brokerbench("run", str(suite), "-o", str(output), "--metrics-port", "0")
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return output


@pytest.fixture(scope="session")
def runs(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("runs")
    baseline = run_suite(SUITE, root / "baseline")
    same = run_suite(SUITE, root / "same")
    toxiproxy = Client(port=settings.ports.toxiproxy)
    toxiproxy.add_toxic("kafka", TOXIC)
    started = time.time_ns()
    try:
        slow = run_suite(SUITE, root / "slow")
    finally:
        toxiproxy.remove_toxic("kafka", TOXIC.name)
        ended = time.time_ns()
    other = root / "elasticmq-suite.yaml"
    text = SUITE.read_text().replace("brokers: [kafka]", "brokers: [elasticmq]")
    other.write_text(text.replace("repeats: 3", "repeats: 1"))
    elasticmq = run_suite(other, root / "elasticmq")
    return Runs(baseline, same, slow, elasticmq, (started, ended))


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
