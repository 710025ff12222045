"""What the orchestrator hands to a flow's service process (as JSON)."""

from typing import Any

from harness.load.plan import DestinationPlan, RunShared
from harness.models import FrozenModel

DEAD_LETTER_SERVICE = "dead-letters"
"""The runtime's own service that reads a topic's dead-letter destination into a table."""
TOPIC_PARTITION_STRIDE = 10_000
"""Kafka partition ``p`` of the flow's topic number ``t`` is recorded as ``t * stride + p``, so
one history holds every topic without two partitions sharing a number."""
EMITTER_ID_BASE = 1 << 24
"""Producer ids of events emitted by services start here (the generator's are below)."""


class ServicePlan(FrozenModel):
    run: RunShared
    flow: str
    """The flow's workload kind (entry point name)."""
    params: dict[str, Any]
    """The flow's config, as validated from the suite."""
    service: str
    topic: str
    """The logical topic this process consumes (a service consuming several runs one process
    per topic and consumer)."""
    consumer_id: int
    """Unique within the run: recorded in the history, and owner of this process's outbox rows."""
    database_url: str
    topics: dict[str, DestinationPlan]
    """Every topic of the flow, by logical name, in the flow's order (history numbering)."""
    group: str | None = None
    """The group (subscription) this process reads its topic through: its service's own on a
    fan-out topic; None: the topic's ``group``."""
    dead_letter_of: str | None = None
    """For the dead-letter reader: the topic whose dead letters it reads."""
    poll_batch: int = 100
    durable_history: bool = False
    """Flush the history before each ack, so a SIGKILL loses no acked delivery."""
    outbox_owner: int | None = None
    """Whose outbox rows this process publishes: its own (None), or those of the killed
    process it replaces."""

    @property
    def owner(self) -> int:
        return self.consumer_id if self.outbox_owner is None else self.outbox_owner

    @property
    def emitter_id(self) -> int:
        """Producer id of the events it publishes: the outbox owner's, so that an event
        published again after a crash keeps its identity."""
        return EMITTER_ID_BASE + self.owner


def subscriber_name(topic: str, group: str) -> str:
    """The history's ``subscriber`` of a delivery on a fan-out topic: ``<topic>/<group>``."""
    return f"{topic}/{group}"


def handled_key(plan: "ServicePlan") -> str:
    """What a service process counts its handled events under in its progress line: its
    topic (or, for a dead-letter reader, the topic it reads the dead letters of); on a fan-out
    topic, each subscriber but the first (the one whose dead letters are read) under its
    ``subscriber_name``, so the drain waits for every subscriber."""
    if plan.dead_letter_of is not None:
        return plan.dead_letter_of
    if plan.group is None or plan.group == plan.topics[plan.topic].group:
        return plan.topic
    return subscriber_name(plan.topic, plan.group)


def partition_number(topic_index: int, partition: int | None) -> int:
    return -1 if partition is None else topic_index * TOPIC_PARTITION_STRIDE + partition
