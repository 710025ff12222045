"""The aggregator service: per-user counters and revenue, updated once per event id."""

from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import postgresql, sqlite

from harness.flows.api import Emit, Event, PoisonError, Service
from workloads.tracker.events import EVENT_TYPES, MalformedEventError, TrackerConfig, parse

METADATA = MetaData()
AGGREGATES = Table(
    "user_aggregates",
    METADATA,
    Column("user", String(100), primary_key=True),
    *(Column(kind, Integer, nullable=False, default=0) for kind in EVENT_TYPES),
    Column("revenue_cents", BigInteger, nullable=False, default=0),
)
PROCESSED = Table(
    "processed_events",
    METADATA,
    Column("event_id", String(100), primary_key=True),
)


class Aggregator(Service):
    name: ClassVar[str] = "aggregator"
    topics: ClassVar[tuple[str, ...]] = ("clicks",)
    metadata: ClassVar[MetaData] = METADATA

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        assert isinstance(self.config, TrackerConfig)
        try:
            click = parse(event.body)
        except MalformedEventError as exc:
            if not self.config.dead_letter_poison:
                return []
            raise PoisonError(str(exc)) from exc
        # Single statements (insert-or-skip, insert-or-add), so that consumers handling the
        # same event or a user's first events at the same time cannot collide.
        dialect_insert = postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert
        if self.config.dedup:
            first_time = db.execute(
                dialect_insert(PROCESSED)
                .values(event_id=event.event_id)
                .on_conflict_do_nothing(index_elements=[PROCESSED.c.event_id])
            )
            if first_time.rowcount == 0:
                return []
        values = dict.fromkeys(EVENT_TYPES, 0) | {"revenue_cents": 0}
        values[click.type] = 1
        values["revenue_cents"] = click.amount_cents
        statement = dialect_insert(AGGREGATES).values(user=click.user, **values)
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[AGGREGATES.c.user],
                set_={
                    click.type: AGGREGATES.c[click.type] + 1,
                    "revenue_cents": AGGREGATES.c.revenue_cents + click.amount_cents,
                },
            )
        )
        return []
