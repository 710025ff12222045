"""Fan-out on SQS through SNS, on the real moto server: the tracker's clicks go to an SNS topic
with a queue for the aggregator and one for the archive (raw delivery), each gets every event,
the aggregator's poison pills end in its own dead-letter queue, and every check is valid; the
saga's ShipmentScheduled reaches both the Order and the Inventory service through its
``shipments`` topic. The same flows on Kafka, Pub/Sub and ElasticMQ (no fan-out there) are
tests/flows/test_tracker.py and test_saga.py. moto is slow as its queues grow: small loads."""

from typing import Any

import pytest

from harness.stack.manager import Stack
from tests.flows.runs import check, result_of, run_suite
from tests.flows.test_tracker import assert_fan_out

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def results(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tracker = {"rate": 50, "duration": 2, "warmup": 1, "keys": 50, "poison_rate": 0.1}
    saga = {"rate": 10, "duration": 2, "warmup": 1}
    suite = {
        "name": "fan-out-moto",
        "brokers": ["moto"],
        "workloads": [
            {"name": "tracker", "kind": "tracker", "params": tracker},
            {"name": "saga", "kind": "saga", "params": saga},
        ],
    }
    runs = run_suite(suite, tmp_path_factory.mktemp("fan-out"))
    return {result_of(run)["workload"]["name"]: result_of(run) for run in runs}


def test_the_tracker_fans_out_through_sns_on_moto(results: dict[str, Any]) -> None:
    result = results["tracker"]
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    assert result["counts"]["ok"] == 50 * 2
    assert_fan_out(result, "moto")
    poison = check(result, "tracker-poison")["counts"]
    assert poison["poison_acked"] > 0
    assert poison["dead_lettered"] == poison["poison_acked"]


def test_the_saga_fans_shipments_out_through_sns_on_moto(results: dict[str, Any]) -> None:
    result = results["saga"]
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    assert result["workload"]["params"]["fan_out"] == "on"
    counts = check(result, "subscribers")["counts"]
    completed = check(result, "saga-terminal")["counts"]["completed"]
    assert completed > 0
    assert counts["shipments/order:received"] == counts["shipments/inventory:received"] == completed
