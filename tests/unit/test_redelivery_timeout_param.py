"""The workload parameter ``redelivery_timeout`` reaches every destination a run creates (the
brokers' side is in tests/contract/test_redelivery_timeout.py): pure functions, no broker."""

import pytest
from pydantic import ValidationError

from harness.drivers.base import Destination
from harness.flows.api import FlowConfig
from harness.flows.registry import flow_class
from harness.load.throughput import ThroughputConfig
from harness.run.topology import topic_plans


def test_it_reaches_the_raw_workload_s_destination() -> None:
    config = ThroughputConfig.model_validate({"rate": 10, "redelivery_timeout": 12})
    [plan] = topic_plans("w", config, None, run_id=1).values()
    assert plan.spec().redelivery_timeout == 12
    assert plan.spec().dead_letter is None
    [plan] = topic_plans("w", ThroughputConfig(rate=10), None, run_id=1).values()
    assert plan.spec().redelivery_timeout is None


def test_it_reaches_every_topic_of_a_flow_and_their_dead_letters() -> None:
    config = FlowConfig.model_validate({"rate": 10, "redelivery_timeout": 10})
    plans = topic_plans("w", config, flow_class("saga"), run_id=1)
    assert len(plans) > 1
    for plan in plans.values():
        spec = plan.spec()
        assert spec.redelivery_timeout == 10
        if spec.dead_letter is not None:
            assert Destination(spec, "a", "dlq").dead_letter.spec.redelivery_timeout == 10


@pytest.mark.parametrize("seconds", [0, 9, 601])
def test_values_both_sqs_and_pubsub_cannot_take_are_refused(seconds: int) -> None:
    with pytest.raises(ValidationError, match="redelivery_timeout"):
        ThroughputConfig.model_validate({"rate": 10, "redelivery_timeout": seconds})
