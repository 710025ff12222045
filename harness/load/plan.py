"""What the orchestrator hands to each load process (as JSON): one run's shared facts plus the
process's own share."""

from typing import Any

from pydantic import Field

from harness.drivers.base import DeadLetterPolicy, DestinationSpec
from harness.drivers.replication import Replication
from harness.load.keys import KeyDistribution
from harness.load.schedule import Schedule, Step
from harness.models import FrozenModel
from harness.settings import Settings

END_GRACE_SECONDS = 1.0
"""A producer may finish its schedule this late; what is still unsent then is ``not_sent``
(the run is bounded: it ends at the schedule's end plus this, plus the drain)."""
FLUSH_SECONDS = 60.0
"""How long a stopping producer waits for its sends' outcomes (then they are unknown)."""


class DestinationPlan(FrozenModel):
    name: str
    partitions: int = 1
    ordered: bool = False
    group: str = "default"
    """The group that reads the destination (a fan-out's first: it also reads the dead
    letters, and the lag probe watches it)."""
    groups: tuple[str, ...] = ()
    """A fan-out's groups, each of which gets every message (empty: ``group`` alone)."""
    max_deliveries: int | None = None
    exactly_once: bool = False
    idempotent_producer: bool | None = None
    redelivery_timeout: int | None = None
    replication: Replication | None = None

    def spec(self) -> DestinationSpec:
        dead_letter = None if self.max_deliveries is None else DeadLetterPolicy(self.max_deliveries)
        return DestinationSpec(
            self.name,
            partitions=self.partitions,
            ordered=self.ordered,
            groups=self.groups or (self.group,),
            dead_letter=dead_letter,
            exactly_once=self.exactly_once,
            idempotent_producer=self.idempotent_producer,
            redelivery_timeout=self.redelivery_timeout,
            replication=self.replication,
        )


MAX_RATE = 100_000_000.0
"""Messages per second: far beyond what one harness sends, low enough that send times in
nanoseconds stay distinct integers."""
MAX_SECONDS = 7 * 24 * 3600.0
"""Any one duration of a run (a week): a longer one would overflow the nanosecond schedule."""


class StepPlan(FrozenModel):
    rate: float = Field(ge=0, le=MAX_RATE)
    seconds: float = Field(gt=0, le=MAX_SECONDS)


class RunShared(FrozenModel):
    """Facts every process of one run shares."""

    run_dir: str
    run_id: int
    target: str
    producers_via_proxy: bool = False
    consumers_via_proxy: bool = False
    settings: Settings
    destination: DestinationPlan


class ProducerPlan(FrozenModel):
    run: RunShared
    process_index: int
    first_producer: int
    """Producer ids of this process: first_producer .. first_producer + producers - 1."""
    producers: int
    total_producers: int
    start_ns: int | None = None
    """Wall-clock time the schedule starts (the same for every producer process); None: the
    process connects, prints a ``ready`` line and reads ``start <ns>`` from its stdin."""
    steps: list[StepPlan]
    message_size: int
    keys: int
    key_distribution: KeyDistribution = "round_robin"
    zipf_exponent: float = 1.1
    flow: str | None = None
    """A business flow's workload kind: its generator makes each message's body."""
    flow_params: dict[str, Any] = Field(default_factory=dict)
    schema_bodies: bool = False
    """Bodies are Avro records through the registry named by the run's schema control file
    (``harness/schemas/evolution.py``; a workload's ``payload_schema: avro``)."""

    def schedule(self) -> Schedule:
        return Schedule(tuple(Step(step.rate, step.seconds) for step in self.steps))


class ConsumerPlan(FrozenModel):
    run: RunShared
    consumer_id: int
    poll_batch: int = 100
    durable_history: bool = False
    """Flush the history before each ack, so a SIGKILL loses no acked delivery (chaos runs
    that kill consumers)."""
    schema_bodies: bool = False
    """Decode every body with the registry (``harness/schemas/evolution.py``): a body that
    cannot be decoded is nacked (the destination dead-letters it at once) and recorded."""
    dead_letter_reader: bool = False
    """Read the run's dead-letter destination instead, recording each dead letter as an
    event (its deliveries are not the run's receives)."""
