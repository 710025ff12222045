"""What a business flow is made of, and what the runtime does for it.

A flow (tracker, saga, eventsourcing) declares:

- its **topics** (logical destinations; each becomes a Kafka topic, an SQS queue or a Pub/Sub
  topic with a subscription per consuming service). A topic several services consume (their
  ``topics``) is a **fan-out**: each of them gets every event, as a Kafka consumer group, a
  Pub/Sub subscription, or on SQS an SNS topic with a queue per service (moto, AWS). On a
  broker without fan-out (ElasticMQ) ``fan_out: auto`` keeps only the topic's first consuming
  service (``Flow.subscribers``), and ``fan_out: on`` is refused at plan time;
- its **entry topic**, fed by the open-loop generator (Locust users): ``generate`` turns the
  identity of an entry event (key, per-key sequence, seeded random source) into its body,
  deterministically, so that checkers can regenerate every event from the history alone;
- its **services**: each consumes some topics, handles each event in one database transaction
  (``handle``; idempotent by event id where the flow requires it) and may emit events to other
  topics. The runtime writes emitted events to an outbox in the same transaction and publishes
  them after commit (transactional outbox), so a crash between commit and publish delays an
  event but never drops it;
- its **invariant checks**: pure functions of the recorded history and the services'
  databases at quiescence, returning verdicts like the log-level checkers.
"""

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator
from sqlalchemy import Connection, MetaData

from harness.checkers.verdict import Verdict
from harness.history.envelope import HEADER_SIZE
from harness.load.throughput import ThroughputConfig

Semantics = Literal["at-least-once", "exactly-once"]
FanOutMode = Literal["auto", "on", "off"]


class FlowConfig(ThroughputConfig):
    """The load shape of the raw-throughput workload (rate or steps, producers, consumers per
    service, warm-up, drain) plus what every flow shares. Bodies are JSON: no padding."""

    message_size: Annotated[int, Field(ge=HEADER_SIZE, le=1_000_000)] = HEADER_SIZE
    key_distribution: Literal["round_robin", "uniform", "zipf"] = "zipf"
    semantics: Semantics = "at-least-once"
    """At-least-once with idempotent services (the default) or the broker's exactly-once."""
    database: str | None = None
    """A SQLAlchemy URL (``postgresql+psycopg://...``) for the services' state; default: one
    SQLite file per service in the run directory."""
    max_deliveries: Annotated[int, Field(ge=2, le=100)] = 5
    """Deliveries of an unprocessable event before the broker (or client) dead-letters it."""
    fan_out: FanOutMode = "auto"
    """Topics several services consume: ``on`` fans them out (refused at plan time on a broker
    that cannot: ElasticMQ), ``off`` keeps only each topic's first consuming service, ``auto``
    (the default) is ``on`` where the broker can fan out and ``off`` elsewhere; the suite
    resolves it per broker, so result.json records which ran."""
    redeliver_rate: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    """Fraction of handled events nacked after their transaction committed, as if the consumer
    died before acking: the broker delivers them again (at most once more per consumer), and
    idempotent handlers must make that harmless. For demonstrations and tests."""

    @model_validator(mode="after")
    def _exactly_once_keeps_the_idempotent_producer(self) -> Self:
        if self.semantics == "exactly-once" and self.idempotent_producer is False:
            raise ValueError(
                "exactly-once needs the idempotent producer: remove idempotent_producer: false "
                "(or declare semantics: at-least-once)"
            )
        acks = None if self.replication is None else self.replication.acks
        if self.semantics == "exactly-once" and acks not in (None, "all"):
            raise ValueError(
                f"exactly-once needs acks: all, not {acks}: remove replication.acks "
                "(or declare semantics: at-least-once)"
            )
        return self


@dataclass(frozen=True)
class Topic:
    name: str
    dead_letter: bool = False
    """Nacked events go to a dead-letter destination after ``max_deliveries``."""


@dataclass(frozen=True)
class Event:
    """One delivered event, as a service sees it."""

    topic: str
    key: str
    event_id: str
    """Unique per published event (the envelope's producer, key and sequence)."""
    body: bytes
    attempt: int
    """Delivery attempt where the broker counts them (1 = first), else 0."""
    intended_ns: int
    prepared: object = None
    """What the service's ``prepare`` returned for this delivery (None without one)."""


@dataclass(frozen=True)
class Emit:
    """An event a handler asks to publish once its transaction commits."""

    topic: str
    key: str
    body: bytes


class PoisonError(Exception):
    """Raised by a handler for an event it can never process: the runtime rolls the
    transaction back and nacks the event, so the broker dead-letters it."""


class Service(ABC):
    """A consumer with its own database. One instance per consumer process."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    metadata: ClassVar[MetaData]
    """The service's tables (SQLAlchemy Core), created once per run in its own database."""

    def __init__(self, config: FlowConfig) -> None:
        self.config = config

    def prepare(self, db: Connection, event: Event) -> object:
        """Optional read phase, in its own short transaction before ``handle``'s; the result
        reaches ``handle`` as ``event.prepared``. For optimistic concurrency (e.g. loading an
        event-sourced aggregate): other processes may write between the two transactions, so
        ``handle`` must verify what it relies on (e.g. append with the version read here).
        Only services that override it pay for the extra transaction."""
        return None

    @abstractmethod
    def handle(self, db: Connection, event: Event) -> list[Emit]:
        """Apply ``event`` inside the open transaction ``db``; return what to emit."""


@dataclass
class FlowState:
    """What a flow's checks read: the history's entry sends and every service's database."""

    run_id: int
    databases: dict[str, Connection]
    """Service name -> an open connection to its database (the dead-letter reader's included,
    under ``dead-letters``)."""
    sends: list[tuple[int, int, int, str]]
    """Entry events whose send was acknowledged (``ok``) or of unknown outcome (``unknown``):
    (producer_id, key_id, seq, outcome); failed sends are left out."""
    extra: dict[str, Any] = field(default_factory=dict)


class Flow(ABC):
    """A business flow (registered under the ``brokerbench.workloads`` entry point group)."""

    kind: ClassVar[str]
    config_model: ClassVar[type[FlowConfig]]
    entry_topic: ClassVar[str]
    topics: ClassVar[tuple[Topic, ...]]
    services: ClassVar[tuple[type[Service], ...]]

    @classmethod
    @abstractmethod
    def generate(cls, config: FlowConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
        """The body of entry event (key_id, seq); only ``rng`` may supply randomness."""

    @classmethod
    @abstractmethod
    def check(cls, config: FlowConfig, state: FlowState) -> list[Verdict]:
        """The flow's invariants at quiescence."""

    @classmethod
    def subscribers(cls, config: FlowConfig) -> dict[str, tuple[str, ...]]:
        """Topic -> the services that consume it, in the flow's service order. Several are a
        fan-out (each gets every event); with ``fan_out: off`` only the first consumes it and
        a service left without a topic does not run. The first one's group also reads the
        topic's dead letters."""
        consumers = cls._consumers()
        if config.fan_out == "off":
            return {topic: names[:1] for topic, names in consumers.items()}
        return consumers

    @classmethod
    def fans_out(cls) -> bool:
        """Whether some topic has several consuming services (whatever the config)."""
        return any(len(names) > 1 for names in cls._consumers().values())

    @classmethod
    def _consumers(cls) -> dict[str, tuple[str, ...]]:
        consumers: dict[str, tuple[str, ...]] = {topic.name: () for topic in cls.topics}
        for service in cls.services:
            for topic in service.topics:
                consumers[topic] = (*consumers[topic], service.name)
        return consumers


def event_rng(run_id: int, producer_id: int, key_id: int, seq: int) -> random.Random:
    """The random source of one entry event: the same in the generator and in the checkers."""
    return random.Random(f"{run_id}:{producer_id}:{key_id}:{seq}")


def event_id(producer_id: int, key_id: int, seq: int) -> str:
    return f"{producer_id}-{key_id}-{seq}"
