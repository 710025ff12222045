"""A run is bounded: producers asked for more than they can send stop at the schedule's end
(plus a grace second), count what they left unsent, and the run still ends with a result."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc  # type: ignore[import-untyped]
import pytest

from harness.history.store import load
from harness.load.plan import END_GRACE_SECONDS
from harness.stack.manager import Stack

pytestmark = pytest.mark.broker

RATE, SECONDS = 1_000_000, 2.0
SUITE = f"""
name: bounded
brokers: [kafka]
workloads:
  - name: overload
    kind: throughput
    params: {{rate: {RATE}, duration: {SECONDS}, warmup: 0.5, partitions: 3, consumers: 1}}
"""


def test_an_unreachable_rate_ends_at_the_bound_and_counts_what_was_not_sent(
    stack: Stack, tmp_path: Path
) -> None:
    suite = tmp_path / "bounded.yaml"
    suite.write_text(SUITE)
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "-o", str(tmp_path / "runs"),
         "--metrics-port", "0", "--no-broker-warmup"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "not sent" in completed.stdout
    (result_path,) = (tmp_path / "runs").glob("bounded-*/kafka/overload/baseline/r0/result.json")
    result = json.loads(result_path.read_text())
    counts = result["counts"]
    assert counts["not_sent"] > 0
    assert counts["sent"] + counts["not_sent"] == RATE * SECONDS
    assert result["valid"] is True  # what was sent was all received: no broker anomaly

    history = load(result_path.parent)
    bound_ns = result["phases"]["start_ns"] + round((SECONDS + END_GRACE_SECONDS) * 1e9)
    assert pc.max(history.sends["invoke_ns"]).as_py() < bound_ns
    not_sent_events = [
        json.loads(row["detail"]) for row in history.events.to_pylist() if row["kind"] == "not-sent"
    ]
    assert sum(event["count"] for event in not_sent_events) == counts["not_sent"]
