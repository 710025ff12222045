"""The event-sourced account flow: the generator publishes account commands, the command
handler appends events with the expected version to its event store (published through the
runtime's transactional outbox), the projector folds them into a read model."""

import random
from typing import ClassVar

from harness.checkers.verdict import Verdict
from harness.flows.api import Flow, FlowConfig, FlowState, Service, Topic
from workloads.eventsourcing.checks import check_all
from workloads.eventsourcing.commands import EventSourcingConfig, generate
from workloads.eventsourcing.handler import COMMANDS_TOPIC, EVENTS_TOPIC, CommandHandler
from workloads.eventsourcing.projector import Projector


class EventSourcingFlow(Flow):
    kind: ClassVar[str] = "eventsourcing"
    config_model: ClassVar[type[FlowConfig]] = EventSourcingConfig
    entry_topic: ClassVar[str] = COMMANDS_TOPIC
    topics: ClassVar[tuple[Topic, ...]] = (Topic(COMMANDS_TOPIC), Topic(EVENTS_TOPIC))
    services: ClassVar[tuple[type[Service], ...]] = (CommandHandler, Projector)

    @classmethod
    def generate(cls, config: FlowConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
        assert isinstance(config, EventSourcingConfig)
        return generate(config, key_id, seq, rng)

    @classmethod
    def check(cls, config: FlowConfig, state: FlowState) -> list[Verdict]:
        assert isinstance(config, EventSourcingConfig)
        return check_all(config, state, CommandHandler.name, Projector.name)
