"""The order saga through `brokerbench run` on the real brokers: healthy runs of both styles
on Kafka, ElasticMQ and Pub/Sub keep every invariant; runs with a handler broken on purpose
(on Kafka) end in exactly the violation that handler causes."""

from pathlib import Path
from typing import Any

import pytest

from harness.stack.manager import Stack
from tests.flows import runs as flow_runs
from tests.flows.runs import by_broker_and_workload

pytestmark = pytest.mark.broker

BROKERS = ("kafka", "elasticmq", "pubsub")
STYLES = ("saga", "saga-orchestrated")
RATE, DURATION = 100, 3
SAGA_CHECKS = {"saga-terminal", "saga-steps", "saga-conservation", "saga-idempotence"}
# Little stock: some orders run out of it (a natural failure) within a few seconds. The saga
# timeout is generous: the unit tests check "late"; here a loaded machine must not fail a run.
LOAD = {
    "rate": RATE,
    "duration": DURATION,
    "warmup": 0.5,
    "skus": 8,
    "initial_stock": 250,
    "saga_timeout": 600,
    "drain_timeout": 180,
}
BROKEN = {
    # a compensation handler that does nothing: reservations of compensated sagas stay
    "skipped-release": ("saga", {"skip_compensation": "release"}),
    # a payment handler without its guard, fed real redeliveries: customers charged twice
    "unguarded-payment": ("saga", {"dedup_disabled": ["payment"], "redeliver_rate": 0.05}),
    # an order service without its guard, fed real redeliveries: a terminal state recorded twice
    "unguarded-order": (
        "saga-orchestrated",
        {"dedup_disabled": ["order"], "redeliver_rate": 0.05},
    ),
    # every guard in place, fed the same redeliveries: nothing changes
    "guarded": ("saga", {"redeliver_rate": 0.05}),
}


def run_suite(suite: dict[str, Any], output: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Runs ``suite``; (broker, workload name) -> its result."""
    return by_broker_and_workload(flow_runs.run_suite(suite, output))


@pytest.fixture(scope="module")
def healthy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    suite = {
        "name": "saga-healthy",
        "brokers": list(BROKERS),
        "workloads": [{"name": style, "kind": style, "params": LOAD} for style in STYLES],
    }
    results = run_suite(suite, tmp_path_factory.mktemp("healthy"))
    assert sorted(results) == sorted((b, s) for b in BROKERS for s in STYLES)
    return results


@pytest.fixture(scope="module")
def broken(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    suite = {
        "name": "saga-broken",
        "brokers": ["kafka"],
        "workloads": [
            {"name": name, "kind": kind, "params": LOAD | {"duration": 2} | knobs}
            for name, (kind, knobs) in BROKEN.items()
        ],
    }
    results = run_suite(suite, tmp_path_factory.mktemp("broken"))
    return {name: result for (_, name), result in results.items()}


def checks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in result["checks"]}


def invalid(result: dict[str, Any]) -> dict[str, set[str]]:
    """Invalid check -> the kinds of its examples."""
    return {
        name: {example["kind"] for example in check["examples"]}
        for name, check in checks_of(result).items()
        if check["valid"] is not True
    }


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("broker", BROKERS)
def test_a_healthy_saga_keeps_every_invariant(
    healthy: dict[tuple[str, str], Any], broker: str, style: str
) -> None:
    result = healthy[(broker, style)]
    assert result["valid"] is True, invalid(result)
    checks = checks_of(result)
    assert set(checks) >= SAGA_CHECKS
    terminal = checks["saga-terminal"]["counts"]
    assert terminal["sagas"] == RATE * DURATION
    assert terminal["completed"] + terminal["compensated"] == terminal["sagas"]
    assert terminal["completed"] > 0
    assert terminal["payment_declined"] + terminal["shipping_failed"] > 0
    assert terminal["latency_p99_us"] >= terminal["latency_p50_us"] > 0
    assert checks["saga-conservation"]["counts"]["units_shipped"] > 0
    assert result["figures"]["throughput"]["sent"]["mean_msgs_per_s"] > 0
    assert result["figures"]["latency"]["e2e"]["count"] > 0
    if style == "saga":  # ShipmentScheduled fans out to Order and Inventory where it can
        fans_out = broker != "elasticmq"
        assert result["workload"]["params"]["fan_out"] == ("on" if fans_out else "off")
        assert ("subscribers" in checks) is fans_out
        if fans_out:
            counts = checks["subscribers"]["counts"]
            assert counts["subscribers"] == 2
            scheduled = counts["shipments/order:received"]
            assert scheduled == counts["shipments/inventory:received"] == terminal["completed"]


def test_a_skipped_compensation_leaves_steps_uncompensated(broken: dict[str, Any]) -> None:
    assert invalid(broken["skipped-release"]) == {"saga-steps": {"not-compensated"}}


def test_an_unguarded_payment_charges_redeliveries_again(broken: dict[str, Any]) -> None:
    result = broken["unguarded-payment"]
    assert checks_of(result)["duplicates"]["counts"]["redelivery"] > 0
    assert invalid(result) == {
        "saga-idempotence": {"redelivery-applied-again"},
        "saga-conservation": {"money-mismatch"},  # charged twice: the redelivery's consequence
    }
    examples = checks_of(result)["saga-idempotence"]["examples"]
    assert {e["service"] for e in examples} == {"payment"}
    assert "charge" in {e["action"] for e in examples}


def test_an_unguarded_order_service_records_redeliveries_again(broken: dict[str, Any]) -> None:
    result = broken["unguarded-order"]
    assert checks_of(result)["duplicates"]["counts"]["redelivery"] > 0
    assert invalid(result) == {"saga-idempotence": {"redelivery-applied-again"}}
    examples = checks_of(result)["saga-idempotence"]["examples"]
    assert {e["service"] for e in examples} == {"order"}


def test_guarded_services_make_redeliveries_harmless(broken: dict[str, Any]) -> None:
    result = broken["guarded"]
    assert checks_of(result)["duplicates"]["counts"]["redelivery"] > 0
    assert result["valid"] is True, invalid(result)
