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
    insert,
    select,
    update,
)

from workloads.flows.api import Emit, Event, PoisonError, Service
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
        if self.config.dedup:
            seen = db.execute(
                select(PROCESSED.c.event_id).where(PROCESSED.c.event_id == event.event_id)
            ).first()
            if seen is not None:
                return []
            db.execute(insert(PROCESSED), {"event_id": event.event_id})
        row = db.execute(select(AGGREGATES).where(AGGREGATES.c.user == click.user)).first()
        if row is None:
            values = dict.fromkeys(EVENT_TYPES, 0) | {"revenue_cents": 0}
            values[click.type] = 1
            values["revenue_cents"] = click.amount_cents
            db.execute(insert(AGGREGATES), {"user": click.user, **values})
        else:
            db.execute(
                update(AGGREGATES)
                .where(AGGREGATES.c.user == click.user)
                .values(
                    {
                        click.type: AGGREGATES.c[click.type] + 1,
                        "revenue_cents": AGGREGATES.c.revenue_cents + click.amount_cents,
                    }
                )
            )
        return []
