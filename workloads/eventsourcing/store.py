"""The event store: an append-only table of account events, one row per (account, version).

Optimistic concurrency: a writer loads an account (its version and balance), decides, and
appends version + 1. The unique (account, version) constraint lets exactly one writer win each
expected version; every other gets a ``ConflictError`` and must reload and decide again. Beside
the events, the store records every decision on a command (so a redelivered command is not
applied twice) and every conflict a writer lost (the checks verify each was real).
"""

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from workloads.eventsourcing.commands import Command

EventType = Literal["opened", "deposited", "withdrawn", "transferred-out", "transferred-in"]
EVENT_TYPES: tuple[EventType, ...] = (
    "opened",
    "deposited",
    "withdrawn",
    "transferred-out",
    "transferred-in",
)
VERSION_CONSTRAINT = "one_event_per_account_version"


def _tables(metadata: MetaData, *, unique_versions: bool) -> tuple[Table, Table, Table]:
    version_rule = (
        UniqueConstraint("account", "version", name=VERSION_CONSTRAINT)
        if unique_versions
        else Index("account_version", "account", "version")
    )
    events = Table(
        "account_events",
        metadata,
        Column("position", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, index=True),
        Column("account", String(100), nullable=False),
        Column("version", Integer, nullable=False),
        Column("expected_version", Integer, nullable=False),
        Column("type", String(20), nullable=False),
        Column("delta", BigInteger, nullable=False),  # signed cents: balance = sum of deltas
        Column("command_id", String(100), nullable=False, index=True),
        Column("command_ns", BigInteger, nullable=False),
        version_rule,
    )
    decisions = Table(
        "command_decisions",
        metadata,
        Column("decision", Integer, primary_key=True, autoincrement=True),
        Column("command_id", String(100), nullable=False, index=True),
        Column("account", String(100), nullable=False),
        Column("type", String(20), nullable=False),
        Column("outcome", String(40), nullable=False),  # accepted, or rejected:<reason>
        Column("conflicts", Integer, nullable=False),
    )
    conflicts = Table(
        "append_conflicts",
        metadata,
        Column("row", Integer, primary_key=True, autoincrement=True),
        Column("command_id", String(100), nullable=False),
        Column("account", String(100), nullable=False),
        Column("expected_version", Integer, nullable=False),
    )
    return events, decisions, conflicts


STORE_METADATA = MetaData()
EVENTS, DECISIONS, CONFLICTS = _tables(STORE_METADATA, unique_versions=True)
UNCHECKED_STORE_METADATA = MetaData()
"""The same tables without the unique (account, version) constraint: for showing what the
checks catch when a handler appends without the expected-version check."""
_tables(UNCHECKED_STORE_METADATA, unique_versions=False)


@dataclass(frozen=True)
class AccountState:
    account: str
    version: int
    """0: the account was never opened."""
    balance: int


@dataclass(frozen=True)
class AccountEvent:
    """One stored event, as published on the account-events topic."""

    event_id: str
    account: str
    version: int
    expected_version: int
    type: EventType
    delta: int
    command_id: str
    command_ns: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> "AccountEvent":
        return cls(**json.loads(body))


class ConflictError(Exception):
    """Another writer appended the expected version first."""

    def __init__(self, account: str, expected_version: int) -> None:
        super().__init__(f"{account} is past version {expected_version}")
        self.account = account
        self.expected_version = expected_version


def load(db: Connection, account: str) -> AccountState:
    """Fold the account's events (the database sums them)."""
    version, balance = db.execute(
        select(
            func.coalesce(func.max(EVENTS.c.version), 0),
            func.coalesce(func.sum(EVENTS.c.delta), 0),
        ).where(EVENTS.c.account == account)
    ).one()
    return AccountState(account, int(version), int(balance))


def new_event(
    state: AccountState, kind: EventType, delta: int, command_id: str, command_ns: int
) -> AccountEvent:
    """The event that takes ``state`` (as loaded) one version further."""
    return AccountEvent(
        event_id=uuid.uuid4().hex,
        account=state.account,
        version=state.version + 1,
        expected_version=state.version,
        type=kind,
        delta=delta,
        command_id=command_id,
        command_ns=command_ns,
    )


def append(db: Connection, events: list[AccountEvent]) -> None:
    """Append all of ``events`` or none (a savepoint: a conflict leaves the surrounding
    transaction usable for a reload and a retry)."""
    try:
        with db.begin_nested():
            db.execute(insert(EVENTS), [asdict(event) for event in events])
    except IntegrityError as exc:
        for event in events:
            current = load(db, event.account)
            if current.version != event.expected_version:
                raise ConflictError(event.account, event.expected_version) from exc
        raise


def decided(db: Connection, command_id: str) -> bool:
    found = db.execute(
        select(DECISIONS.c.decision).where(DECISIONS.c.command_id == command_id).limit(1)
    ).first()
    return found is not None


def record_decision(
    db: Connection,
    command_id: str,
    *,
    command: Command,
    outcome: str,
    lost: list[ConflictError],
) -> None:
    """The decision on a command, with the races it lost on the way."""
    db.execute(
        insert(DECISIONS),
        {
            "command_id": command_id,
            "account": command.account,
            "type": command.type,
            "outcome": outcome,
            "conflicts": len(lost),
        },
    )
    if lost:
        db.execute(
            insert(CONFLICTS),
            [
                {
                    "command_id": command_id,
                    "account": c.account,
                    "expected_version": c.expected_version,
                }
                for c in lost
            ],
        )
