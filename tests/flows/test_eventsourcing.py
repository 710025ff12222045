"""The event-sourced account flow through `brokerbench run` on the real brokers: healthy on
each, then each invariant broken on purpose through the real flow (and only that one fails)."""

import json
from pathlib import Path
from typing import Any

import pytest

from harness.stack.manager import Stack
from tests.flows import runs as flow_runs
from tests.flows.runs import result_of

pytestmark = pytest.mark.broker

BROKERS = ("kafka", "elasticmq", "pubsub")
FLOW_CHECKS = {
    "eventsourcing-versions",
    "eventsourcing-appends",
    "eventsourcing-balances",
    "eventsourcing-projection",
    "eventsourcing-checkpoints",
}
LOAD = {
    "rate": 100,
    "duration": 5,
    "warmup": 1,
    "consumers": 2,
    "keys": 20,
    "decide_ms": 3,
    "redeliver_rate": 0.05,
}
"""Two command handlers and two projectors; few, Zipf-hot accounts and a few milliseconds of
deciding between load and append, so that concurrent appends to one account happen; 5 % of the
handled commands and events nacked after commit, so that the broker redelivers them."""
BROKEN_ON = "elasticmq"
"""SQS standard queues pin no key to one consumer: both handlers work on the same accounts."""


def run_suite(tmp: Path, brokers: list[str], workloads: list[dict[str, Any]]) -> dict[str, Path]:
    """Run a suite; "broker/workload name" -> run directory."""
    suite = {"name": "es", "brokers": brokers, "workloads": workloads}
    return {
        f"{result_of(run_dir)['broker']}/{result_of(run_dir)['workload']['name']}": run_dir
        for run_dir in flow_runs.run_suite(suite, tmp, timeout=900)
    }


def checks_of(run_dir: Path) -> dict[str, dict[str, Any]]:
    result = json.loads((run_dir / "result.json").read_text())
    return {check["name"]: check for check in result["checks"]}


def invalid(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, check in checks.items() if check["valid"] is not True}


@pytest.fixture(scope="module")
def healthy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    workload = {"name": "eventsourcing", "kind": "eventsourcing", "params": LOAD}
    runs = run_suite(tmp_path_factory.mktemp("healthy"), list(BROKERS), [workload])
    assert sorted(runs) == sorted(f"{broker}/eventsourcing" for broker in BROKERS)
    return {key.split("/")[0]: path for key, path in runs.items()}


@pytest.fixture(scope="module")
def broken(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    variants = {
        "unchecked-appends": {"version_check": False, "decide_ms": 10},
        "unchecked-projector": {"projector_version_check": False},
        "no-command-dedup": {"command_dedup": False},
    }
    workloads = [
        {"name": name, "kind": "eventsourcing", "params": LOAD | change}
        for name, change in variants.items()
    ]
    runs = run_suite(tmp_path_factory.mktemp("broken"), [BROKEN_ON], workloads)
    return {key.split("/")[1]: path for key, path in runs.items()}


@pytest.mark.parametrize("broker", BROKERS)
def test_a_healthy_run_holds_every_invariant(healthy: dict[str, Path], broker: str) -> None:
    result = json.loads((healthy[broker] / "result.json").read_text())
    checks = checks_of(healthy[broker])
    assert set(checks) >= FLOW_CHECKS
    assert result["valid"] is True, [c for c in checks.values() if c["valid"] is not True]
    appends = checks["eventsourcing-appends"]["counts"]
    assert appends["commands_acked"] == 500
    assert appends["decisions"] == 500
    assert appends["accepted"] > 0
    projection = checks["eventsourcing-projection"]["counts"]
    assert projection["events_applied"] == checks["eventsourcing-versions"]["counts"]["events"]
    assert projection["deliveries_skipped"] > 0  # redelivered events, applied once
    assert projection["command_to_view_p99_us"] > 0
    assert result["figures"]["latency"]["e2e"]["count"] > 0


def test_concurrent_handlers_lose_real_races_on_sqs(healthy: dict[str, Path]) -> None:
    """Two handlers on one SQS queue work on the same hot accounts: some appends conflict,
    and each conflict lost to a real winner (the appends check verified it)."""
    appends = checks_of(healthy["elasticmq"])["eventsourcing-appends"]
    assert appends["counts"]["conflicts"] > 0
    assert appends["valid"] is True


def test_appends_without_the_expected_version_fail_only_the_version_checks(
    broken: dict[str, Path],
) -> None:
    checks = checks_of(broken["unchecked-appends"])
    assert invalid(checks) & FLOW_CHECKS == {"eventsourcing-versions", "eventsourcing-appends"}
    assert checks["eventsourcing-versions"]["counts"]["duplicate_versions"] > 0
    assert checks["eventsourcing-appends"]["counts"]["several_winners"] > 0


def test_a_projector_without_its_version_check_fails_only_the_projection(
    broken: dict[str, Path],
) -> None:
    checks = checks_of(broken["unchecked-projector"])
    assert invalid(checks) & FLOW_CHECKS == {"eventsourcing-projection"}
    counts = checks["eventsourcing-projection"]["counts"]
    assert counts["differs_from_fold"] > 0
    assert counts["differs_from_rebuild"] > 0


def test_a_handler_without_command_dedup_fails_only_the_appends_check(
    broken: dict[str, Path],
) -> None:
    checks = checks_of(broken["no-command-dedup"])
    assert invalid(checks) & FLOW_CHECKS == {"eventsourcing-appends"}
    assert checks["eventsourcing-appends"]["counts"]["applied_twice"] > 0
