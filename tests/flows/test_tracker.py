"""The tracker flow on every broker: healthy runs hold every invariant; an aggregator built
without its dedup step, fed real redeliveries, over-counts (and only that check fails); one
that drops poison pills instead of dead-lettering them fails only the poison check."""

from pathlib import Path
from typing import Any

import pytest

from harness.stack.manager import Stack
from tests.flows.runs import (
    analyze_copy,
    by_broker_and_workload,
    check,
    invalid_checks,
    result_of,
    run_suite,
)

pytestmark = pytest.mark.broker

BROKERS = ("kafka", "elasticmq", "pubsub")
LOAD = {"rate": 150, "duration": 4, "warmup": 1, "keys": 200, "poison_rate": 0.03}


@pytest.fixture(scope="module")
def healthy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    suite = {
        "name": "tracker-healthy",
        "brokers": list(BROKERS),
        "workloads": [{"name": "tracker", "kind": "tracker", "params": LOAD}],
    }
    run_dirs = run_suite(suite, tmp_path_factory.mktemp("tracker"))
    return {result_of(run_dir)["broker"]: run_dir for run_dir in run_dirs}


@pytest.fixture(scope="module")
def broken(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    redelivered = LOAD | {"redeliver_rate": 0.1}
    suite = {
        "name": "tracker-broken",
        "brokers": ["kafka"],
        "workloads": [
            {"name": "redelivered", "kind": "tracker", "params": redelivered},
            {"name": "no-dedup", "kind": "tracker", "params": redelivered | {"dedup": False}},
            {"name": "drops-poison", "kind": "tracker",
             "params": LOAD | {"dead_letter_poison": False}},
        ],
    }  # fmt: skip
    results = by_broker_and_workload(run_suite(suite, tmp_path_factory.mktemp("broken")))
    return {workload: result for (_, workload), result in results.items()}


@pytest.mark.parametrize("broker", BROKERS)
def test_a_healthy_tracker_run_holds_every_invariant(healthy: dict[str, Path], broker: str) -> None:
    result = result_of(healthy[broker])
    assert result["workload"]["kind"] == "tracker"
    assert result["semantics"] == "at-least-once"
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    aggregates = check(result, "tracker-aggregates")["counts"]
    poison = check(result, "tracker-poison")["counts"]
    assert result["counts"]["ok"] == 150 * 4
    assert aggregates["acked_clicks"] + poison["poison_acked"] == result["counts"]["ok"]
    assert poison["poison_acked"] > 0
    assert poison["dead_lettered"] == poison["poison_acked"]
    assert aggregates["users"] > 10
    assert result["figures"]["latency"]["e2e"]["count"] > 0
    assert (healthy[broker] / "db" / "aggregator.sqlite").exists()
    assert_fan_out(result, broker)


def assert_fan_out(result: dict[str, Any], broker: str) -> None:
    """Where the broker fans out (Kafka consumer groups, Pub/Sub subscriptions, SNS on moto),
    the archive subscribes to clicks beside the aggregator and each gets every event; on
    ElasticMQ (no SNS) ``fan_out: auto`` ran the aggregator alone."""
    ok = result["counts"]["ok"]
    names = [c["name"] for c in result["checks"]]
    if broker == "elasticmq":
        assert result["workload"]["params"]["fan_out"] == "off"
        assert "subscribers" not in names
        assert "tracker-archive" not in names
        return
    assert result["workload"]["params"]["fan_out"] == "on"
    subscribers = check(result, "subscribers")
    assert subscribers["valid"] is True, subscribers["notes"]
    for name in ("clicks/aggregator", "clicks/archive"):
        assert subscribers["counts"][f"{name}:received"] == ok, name
        assert subscribers["counts"][f"{name}:missing"] == 0, name
    archive = check(result, "tracker-archive")
    assert archive["valid"] is True, archive["examples"]
    assert archive["counts"]["archived"] == ok
    # The aggregator's nacked poison pills come back to it; a consumer group's rebalance may
    # redeliver more (allowed at-least-once: CI once saw 19 beside 72 after nacks).
    duplicates = check(result, "duplicates")
    assert duplicates["valid"] is True
    counts = duplicates["counts"]
    assert counts["redelivery_after_nack"] <= counts["extra_deliveries"]
    # The archive never nacks: whatever it got twice came from a rebalance, not a nack.
    unrequested = counts["extra_deliveries"] - counts["redelivery_after_nack"]
    assert subscribers["counts"]["clicks/archive:extra_deliveries"] <= unrequested


def test_real_redeliveries_change_nothing_when_the_aggregator_dedups(
    broken: dict[str, dict[str, Any]],
) -> None:
    result = broken["redelivered"]
    assert check(result, "duplicates")["counts"]["redelivery"] > 0
    assert result["valid"] is True, invalid_checks(result)


def test_an_aggregator_without_dedup_over_counts_and_only_that_is_reported(
    broken: dict[str, dict[str, Any]],
) -> None:
    result = broken["no-dedup"]
    assert check(result, "duplicates")["counts"]["redelivery"] > 0
    assert invalid_checks(result) == ["tracker-aggregates"]
    aggregates = check(result, "tracker-aggregates")
    assert aggregates["counts"]["over_counted"] > 0
    assert aggregates["counts"]["under_counted"] == 0
    assert {e["kind"] for e in aggregates["examples"]} == {"over-counted"}


def test_an_aggregator_that_drops_poison_fails_only_the_poison_check(
    broken: dict[str, dict[str, Any]],
) -> None:
    result = broken["drops-poison"]
    assert invalid_checks(result) == ["tracker-poison"]
    poison = check(result, "tracker-poison")["counts"]
    assert poison["not_dead_lettered"] == poison["poison_acked"] > 0
    assert poison["wrongly_dead_lettered"] == 0


def test_analyze_recomputes_the_flow_checks_from_the_run_folder(
    healthy: dict[str, Path], tmp_path: Path
) -> None:
    before, after, printed = analyze_copy(healthy["kafka"], tmp_path / "run")
    assert after["checks"] == before["checks"]
    assert "tracker-aggregates" in printed
