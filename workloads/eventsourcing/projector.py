"""The read-model projector: folds the account-events stream into a denormalised view.

Each account's row carries a checkpoint, the last version applied. An event at a version
already applied is skipped (redelivery or duplicate publish: idempotent); an event that arrives
before its predecessor (two handlers' outboxes publish independently, and SQS standard or
Pub/Sub without ordering keys promise no order anyway) is buffered in ``pending_events`` and
applied when the gap fills, all in the delivery's transaction. Buffering rather than nacking
keeps the broker out of it: a nack would rewind a whole Kafka partition. Every step is logged
(``projection_log``), so the checks can verify that checkpoints only move forward.
"""

import time
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from harness.flows.api import Emit, Event, PoisonError, Service
from workloads.eventsourcing.commands import EventSourcingConfig
from workloads.eventsourcing.handler import EVENTS_TOPIC
from workloads.eventsourcing.store import AccountEvent

PROJECTION_METADATA = MetaData()
COUNTERS = ("deposited", "withdrawn", "transferred_in", "transferred_out")
"""Cents moved per kind (all positive), besides the balance."""
BALANCES = Table(
    "account_balances",
    PROJECTION_METADATA,
    Column("account", String(100), primary_key=True),
    Column("checkpoint", Integer, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("events", Integer, nullable=False),
    *(Column(counter, BigInteger, nullable=False) for counter in COUNTERS),
)
PENDING = Table(
    "pending_events",
    PROJECTION_METADATA,
    Column("account", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", LargeBinary, nullable=False),
)
LOG = Table(
    "projection_log",
    PROJECTION_METADATA,
    Column("row", Integer, primary_key=True, autoincrement=True),
    Column("account", String(100), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("step", String(10), nullable=False),  # applied, skipped (seen) or buffered (early)
    Column("checkpoint_before", Integer, nullable=False),
    Column("checkpoint_after", Integer, nullable=False),
    Column("command_ns", BigInteger, nullable=False),
    Column("at_ns", BigInteger, nullable=False),
)
COUNTER_OF = {
    "deposited": "deposited",
    "withdrawn": "withdrawn",
    "transferred-in": "transferred_in",
    "transferred-out": "transferred_out",
}


def project(db: Connection, event: AccountEvent, *, version_check: bool = True) -> None:
    """Apply one delivered event to the read model (inside the caller's transaction)."""
    checkpoint = _lock_account(db, event.account)
    if not version_check:
        _apply(db, event, checkpoint)
        return
    if event.version <= checkpoint:
        _log(db, event, "skipped", checkpoint, checkpoint)
        return
    if event.version > checkpoint + 1:
        waiting = db.execute(
            select(PENDING.c.version).where(
                PENDING.c.account == event.account, PENDING.c.version == event.version
            )
        ).first()
        if waiting is None:
            db.execute(
                insert(PENDING),
                {"account": event.account, "version": event.version, "body": event.to_json()},
            )
        _log(db, event, "buffered", checkpoint, checkpoint)
        return
    checkpoint = _apply(db, event, checkpoint)
    while True:
        successor = db.execute(
            select(PENDING.c.body).where(
                PENDING.c.account == event.account, PENDING.c.version == checkpoint + 1
            )
        ).first()
        if successor is None:
            break
        db.execute(
            delete(PENDING).where(
                PENDING.c.account == event.account, PENDING.c.version == checkpoint + 1
            )
        )
        checkpoint = _apply(db, AccountEvent.from_json(successor.body), checkpoint)


def _lock_account(db: Connection, account: str) -> int:
    """The account's checkpoint, its row locked for this transaction (created at 0 if new; a
    concurrent projector creating it too is harmless)."""
    query = select(BALANCES.c.checkpoint).where(BALANCES.c.account == account).with_for_update()
    row = db.execute(query).first()
    if row is None:
        try:
            with db.begin_nested():
                db.execute(
                    insert(BALANCES),
                    {"account": account, "checkpoint": 0, "balance": 0, "events": 0}
                    | dict.fromkeys(COUNTERS, 0),
                )
        except IntegrityError:
            pass  # another projector created it first
        row = db.execute(query).one()
    return int(row.checkpoint)


def _apply(db: Connection, event: AccountEvent, checkpoint: int) -> int:
    """Fold ``event`` into its account's row; the new checkpoint."""
    after = max(checkpoint, event.version)
    changes: dict[str, object] = {
        "checkpoint": after,
        "balance": BALANCES.c.balance + event.delta,
        "events": BALANCES.c.events + 1,
    }
    counter = COUNTER_OF.get(event.type)
    if counter is not None:
        changes[counter] = BALANCES.c[counter] + abs(event.delta)
    db.execute(update(BALANCES).where(BALANCES.c.account == event.account).values(changes))
    _log(db, event, "applied", checkpoint, after)
    return after


def _log(db: Connection, event: AccountEvent, step: str, before: int, after: int) -> None:
    db.execute(
        insert(LOG),
        {
            "account": event.account,
            "version": event.version,
            "step": step,
            "checkpoint_before": before,
            "checkpoint_after": after,
            "command_ns": event.command_ns,
            "at_ns": time.time_ns(),
        },
    )


class Projector(Service):
    name: ClassVar[str] = "projector"
    topics: ClassVar[tuple[str, ...]] = (EVENTS_TOPIC,)
    metadata: ClassVar[MetaData] = PROJECTION_METADATA

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        assert isinstance(self.config, EventSourcingConfig)
        try:
            account_event = AccountEvent.from_json(event.body)
        except (ValueError, TypeError) as exc:
            raise PoisonError(str(exc)) from exc
        project(db, account_event, version_check=self.config.projector_version_check)
        return []
