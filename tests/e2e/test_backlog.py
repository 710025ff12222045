"""Backlog build-and-drain: consumers start late, the broker-side backlog grows to about what
was sent meanwhile, then drains to zero, and nothing is lost."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

RATE, BUILD_SECONDS = 200, 4
SUITE = f"""
name: backlog
brokers: [kafka]
workloads:
  - name: build-and-drain
    params: {{rate: {RATE}, duration: 6, warmup: 1, backlog_build: {BUILD_SECONDS},
              producers: 1, consumers: 1, partitions: 2}}
"""


def test_backlog_builds_while_consumers_are_away_then_drains(stack: Stack, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "-o", str(tmp_path / "runs"),
         "--metrics-port", "0", "--no-broker-warmup"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    (result_file,) = (tmp_path / "runs").glob(
        "backlog-*/kafka/build-and-drain/baseline/r0/result.json"
    )
    result = json.loads(result_file.read_text())
    assert result["valid"] is True
    lag = result["figures"]["lag"]
    assert lag["max"] >= RATE * (BUILD_SECONDS - 1)
    assert lag["final"] == 0
    assert result["counts"]["received"] == result["counts"]["ok"] == RATE * 6
