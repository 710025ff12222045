"""The Kafka producer's effective settings (``harness.drivers.kafka.producer_config``) and the
workload parameter that reaches them: pure functions, no broker (the broker's side is in
tests/contract/test_kafka_idempotence.py)."""

import pytest
from pydantic import ValidationError

from harness.drivers.base import DestinationSpec
from harness.drivers.kafka import producer_config
from harness.flows.api import FlowConfig
from harness.load.throughput import ThroughputConfig
from harness.run.topology import topic_plans

BASE = {"bootstrap.servers": "127.0.0.1:9092"}


def test_the_default_is_the_idempotent_producer_with_acks_all() -> None:
    config = producer_config(BASE, {}, DestinationSpec("t"))
    assert (config["enable.idempotence"], config["acks"]) == (True, "all")


def test_the_workload_can_turn_it_off_and_the_target_too() -> None:
    off = DestinationSpec("t", idempotent_producer=False)
    assert producer_config(BASE, {}, off)["enable.idempotence"] is False
    target_off = producer_config(BASE, {"enable.idempotence": False}, DestinationSpec("t"))
    assert target_off["enable.idempotence"] is False


def test_a_default_on_yields_to_settings_it_conflicts_with_as_the_java_client_does() -> None:
    config = producer_config(BASE, {"acks": 1}, DestinationSpec("t"))
    assert (config["enable.idempotence"], config["acks"]) == (False, 1)


def test_exactly_once_always_has_it_on() -> None:
    spec = DestinationSpec("t", exactly_once=True)
    assert producer_config(BASE, {"enable.idempotence": False}, spec)["enable.idempotence"] is True


def test_the_suite_s_workload_param_reaches_the_destination_spec() -> None:
    config = ThroughputConfig.model_validate({"rate": 10, "idempotent_producer": False})
    [plan] = topic_plans("w", config, None, run_id=1).values()
    assert plan.spec().idempotent_producer is False
    [plan] = topic_plans("w", ThroughputConfig(rate=10), None, run_id=1).values()
    assert plan.spec().idempotent_producer is None


def test_exactly_once_without_the_idempotent_producer_is_refused() -> None:
    with pytest.raises(ValidationError, match="exactly-once needs the idempotent producer"):
        FlowConfig.model_validate(
            {"rate": 10, "semantics": "exactly-once", "idempotent_producer": False}
        )
