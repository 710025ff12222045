"""The two saga workloads: ``saga`` (choreography) and ``saga-orchestrated``.

Two workload kinds rather than a ``style`` knob: a flow declares its topics, entry topic and
services statically, and the styles differ in all three (the orchestrated one has an extra
service and inbox, and orders enter through it). Both share the config, the services' business
logic, the generator and the checks, so one suite can run them side by side and compare."""

import random
from typing import ClassVar

from harness.checkers.verdict import Verdict
from harness.flows.api import Flow, FlowConfig, FlowState, Service, Topic
from workloads.saga import choreography, orchestration
from workloads.saga.checks import check_all
from workloads.saga.messages import SagaConfig, generate_order, order_created

PARTICIPANT_TOPICS = (Topic("inventory"), Topic("payment"), Topic("shipping"), Topic("order"))


class SagaFlow(Flow):
    """Choreography: orders enter at the Inventory service's inbox; ShipmentScheduled fans out
    to the Order and Inventory services (``shipments``) where the broker can."""

    kind: ClassVar[str] = "saga"
    config_model: ClassVar[type[FlowConfig]] = SagaConfig
    entry_topic: ClassVar[str] = "inventory"
    topics: ClassVar[tuple[Topic, ...]] = (*PARTICIPANT_TOPICS, Topic(choreography.SHIPMENTS))
    services: ClassVar[tuple[type[Service], ...]] = choreography.SERVICES

    @classmethod
    def subscribers(cls, config: FlowConfig) -> dict[str, tuple[str, ...]]:
        """Without fan-out, nobody reads ``shipments``: its events go to the inboxes."""
        found = super().subscribers(config)
        if config.fan_out == "off":
            found |= {topic: () for topic in choreography.FAN_OUT_INBOXES if topic in found}
        return found

    @classmethod
    def generate(cls, config: FlowConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
        assert isinstance(config, SagaConfig)
        return order_created(generate_order(config, rng))

    @classmethod
    def check(cls, config: FlowConfig, state: FlowState) -> list[Verdict]:
        assert isinstance(config, SagaConfig)
        return check_all(config, state, [service.name for service in cls.services])


class OrchestratedSagaFlow(SagaFlow):
    """Orchestration: orders enter at the orchestrator's inbox."""

    kind: ClassVar[str] = "saga-orchestrated"
    entry_topic: ClassVar[str] = "orchestrator"
    topics: ClassVar[tuple[Topic, ...]] = (Topic("orchestrator"), *PARTICIPANT_TOPICS)
    services: ClassVar[tuple[type[Service], ...]] = orchestration.SERVICES
