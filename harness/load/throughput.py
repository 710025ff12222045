"""The raw-throughput workload (OpenMessaging-style): keyed messages of a fixed size at an
open-loop rate, N producers and M consumer processes, warm-up, optional backlog build-and-drain.

The engine's built-in workload (kind ``throughput`` in the ``brokerbench.workloads`` entry point
group) and the load shape every flow's config extends (``harness.flows.api.FlowConfig``). The
max-rate search's parameters are here too (a suite's ``search:``); the search itself runs in
``harness.run.search``."""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from harness.drivers.replication import Replication
from harness.history.envelope import HEADER_SIZE
from harness.load.keys import KeyDistribution
from harness.load.plan import MAX_RATE, MAX_SECONDS, StepPlan
from harness.models import FrozenModel

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE)]
Duration = Annotated[float, Field(gt=0, le=MAX_SECONDS)]


class SearchConfig(FrozenModel):
    """The max-rate search's parameters (see ``harness.run.search``)."""

    start: Rate = 1000.0
    factor: Annotated[float, Field(gt=1)] = 2.0
    max_rate: Rate = 1_000_000.0
    precision: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """Stop bisecting when the bounds are within this fraction of each other."""
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05
    backlog_seconds: Duration = 1.0


class ThroughputConfig(FrozenModel):
    partitions: Annotated[int, Field(ge=1, le=1000)] = 6
    """Kafka partitions (other brokers have none)."""
    keys: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    key_distribution: KeyDistribution = "round_robin"
    zipf_exponent: Annotated[float, Field(gt=0)] = 1.1
    message_size: Annotated[int, Field(ge=HEADER_SIZE, le=1_000_000)] = 200
    producers: Annotated[int, Field(ge=1, le=1000)] = 1
    processes: Annotated[int, Field(ge=1, le=64)] = 1
    """Producer OS processes (each runs its share of the producers as Locust users)."""
    consumers: Annotated[int, Field(ge=1, le=64)] = 1
    rate: Rate | None = None
    """Messages per second across all producers, for ``duration`` seconds."""
    duration: Duration = 10.0
    steps: list[StepPlan] | None = None
    """Instead of rate and duration: successive (rate, seconds) steps."""
    warmup: Seconds = 2.0
    """Leading seconds excluded from throughput and latency figures (not from the checks)."""
    drain_timeout: Duration = 60.0
    ordered: bool = False
    """SQS FIFO queue / Pub/Sub ordering keys; Kafka orders per partition anyway."""
    backlog_build: Seconds = 0.0
    """Start the consumers this many seconds after the producers (backlog build-and-drain)."""
    search: SearchConfig | None = None
    """Instead of rate or steps: find the highest sustained rate (one run of ``duration`` per
    probed rate)."""
    idempotent_producer: bool | None = None
    """Kafka's idempotent producer (``enable.idempotence``): unset follows the Kafka clients'
    default (on, with ``acks=all``, unless the target's ``producer_config`` says otherwise);
    ``false`` turns it off, to show the duplicate publishes a client retry makes. Other
    brokers ignore it."""
    redelivery_timeout: Annotated[int, Field(ge=10, le=600)] | None = None
    """Seconds before a message a consumer received but never acknowledged (a killed
    consumer's, say) is delivered again: the SQS visibility timeout / Pub/Sub ack deadline of
    the queues and subscriptions the run creates. Unset keeps the target's (30 s by default).
    Short runs that kill consumers drain sooner with a short one; a consumer slower than it
    sees redeliveries. Kafka has no such timeout and ignores it."""
    replication: Replication | None = None
    """Kafka's replication settings (``factor``, ``min_insync_replicas``, ``acks``,
    ``unclean_leader_election``: harness/drivers/replication.py); other brokers ignore them."""

    payload_schema: Literal["none", "avro"] = "none"
    """``avro``: each message's body (after brokerbench's header) is an Avro record in the
    Confluent wire format, its schema registered with the schema registry; consumers decode
    every body, nack what they cannot decode (dead-lettered at once) and the ``undecodable``
    check counts it. The schema faults (``schema-roll``, ``schema-bypass``) need it. Raw
    throughput on Kafka only (docs/schema-registry.md)."""
    registry_url: str | None = None
    """The registry's Confluent-compatible API; default: the local stack's
    (``brokerbench up --only registry``, on ``ports.registry``)."""

    @model_validator(mode="after")
    def _acks_the_idempotent_producer_can_keep(self) -> Self:
        acks = None if self.replication is None else self.replication.acks
        if self.idempotent_producer and acks not in (None, "all"):
            raise ValueError(
                f"the idempotent producer needs acks: all, not {acks}: remove "
                "idempotent_producer: true or replication.acks"
            )
        return self

    @model_validator(mode="after")
    def _one_load_shape(self) -> Self:
        shapes = sum(shape is not None for shape in (self.rate, self.steps, self.search))
        if shapes != 1:
            raise ValueError("give exactly one of rate (with duration), steps or search")
        if self.producers < self.processes:
            raise ValueError("producers must be at least processes (each process runs >= 1)")
        return self

    def load_steps(self) -> list[StepPlan]:
        if self.steps is not None:
            return self.steps
        assert self.rate is not None
        return [StepPlan(rate=self.rate, seconds=self.duration)]
