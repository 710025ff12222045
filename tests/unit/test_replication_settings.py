"""Kafka's replication settings as a workload parameter (``replication``): what a suite may
ask for, and what reaches the topics and the producer (the broker's side is in
tests/contract/test_kafka_replication.py). Pure functions, no broker."""

import pytest
import yaml
from pydantic import ValidationError

from harness.drivers.base import DestinationSpec
from harness.drivers.kafka import producer_config
from harness.drivers.replication import Replication
from harness.flows.api import FlowConfig
from harness.flows.registry import flow_class
from harness.load.throughput import ThroughputConfig
from harness.run.topology import topic_plans

BASE = {"bootstrap.servers": "127.0.0.1:9092"}


def test_a_suite_s_yaml_gives_every_setting() -> None:
    params = yaml.safe_load(
        "{rate: 10, replication: {factor: 3, min_insync_replicas: 2, acks: 1,"
        " unclean_leader_election: true}}"
    )
    replication = ThroughputConfig.model_validate(params).replication
    assert replication == Replication(
        factor=3, min_insync_replicas=2, acks=1, unclean_leader_election=True
    )
    assert replication.topic_config() == {
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "true",
    }
    assert Replication().topic_config() == {}


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"replication": {"factor": 2, "min_insync_replicas": 3}}, "exceeds factor 2"),
        ({"replication": {"acks": 2}}, "acks"),
        ({"replication": {"factor": 0}}, "factor"),
        ({"replication": {"acks": 1}, "idempotent_producer": True}, "needs acks: all, not 1"),
        ({"replication": {"replicas": 3}}, "replicas"),
    ],
)
def test_settings_that_cannot_work_are_refused(params: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        ThroughputConfig.model_validate({"rate": 10, **params})


def test_exactly_once_keeps_acks_all() -> None:
    with pytest.raises(ValidationError, match="exactly-once needs acks: all, not 0"):
        FlowConfig.model_validate(
            {"rate": 10, "semantics": "exactly-once", "replication": {"acks": 0}}
        )


@pytest.mark.parametrize(("acks", "idempotent"), [(1, False), (0, False), ("all", True)])
def test_acks_reach_the_producer_and_only_all_keeps_idempotence(
    acks: object, idempotent: bool
) -> None:
    spec = DestinationSpec("t", replication=Replication.model_validate({"acks": acks}))
    config = producer_config(BASE, {}, spec)
    assert (config["acks"], config["enable.idempotence"]) == (acks, idempotent)


def test_every_topic_of_a_flow_gets_the_settings() -> None:
    config = FlowConfig.model_validate({"rate": 10, "replication": {"factor": 3}})
    plans = topic_plans("w", config, flow_class("saga"), run_id=1)
    assert {plan.spec().replication for plan in plans.values()} == {Replication(factor=3)}
