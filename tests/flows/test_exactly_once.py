"""`semantics: exactly-once` uses each broker's exactly-once option (Kafka's idempotent producer
and read_committed consumers, SQS FIFO deduplication, Pub/Sub exactly-once delivery), says so in
the result, and holds the run to it: any extra delivery the consumer did not ask for with a
nack is a violation."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.stack.manager import Stack
from tests.flows.runs import check, invalid_checks, result_of, run_suite

pytestmark = pytest.mark.broker

LOAD = {"rate": 100, "duration": 4, "warmup": 1, "semantics": "exactly-once",
        "redeliver_rate": 0.05}  # fmt: skip


@pytest.mark.parametrize(
    ("broker", "ordered"),
    [("kafka", False), ("elasticmq", True), ("pubsub", False)],
)
def test_an_exactly_once_tracker_run_is_held_to_exactly_once(
    stack: Stack, tmp_path: Path, broker: str, ordered: bool
) -> None:
    suite = {
        "name": f"eo-{broker}",
        "brokers": [broker],
        "workloads": [
            {"name": "tracker", "kind": "tracker", "params": LOAD | {"ordered": ordered}}
        ],
    }
    [run_dir] = run_suite(suite, tmp_path)
    result = result_of(run_dir)
    assert result["semantics"] == "exactly-once"
    assert result["valid"] is True, invalid_checks(result)
    duplicates = check(result, "duplicates")
    assert "exactly-once" in duplicates["notes"]
    counts = duplicates["counts"]
    assert counts["redelivery_after_nack"] == counts["extra_deliveries"] > 0


def test_exactly_once_on_sqs_without_fifo_is_a_one_line_error(stack: Stack, tmp_path: Path) -> None:
    suite = {
        "name": "eo-standard",
        "brokers": ["elasticmq"],
        "workloads": [{"name": "tracker", "kind": "tracker", "params": LOAD}],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "-o", str(tmp_path / "runs"),
         "--metrics-port", "0", "--no-broker-warmup"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: elasticmq: exactly-once on SQS needs FIFO queues"), line
    assert "ordered: true" in line
