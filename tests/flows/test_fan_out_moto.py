"""Fan-out on SQS through SNS, on the real moto server: the tracker's clicks go to an SNS topic
with a queue for the aggregator and one for the archive (raw delivery), each gets every event,
the aggregator's poison pills end in its own dead-letter queue, and every check is valid. The
same flow on Kafka, Pub/Sub and ElasticMQ (where it runs without the archive) is
tests/flows/test_tracker.py. moto is slow as its queues grow, hence the small load."""

from pathlib import Path

import pytest

from harness.stack.manager import Stack
from tests.flows.runs import check, result_of, run_suite
from tests.flows.test_tracker import assert_fan_out

pytestmark = pytest.mark.broker


def test_the_tracker_fans_out_through_sns_on_moto(stack: Stack, tmp_path: Path) -> None:
    load = {"rate": 60, "duration": 3, "warmup": 1, "keys": 50, "poison_rate": 0.05}
    suite = {
        "name": "fan-out-moto",
        "brokers": ["moto"],
        "workloads": [{"name": "tracker", "kind": "tracker", "params": load}],
    }
    (run_dir,) = run_suite(suite, tmp_path)
    result = result_of(run_dir)
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    assert result["counts"]["ok"] == 60 * 3
    assert_fan_out(result, "moto")
    poison = check(result, "tracker-poison")["counts"]
    assert poison["poison_acked"] > 0
    assert poison["dead_lettered"] == poison["poison_acked"]
