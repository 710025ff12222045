"""The archive service: every click event as it was published, once per event id.

It consumes the ``clicks`` topic beside the aggregator, as a second subscriber (fan-out: a
Kafka consumer group, a Pub/Sub subscription, an SQS queue behind the SNS topic), so it sees
every event the aggregator sees, malformed ones included (it parses nothing: an archive keeps
what arrived). On a broker without fan-out (ElasticMQ) it does not run (``fan_out: off``)."""

from typing import ClassVar

from sqlalchemy import Column, Connection, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite

from harness.flows.api import Emit, Event, Service

METADATA = MetaData()
ARCHIVED = Table(
    "archived_events",
    METADATA,
    Column("event_id", String(100), primary_key=True),
    Column("body", LargeBinary, nullable=False),
)


class Archive(Service):
    name: ClassVar[str] = "archive"
    topics: ClassVar[tuple[str, ...]] = ("clicks",)
    metadata: ClassVar[MetaData] = METADATA

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        dialect_insert = postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert
        db.execute(  # insert-or-skip: a redelivery changes nothing
            dialect_insert(ARCHIVED)
            .values(event_id=event.event_id, body=event.body)
            .on_conflict_do_nothing(index_elements=[ARCHIVED.c.event_id])
        )
        return []
