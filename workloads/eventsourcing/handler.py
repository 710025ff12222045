"""The command handler: loads the accounts a command touches, decides, and appends the
resulting events with the expected version (optimistic concurrency).

The load runs in the runtime's read phase (``prepare``), so another handler process may append
to the same account before this one appends: the append then conflicts, and the handler reloads
(now inside its write transaction) and decides again. Every lost race is recorded with the
decision. A command already decided (a redelivery, or a publish retried after an unknown
outcome) is skipped, so no command is ever applied twice.
"""

import time
from typing import ClassVar

from sqlalchemy import Connection, MetaData

from harness.flows.api import Emit, Event, FlowConfig, PoisonError, Service
from workloads.eventsourcing.commands import (
    Command,
    EventSourcingConfig,
    MalformedCommandError,
    parse,
)
from workloads.eventsourcing.store import (
    STORE_METADATA,
    UNCHECKED_STORE_METADATA,
    AccountEvent,
    AccountState,
    ConflictError,
    EventType,
    append,
    decided,
    load,
    new_event,
    record_decision,
)

COMMANDS_TOPIC = "commands"
EVENTS_TOPIC = "account-events"
MAX_ATTEMPTS = 100
"""Lost races in a row before the handler gives up (the process then fails loudly)."""
Loaded = dict[str, AccountState]


def accounts_of(command: Command) -> list[str]:
    return [command.account] if command.to is None else [command.account, command.to]


def decide(
    command: Command, loaded: Loaded, command_id: str, command_ns: int
) -> tuple[str, list[AccountEvent]]:
    """The outcome (``accepted`` or ``rejected:<reason>``) and the events to append."""
    rejection = _rejection(command, loaded)
    if rejection is not None:
        return f"rejected:{rejection}", []
    account = loaded[command.account]
    if command.type == "transfer":
        assert command.to is not None
        return "accepted", [
            new_event(account, "transferred-out", -command.amount, command_id, command_ns),
            new_event(loaded[command.to], "transferred-in", command.amount, command_id, command_ns),
        ]
    kind, sign = SINGLE_EVENT[command.type]
    return "accepted", [new_event(account, kind, sign * command.amount, command_id, command_ns)]


SINGLE_EVENT: dict[str, tuple[EventType, int]] = {
    "open": ("opened", 0),
    "deposit": ("deposited", 1),
    "withdraw": ("withdrawn", -1),
}


def _rejection(command: Command, loaded: Loaded) -> str | None:
    account = loaded[command.account]
    if command.type == "open":
        return "exists" if account.version > 0 else None
    if account.version == 0:
        return "no-account"
    if command.type != "deposit" and account.balance < command.amount:
        return "insufficient-funds"
    if command.to is not None and loaded[command.to].version == 0:
        return "no-target"
    return None


class CommandHandler(Service):
    name: ClassVar[str] = "command-handler"
    topics: ClassVar[tuple[str, ...]] = (COMMANDS_TOPIC,)
    metadata: ClassVar[MetaData] = STORE_METADATA

    def __new__(cls, config: FlowConfig) -> "CommandHandler":
        """With ``version_check: false``, the handler of a store without the constraint."""
        unchecked = isinstance(config, EventSourcingConfig) and not config.version_check
        if cls is CommandHandler and unchecked:
            return super().__new__(UncheckedCommandHandler)
        return super().__new__(cls)

    @property
    def settings(self) -> EventSourcingConfig:
        assert isinstance(self.config, EventSourcingConfig)
        return self.config

    def prepare(self, db: Connection, event: Event) -> Loaded:
        loaded = {account: load(db, account) for account in accounts_of(_command(event))}
        if self.settings.decide_ms:
            time.sleep(self.settings.decide_ms / 1000)
        return loaded

    def handle(self, db: Connection, event: Event) -> list[Emit]:
        command = _command(event)
        loaded = event.prepared
        if not isinstance(loaded, dict):
            loaded = {account: load(db, account) for account in accounts_of(command)}
        lost: list[ConflictError] = []
        for _ in range(MAX_ATTEMPTS):
            if self.settings.command_dedup and decided(db, event.event_id):
                return []
            outcome, events = decide(command, loaded, event.event_id, event.intended_ns)
            if events:
                try:
                    append(db, events)
                except ConflictError as conflict:
                    lost.append(conflict)
                    loaded = {account: load(db, account) for account in accounts_of(command)}
                    continue
            record_decision(db, event.event_id, command=command, outcome=outcome, lost=lost)
            return [Emit(EVENTS_TOPIC, e.account, e.to_json()) for e in events]
        raise RuntimeError(f"{event.event_id}: lost {MAX_ATTEMPTS} appends in a row")


class UncheckedCommandHandler(CommandHandler):
    """Appends without the expected-version check (its store has no unique constraint): two
    handlers that loaded the same version both append it. Only for break-on-purpose tests."""

    metadata: ClassVar[MetaData] = UNCHECKED_STORE_METADATA


def _command(event: Event) -> Command:
    try:
        return parse(event.body)
    except MalformedCommandError as exc:
        raise PoisonError(str(exc)) from exc
