"""Saturation awareness on a real broker: a quiet low-rate Kafka run is not harness-bound; the
same run beside a CPU hog (one busy loop per core) is, for the machine's CPU; ``analyze``
rebuilds the section from the stored samples.

The quiet run is only quiet on a machine that is: in CI it runs alone. While developing on a
machine shared with other work, it may rightly be flagged.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from harness.collectors.saturation import SATURATION_SCHEMA
from harness.stack.manager import Stack
from tests.flows.runs import analyze_copy

pytestmark = [pytest.mark.broker, pytest.mark.alone]  # measures the machine's CPU

SUITE = Path(__file__).with_name("saturation-suite.yaml")
BUSY_LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextmanager
def cpu_hog() -> Iterator[None]:
    """One busy loop pinned to each core for the duration, killed however it ends."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(cpu)])
        for cpu in sorted(os.sched_getaffinity(0))
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def run(output: Path, *flags: str) -> tuple[Path, str]:
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(SUITE), "-o", str(output),
         "--metrics-port", "0", *flags],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (result,) = output.glob("saturation-*/kafka/quiet-50/baseline/r0/result.json")
    return result.parent, completed.stdout


@pytest.fixture(scope="module")
def quiet(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return run(tmp_path_factory.mktemp("quiet"))


@pytest.fixture(scope="module")
def hogged(
    stack: Stack, quiet: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    with cpu_hog():  # the quiet run warmed the broker already (a warm-up here takes its bound)
        return run(tmp_path_factory.mktemp("hogged"), "--no-broker-warmup")


def saturation_of(run_dir: Path) -> dict[str, Any]:
    section: dict[str, Any] = json.loads((run_dir / "result.json").read_text())["saturation"]
    return section


def test_a_quiet_low_rate_run_is_not_harness_bound(quiet: tuple[Path, str]) -> None:
    run_dir, printed = quiet
    section = saturation_of(run_dir)
    assert section["harness_bound"] == {"value": False, "reasons": []}
    assert "harness-bound" not in printed
    summary = section["summary"]
    assert summary["seconds"] >= 5
    assert set(summary["roles"]) >= {"orchestrator", "producer", "consumer", "broker", "sampler"}
    assert summary["roles"]["broker"]["processes"] == 1
    assert summary["roles"]["producer"]["cpu_seconds"] > 0
    # the sampler's own cost is part of the report, and small beside the load it watches
    assert summary["roles"]["sampler"]["cpu_seconds"] < summary["harness_cpu_seconds"]
    series = section["series"]
    assert len(series["t"]) == len(series["machine_cpu_percent"]) >= summary["seconds"]
    assert all(len(values) == len(series["t"]) for values in series["cpu_percent"].values())
    assert section["cpu_count"] == os.cpu_count()
    stored = pq.read_table(run_dir / "saturation.parquet")
    assert stored.schema.remove_metadata().equals(SATURATION_SCHEMA)


def test_the_same_run_beside_a_cpu_hog_is_harness_bound_for_the_machine(
    hogged: tuple[Path, str],
) -> None:
    run_dir, printed = hogged
    verdict = saturation_of(run_dir)["harness_bound"]
    assert verdict["value"] is True
    assert verdict["reasons"][0].startswith("machine CPU >= 90% in "), verdict
    assert "harness-bound: kafka / quiet-50 / r0: machine CPU >= 90%" in printed
    assert "BOUND" in printed  # the summary table's harness column


def test_analyze_rebuilds_the_saturation_section(hogged: tuple[Path, str], tmp_path: Path) -> None:
    before, after, printed = analyze_copy(hogged[0], tmp_path / "run")
    assert after["saturation"] == before["saturation"]
    assert "harness-bound: yes" in printed
