"""Which destinations and consuming processes one run has: one destination and N plain
consumers for raw throughput; for a business flow, a destination per topic and a service
process per (service, topic, consumer), plus dead-letter readers. A topic several services
consume (``Flow.subscribers``) is a fan-out destination with a group per service."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.flows.api import Flow, FlowConfig
from harness.flows.database import database_url
from harness.flows.plan import DEAD_LETTER_SERVICE, ServicePlan
from harness.load.plan import ConsumerPlan, DestinationPlan, RunShared
from harness.load.throughput import ThroughputConfig
from harness.models import FrozenModel
from harness.run.children import Role

CONSUMER_MODULE = "harness.load.consumer_process"
SERVICE_MODULE = "harness.flows.service_process"


@dataclass(frozen=True)
class ProcessPlan:
    """A load process to start: its role, its module (``python -m``) and its plan."""

    role: Role
    module: str
    plan: FrozenModel


def topic_plans(
    workload: str, config: ThroughputConfig, flow: type[Flow] | None, run_id: int
) -> dict[str, DestinationPlan]:
    """The run's destinations by logical name, the one the producers send to first."""
    prefix = f"bb-{workload}-{run_id:016x}"[:70]
    if flow is None:
        plan = DestinationPlan(
            name=prefix,
            partitions=config.partitions,
            ordered=config.ordered,
            idempotent_producer=config.idempotent_producer,
            redelivery_timeout=config.redelivery_timeout,
            replication=config.replication,
            # An undecodable body is nacked once and dead-lettered at once (never retried).
            max_deliveries=1 if config.payload_schema == "avro" else None,
        )
        return {workload: plan}
    assert isinstance(config, FlowConfig)
    ordered = [t for t in flow.topics if t.name == flow.entry_topic] + [
        t for t in flow.topics if t.name != flow.entry_topic
    ]
    subscribers = flow.subscribers(config)
    return {
        topic.name: DestinationPlan(
            name=f"{prefix}-{topic.name}",
            **_groups(subscribers[topic.name]),
            partitions=config.partitions,
            ordered=config.ordered,
            max_deliveries=config.max_deliveries if topic.dead_letter else None,
            exactly_once=config.semantics == "exactly-once",
            idempotent_producer=config.idempotent_producer,
            redelivery_timeout=config.redelivery_timeout,
            replication=config.replication,
        )
        for topic in ordered
    }


def _groups(services: tuple[str, ...]) -> dict[str, Any]:
    """A fan-out topic's groups: one per consuming service, named after it (the first also
    reads the dead letters); a topic with one consumer keeps the default group."""
    if len(services) < 2:
        return {}
    return {"group": services[0], "groups": services}


def subscription_group(
    flow: type[Flow], config: FlowConfig, service: str, topic: str
) -> str | None:
    """The group ``service`` reads ``topic`` through: its own on a fan-out topic, else None
    (the topic's default group)."""
    return service if len(flow.subscribers(config)[topic]) > 1 else None


def consumer_plans_of(
    config: ThroughputConfig,
    flow: type[Flow] | None,
    shared: RunShared,
    topics: dict[str, DestinationPlan],
    *,
    durable_history: bool = False,
) -> dict[str, ProcessPlan]:
    """Label (``consumer-<consumer id>``) -> what to start, for every consuming process: plain
    consumers for raw throughput; for a flow, each service's consumers per topic (in the flow's
    order: the entry service's first), then the dead-letter readers. ``durable_history``: each
    process flushes its history before acking (for runs that kill consumers)."""
    if flow is None:
        schema_bodies = config.payload_schema == "avro"
        consumers = {
            f"consumer-{index}": ProcessPlan(
                Role.CONSUMER,
                CONSUMER_MODULE,
                ConsumerPlan(
                    run=shared,
                    consumer_id=index,
                    durable_history=durable_history,
                    schema_bodies=schema_bodies,
                ),
            )
            for index in range(config.consumers)
        }
        if schema_bodies:  # the dead letters' reader, last
            reader = ConsumerPlan(run=shared, consumer_id=config.consumers, dead_letter_reader=True)
            consumers[f"consumer-{config.consumers}"] = ProcessPlan(
                Role.DEAD_LETTER_READER, CONSUMER_MODULE, reader
            )
        return consumers
    assert isinstance(config, FlowConfig)
    params = config.model_dump(mode="json")
    plans: dict[str, ProcessPlan] = {}

    def add(service: str, topic: str, dead_letter_of: str | None = None) -> None:
        consumer_id = len(plans)
        plans[f"consumer-{consumer_id}"] = ProcessPlan(
            Role.SERVICE if dead_letter_of is None else Role.DEAD_LETTER_READER,
            SERVICE_MODULE,
            ServicePlan(
                run=shared,
                flow=flow.kind,
                params=params,
                service=service,
                topic=topic,
                group=None
                if dead_letter_of is not None
                else subscription_group(flow, config, service, topic),
                consumer_id=consumer_id,
                database_url=database_url(
                    config.database, Path(shared.run_dir), service, shared.run_id
                ),
                topics=topics,
                dead_letter_of=dead_letter_of,
                durable_history=durable_history,
            ),
        )

    for service, topic, dead_letter_of in _service_slots(config, flow):
        add(service, topic, dead_letter_of)
    return plans


def _service_slots(config: FlowConfig, flow: type[Flow]) -> list[tuple[str, str, str | None]]:
    """(service, topic, topic whose dead letters it reads) of each service process, in slot
    order: every service's consumers per topic, then the dead-letter readers."""
    subscribers = flow.subscribers(config)
    slots: list[tuple[str, str, str | None]] = [
        (service.name, topic, None)
        for service in flow.services
        for topic in service.topics
        if service.name in subscribers[topic]
        for _ in range(config.consumers)
    ]
    slots += [(DEAD_LETTER_SERVICE, t.name, t.name) for t in flow.topics if t.dead_letter]
    return slots


def consumer_processes(config: ThroughputConfig, flow: type[Flow] | None) -> int:
    """How many consuming processes a run starts (``consumer-0`` .. ``consumer-<n-1>``)."""
    if flow is None:
        return config.consumers + (1 if config.payload_schema == "avro" else 0)
    assert isinstance(config, FlowConfig)
    return len(_service_slots(config, flow))


def replacement_plan(plan: FrozenModel, consumer_id: int) -> FrozenModel:
    """The plan of a process replacing a killed one: a new consumer id (its history shard and
    label), but a flow service keeps publishing its predecessor's outbox."""
    if isinstance(plan, ServicePlan):
        return plan.model_copy(update={"consumer_id": consumer_id, "outbox_owner": plan.owner})
    return plan.model_copy(update={"consumer_id": consumer_id})
