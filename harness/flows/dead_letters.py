"""The runtime's dead-letter reader: a service that stores what a topic's dead-letter
destination received, so that a flow's checks can see every poison event ended there."""

from typing import ClassVar

from sqlalchemy import Column, Connection, Integer, LargeBinary, MetaData, String, Table, insert

from harness.flows.api import Emit, Event, Service
from harness.flows.plan import DEAD_LETTER_SERVICE

METADATA = MetaData()
DEAD_LETTERS = Table(
    "dead_letters",
    METADATA,
    Column("row", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("event_id", String(100), nullable=False, index=True),
    Column("key", String(200), nullable=False),
    Column("body", LargeBinary, nullable=False),
)


class DeadLetterReader(Service):
    name: ClassVar[str] = DEAD_LETTER_SERVICE
    topics: ClassVar[tuple[str, ...]] = ()
    metadata: ClassVar[MetaData] = METADATA

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        db.execute(
            insert(DEAD_LETTERS),
            {
                "topic": event.topic,
                "event_id": event.event_id,
                "key": event.key,
                "body": event.body,
            },
        )
        return []
