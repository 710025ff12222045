"""`locust -f workloads/locust/tracker.py` runs the whole flow from Locust itself (headless here;
the web UI drives the same hooks) and prints the verdicts when the test stops."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

LOCUSTFILE = Path(__file__).parents[2] / "workloads" / "locust" / "tracker.py"


def test_the_tracker_locustfile_runs_the_flow_and_checks_it(stack: Stack, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2",
         "-r", "2", "-t", "20s", "--bb-target", "kafka", "--bb-rate", "100",
         "--bb-duration", "4", "--bb-drain", "60", "--bb-run-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    verdicts = {
        line.split()[0]: line.split()[1]
        for line in output.splitlines()
        if line.startswith("  ") and "valid=" in line
    }
    assert verdicts["tracker-aggregates"] == "valid=True", output[-3000:]
    assert verdicts["tracker-poison"] == "valid=True"
    assert verdicts["lost"] == "valid=True"
    assert len(list(tmp_path.glob("tracker-*/db/aggregator.sqlite"))) == 1
    (state,) = tmp_path.glob("tracker-*/run-state.json")
    assert json.loads(state.read_text())["state"] == "complete"
