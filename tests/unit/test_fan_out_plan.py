"""Fan-out decided at plan time, before any broker I/O (harness/flows/fan_out.py): which
targets can fan out (the drivers' declared capability, and for SQS whether the endpoint serves
SNS), a flow's ``fan_out: auto`` resolved per broker, ``fan_out: on`` on ElasticMQ refused in one
line with the reason (exit 2, nothing written), and the topology each decision gives."""

from pathlib import Path

import pytest

from harness.drivers.base import Destination, DestinationSpec, FanOut
from harness.drivers.kafka import KafkaDriver
from harness.drivers.pubsub import PubSubDriver
from harness.drivers.sqs import SqsDriver
from harness.drivers.targets import fan_out_refusal
from harness.errors import UserError
from harness.flows.api import FlowConfig
from harness.flows.registry import flow_class
from harness.load.plan import RunShared
from harness.run.suite_runner import plan_suite
from harness.run.topology import consumer_plans_of, topic_plans
from harness.settings import ExternalTarget, Settings
from tests.stack.cli import brokerbench, environment, one_line_error

SUITE = """name: fan
brokers: [{brokers}]
workloads:
  - name: tracker
    kind: tracker
    params: {{rate: 10, duration: 2{extra}}}
"""


def suite(tmp_path: Path, brokers: str, extra: str = "") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(brokers=brokers, extra=extra), encoding="utf-8")
    return path


def test_drivers_declare_fan_out() -> None:
    assert KafkaDriver.capabilities.fan_out is FanOut.GROUPS
    assert PubSubDriver.capabilities.fan_out is FanOut.GROUPS
    assert SqsDriver.capabilities.fan_out is FanOut.SNS


def test_which_targets_can_fan_out() -> None:
    aws = ExternalTarget(driver="sqs", settings={"region": "eu-west-1", "sns": True})
    plain = ExternalTarget(driver="sqs", settings={"region": "eu-west-1"})
    settings = Settings(targets={"aws": aws, "aws-plain": plain})
    for target in ("kafka", "pubsub", "moto", "memory", "aws"):
        assert fan_out_refusal(target, settings) is None, target
    for target in ("elasticmq", "aws-plain"):
        reason = fan_out_refusal(target, settings)
        assert reason is not None
        assert "no SNS" in reason, reason


def test_auto_is_resolved_per_broker(tmp_path: Path) -> None:
    _, runs = plan_suite(suite(tmp_path, "moto, elasticmq, kafka"), Settings(), tmp_path / "out")
    decided = {run.broker: getattr(run.config, "fan_out", None) for run in runs}
    assert decided == {"moto": "on", "elasticmq": "off", "kafka": "on"}


def test_off_is_kept_everywhere(tmp_path: Path) -> None:
    path = suite(tmp_path, "moto, elasticmq", ", fan_out: 'off'")
    _, runs = plan_suite(path, Settings(), tmp_path / "out")
    assert {getattr(run.config, "fan_out", None) for run in runs} == {"off"}


def test_on_is_refused_on_elasticmq_naming_the_workload_and_the_reason(tmp_path: Path) -> None:
    path = suite(tmp_path, "moto, elasticmq", ", fan_out: 'on'")
    with pytest.raises(UserError) as raised:
        plan_suite(path, Settings(), tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{path}:4: tracker asks for fan_out: on"), message
    assert "'elasticmq' cannot fan out" in message
    assert "no SNS" in message
    assert "\n" not in message


def test_the_cli_refuses_it_in_one_line_before_any_run(tmp_path: Path) -> None:
    path = suite(tmp_path, "elasticmq", ", fan_out: 'on'")
    completed = brokerbench(
        "run", str(path), "-o", str(tmp_path / "out"), env=environment(tmp_path / "home")
    )
    assert "cannot fan out" in one_line_error(completed)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("fan_out", "services"), [("on", 2), ("off", 1)])
def test_the_topology_follows_the_decision(tmp_path: Path, fan_out: str, services: int) -> None:
    flow = flow_class("tracker")
    config = flow.config_model.model_validate({"rate": 10, "duration": 2, "fan_out": fan_out})
    assert isinstance(config, FlowConfig)
    topics = topic_plans("tracker", config, flow, 1)
    groups = topics["clicks"].spec().groups
    assert groups == (("aggregator", "archive") if fan_out == "on" else ("default",))
    shared = RunShared(
        run_dir=str(tmp_path),
        run_id=1,
        target="moto",
        settings=Settings(),
        destination=topics["clicks"],
    )
    plans = [p.plan for p in consumer_plans_of(config, flow, shared, topics).values()]
    readers = [(p.service, p.group) for p in plans]  # type: ignore[attr-defined]
    expected = (
        [("aggregator", "aggregator"), ("archive", "archive")]
        if fan_out == "on"
        else [("aggregator", None)]
    )
    assert readers == [*expected[:services], ("dead-letters", None)]


def test_a_fan_out_dead_letter_destination_is_read_per_group() -> None:
    """SQS fan-out: each group's own dead-letter queue (``Destination.dead_letter``)."""
    spec = DestinationSpec("d", groups=("a", "b"))
    destination = Destination(
        spec, "arn:topic", group_addresses=(("a", "qa"), ("b", "qb")),
        dead_letter_group_addresses=(("a", "qa-dlq"), ("b", "qb-dlq")),
    )  # fmt: skip
    assert destination.address_for("b") == "qb"
    assert destination.dead_letter.address_for("a") == "qa-dlq"
    assert destination.dead_letter.address_for("b") == "qb-dlq"
