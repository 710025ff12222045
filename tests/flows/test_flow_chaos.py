"""Flows under faults: the tracker with its aggregator killed mid-batch (a replacement with a
new consumer id takes over its topic and its outbox) and with the broker link down; the flow's
invariants hold and the fault windows are in the result."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.stack.manager import Stack
from tests.flows.runs import check, invalid_checks, result_of, run_suite

pytestmark = [pytest.mark.broker, pytest.mark.alone]  # faults the shared proxies

# A killed aggregator's unacknowledged deliveries come back after 10 s, not SQS's 30 s.
PARAMS = {"rate": 100, "duration": 8, "warmup": 1, "keys": 100, "drain_timeout": 60,
          "redelivery_timeout": 10}  # fmt: skip


@pytest.fixture(scope="module")
def results(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """One suite per broker, the two at once (each fault is on its own broker's proxy; most of
    a run is waiting: for the fault window, a rebalance, a visibility timeout)."""
    root = tmp_path_factory.mktemp("flow-chaos")

    def broker_suite(broker: str) -> list[Path]:
        suite = {
            "name": f"flow-chaos-{broker}",
            "brokers": [broker],
            "proxy": "all",
            "scenarios": ["consumer-kill", "link-down"],
            "workloads": [{"name": "tracker", "kind": "tracker", "params": PARAMS}],
        }
        return run_suite(suite, root / broker, timeout=900)

    with ThreadPoolExecutor(2) as pool:
        run_dirs = [d for dirs in pool.map(broker_suite, ["kafka", "elasticmq"]) for d in dirs]
    found = {}
    for run_dir in run_dirs:
        result = result_of(run_dir)
        found[(result["broker"], result["scenario"]["name"])] = (run_dir, result)
    return found


@pytest.mark.parametrize("broker", ["kafka", "elasticmq"])
@pytest.mark.parametrize("scenario", ["consumer-kill", "link-down"])
def test_the_tracker_keeps_its_invariants_under_a_fault(
    results: dict[tuple[str, str], tuple[Path, dict[str, Any]]], broker: str, scenario: str
) -> None:
    run_dir, result = results[(broker, scenario)]
    [fault] = result["scenario"]["faults"]
    assert fault["action"] == scenario
    assert fault["end_ns"] > fault["start_ns"]
    for name in ("tracker-aggregates", "tracker-poison", "lost"):
        assert check(result, name)["valid"] is True, (name, invalid_checks(result))
    if scenario == "consumer-kill":
        # consumer-0 is the aggregator; its replacement (consumer id 1000) recorded deliveries
        replacement = run_dir / "history" / "shards"
        plans = sorted(p.name for p in (run_dir / "plans").glob("consumer-*.json"))
        assert "consumer-1000.json" in plans, plans
        assert not replacement.exists()  # compacted
        assert (run_dir / "logs" / "consumer-1000.log").exists()
