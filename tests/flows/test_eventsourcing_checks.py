"""The event-sourced account's store, handler, projector and checks on real SQLite databases,
without a broker: a state built by the real handler and projector is valid; each tampering is
caught by its own check and no other; concurrent writers of one expected version: one wins."""

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, MetaData, delete, insert, select, update

from harness.flows.api import Event, FlowState, event_id, event_rng
from harness.flows.database import create_tables, open_engine
from workloads.eventsourcing.checks import (
    check_all,
    check_appends,
    check_balances,
    read_log,
    read_records,
)
from workloads.eventsourcing.commands import EventSourcingConfig, account_name, generate
from workloads.eventsourcing.handler import EVENTS_TOPIC, CommandHandler
from workloads.eventsourcing.projector import (
    BALANCES,
    LOG,
    PROJECTION_METADATA,
    Projector,
    project,
)
from workloads.eventsourcing.store import (
    CONFLICTS,
    EVENTS,
    STORE_METADATA,
    UNCHECKED_STORE_METADATA,
    AccountEvent,
    AccountState,
    ConflictError,
    append,
    load,
    new_event,
)

RUN_ID = 7
ACCOUNTS = 5
COMMANDS_PER_ACCOUNT = 12
HANDLER, PROJECTOR = CommandHandler.name, Projector.name


def command_event(config: EventSourcingConfig, key_id: int, seq: int) -> Event:
    body = generate(config, key_id, seq, event_rng(RUN_ID, 0, key_id, seq))
    return Event("commands", account_name(key_id), event_id(0, key_id, seq), body, 1, seq)


class Flow:
    """The handler's and projector's databases, fed by the real services."""

    def __init__(self, tmp: Path, stack: ExitStack, store_metadata: MetaData) -> None:
        self.config = EventSourcingConfig(keys=ACCOUNTS, rate=10)
        self.store = self._open(tmp / "store.sqlite", stack, store_metadata)
        self.view = self._open(tmp / "view.sqlite", stack, PROJECTION_METADATA)
        self.sends: list[tuple[int, int, int, str]] = []
        self.stack = stack

    @staticmethod
    def _open(path: Path, stack: ExitStack, metadata: MetaData) -> Engine:
        engine = open_engine(f"sqlite:///{path}")
        stack.callback(engine.dispose)
        create_tables(engine, metadata)
        return engine

    def command(self, key_id: int, seq: int, config: EventSourcingConfig | None = None) -> None:
        handler = CommandHandler(config or self.config)
        event = command_event(self.config, key_id, seq)
        with self.store.begin() as db:
            emits = handler.handle(db, event)
        self.sends.append((0, key_id, seq, "ok"))
        for emit in emits:
            assert emit.topic == EVENTS_TOPIC
            delivered = Event(EVENTS_TOPIC, emit.key, "e", emit.body, 1, 0)
            with self.view.begin() as db:
                Projector(self.config).handle(db, delivered)

    def state(self) -> FlowState:
        databases: dict[str, Connection] = {
            HANDLER: self.stack.enter_context(self.store.connect()),
            PROJECTOR: self.stack.enter_context(self.view.connect()),
        }
        return FlowState(run_id=RUN_ID, databases=databases, sends=list(self.sends))

    def invalid(self) -> set[str]:
        with ExitStack() as scope:
            self.stack, outer = scope, self.stack
            try:
                verdicts = check_all(self.config, self.state(), HANDLER, PROJECTOR)
            finally:
                self.stack = outer
        return {v.name.removeprefix("eventsourcing-") for v in verdicts if v.valid is not True}


def build(tmp: Path, stack: ExitStack, metadata: MetaData = STORE_METADATA) -> Flow:
    flow = Flow(tmp, stack, metadata)
    for seq in range(COMMANDS_PER_ACCOUNT):  # every account opened before money moves
        for key_id in range(ACCOUNTS):
            flow.command(key_id, seq)
    return flow


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def test_a_state_built_by_the_real_services_is_valid(tmp_path: Path, stack: ExitStack) -> None:
    flow = build(tmp_path, stack)
    assert flow.invalid() == set()
    with flow.store.connect() as db:
        assert len(db.execute(select(EVENTS)).all()) > ACCOUNTS


def _last_event(db: Connection, kind: str | None = None) -> AccountEvent:
    query = select(EVENTS).order_by(EVENTS.c.position.desc())
    if kind is not None:
        query = query.where(EVENTS.c.type == kind)
    row = db.execute(query.limit(1)).one()
    fields = {name: getattr(row, name) for name in AccountEvent.__dataclass_fields__}
    return AccountEvent(**fields)


def test_a_duplicate_version_fails_only_the_version_checks(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack, UNCHECKED_STORE_METADATA)
    with flow.store.begin() as db:
        last = _last_event(db, "deposited")
        stale = AccountState(last.account, last.expected_version, 0)
        twin = new_event(stale, "deposited", last.delta, last.command_id + "x", 0)
        db.execute(insert(EVENTS), [twin.__dict__])
    assert flow.invalid() == {"versions", "appends"}


def test_a_missing_version_fails_only_the_versions_check(tmp_path: Path, stack: ExitStack) -> None:
    flow = build(tmp_path, stack)
    with flow.store.begin() as db:
        rows = db.execute(select(EVENTS).order_by(EVENTS.c.position)).all()
        last = {row.account: row.version for row in rows}
        inner = next(r for r in rows if r.type == "deposited" and r.version < last[r.account])
        db.execute(delete(EVENTS).where(EVENTS.c.position == inner.position))
    assert flow.invalid() == {"versions"}


def test_a_projection_that_applied_an_event_twice_fails_only_the_projection(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack)
    with flow.store.connect() as store:
        event = _last_event(store, "deposited")
    with flow.view.begin() as db:
        project(db, event, version_check=False)
    assert flow.invalid() == {"projection"}


def test_a_redelivered_event_changes_nothing(tmp_path: Path, stack: ExitStack) -> None:
    flow = build(tmp_path, stack)
    with flow.store.connect() as store:
        event = _last_event(store)
    with flow.view.begin() as db:
        project(db, event)
    assert flow.invalid() == set()


def test_a_checkpoint_moving_back_fails_only_the_checkpoints(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack)
    with flow.view.begin() as db:
        row = db.execute(select(LOG).order_by(LOG.c.row.desc()).limit(1)).one()
        db.execute(
            insert(LOG),
            {"account": row.account, "version": 1, "step": "applied",
             "checkpoint_before": row.checkpoint_after, "checkpoint_after": 1,
             "command_ns": 0, "at_ns": 0},
        )  # fmt: skip
        db.execute(
            insert(LOG),
            {"account": row.account, "version": 1, "step": "applied",
             "checkpoint_before": 1, "checkpoint_after": row.checkpoint_after,
             "command_ns": 0, "at_ns": 0},
        )  # fmt: skip
    assert flow.invalid() == {"checkpoints"}


def test_a_conflict_without_a_winner_fails_only_the_appends_check(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack)
    with flow.store.begin() as db:
        last = _last_event(db)
        db.execute(
            insert(CONFLICTS),
            {"command_id": "0-0-1", "account": last.account, "expected_version": last.version},
        )
    assert flow.invalid() == {"appends"}


def test_a_command_applied_twice_fails_only_the_appends_check(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack)
    with flow.store.connect() as db:
        last = _last_event(db, "deposited")
    key_id, seq = (int(part) for part in last.command_id.split("-")[1:])
    flow.command(key_id, seq, flow.config.model_copy(update={"command_dedup": False}))
    flow.sends.pop()  # the same command, sent once
    assert flow.invalid() == {"appends"}
    flow.command(key_id, seq)  # with dedup: skipped
    flow.sends.pop()
    assert flow.invalid() == {"appends"}
    verdict = check_appends(read_records(flow.config, flow.state(), HANDLER, PROJECTOR))
    assert verdict.counts["applied_twice"] == 1
    assert verdict.counts["decided_twice"] == 1


def test_an_acknowledged_command_never_decided_fails_only_the_appends_check(
    tmp_path: Path, stack: ExitStack
) -> None:
    flow = build(tmp_path, stack)
    flow.sends.append((0, 0, COMMANDS_PER_ACCOUNT, "ok"))
    assert flow.invalid() == {"appends"}
    flow.sends[-1] = (0, 0, COMMANDS_PER_ACCOUNT, "unknown")  # may never have reached the broker
    assert flow.invalid() == set()


def test_an_overdraft_and_a_half_transfer_fail_the_balances_check() -> None:
    def event(account: str, version: int, kind: str, delta: int) -> AccountEvent:
        return AccountEvent(f"{account}{version}", account, version, version - 1, kind,  # type: ignore[arg-type]
                            delta, f"c{account}{version}", 0)  # fmt: skip

    opened = event("a", 1, "opened", 0)
    overdrawn = [opened, event("a", 2, "deposited", 100), event("a", 3, "withdrawn", -150)]
    verdict = check_balances({"a": overdrawn}, set())
    assert verdict.valid is False
    assert verdict.counts["overdrafts"] == 1
    half = [opened, event("a", 2, "transferred-in", 100)]
    verdict = check_balances({"a": half}, set())
    assert verdict.valid is False
    assert verdict.counts["unpaired_transfers"] == 1
    assert check_balances({"a": overdrawn}, {"a"}).valid is True  # left to the versions check


def test_a_handler_that_lost_the_race_reloads_and_records_the_conflict(
    tmp_path: Path, stack: ExitStack
) -> None:
    """Two handlers load the same account version (the read phase); the second to append
    conflicts, reloads inside its transaction, appends the next version and records it."""
    flow = build(tmp_path, stack)
    config = flow.config
    first, second = CommandHandler(config), CommandHandler(config)
    seq = COMMANDS_PER_ACCOUNT
    events = [command_event(config, 0, seq), command_event(config, 0, seq + 1)]
    with flow.store.connect() as db, db.begin():
        prepared = [
            (handler, replace(event, prepared=handler.prepare(db, event)))
            for handler, event in zip((first, second), events, strict=True)
        ]
    for handler, event in prepared:
        with flow.store.begin() as db:
            handler.handle(db, event)
        flow.sends.append((0, 0, int(event.event_id.split("-")[2]), "ok"))
    with flow.store.connect() as db:
        conflicts = db.execute(select(CONFLICTS)).all()
    assert [row.command_id for row in conflicts] == [events[1].event_id]
    # the projector never saw these two: only the projection differs
    assert flow.invalid() == {"projection"}


@pytest.mark.parametrize(
    ("metadata", "winners"), [(STORE_METADATA, 1), (UNCHECKED_STORE_METADATA, 6)]
)
def test_concurrent_writers_of_one_expected_version(
    tmp_path: Path, stack: ExitStack, metadata: MetaData, winners: int
) -> None:
    """Six writer threads, each with its own connection, load the same version, then append
    its successor at once: with the constraint exactly one wins and five conflict; without
    it, all six 'win' (the duplicate versions the versions check catches)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    stack.callback(engine.dispose)
    create_tables(engine, metadata)
    account = "acct-0"
    with engine.begin() as db:
        append(db, [new_event(AccountState(account, 0, 0), "opened", 0, "open", 0)])
    writers = 6
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        with engine.connect() as db:
            with db.begin():
                state = load(db, account)
            barrier.wait()
            try:
                with db.begin():
                    append(db, [new_event(state, "deposited", 100, f"w{index}", 0)])
                outcome = "won"
            except ConflictError:
                outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted(["won"] * winners + ["conflict"] * (writers - winners))
    with engine.connect() as db:
        versions = db.execute(select(EVENTS.c.version).where(EVENTS.c.account == account)).all()
    assert sorted(v for (v,) in versions) == [1] + [2] * winners


def test_an_accepted_command_without_its_events_fails_only_the_appends_check(
    tmp_path: Path, stack: ExitStack
) -> None:
    """A writer that believed it appended (a lost update): its decision, no event."""
    flow = build(tmp_path, stack)
    with flow.store.begin() as db:
        log = read_log(db)
        final = {e.account: e.version for e in log}
        finals = (e for e in reversed(log) if e.version == final[e.account])
        last = next(e for e in finals if e.type == "deposited")
        db.execute(delete(EVENTS).where(EVENTS.c.event_id == last.event_id))
    with flow.view.begin() as db:  # the read model never saw it either
        db.execute(
            update(BALANCES)
            .where(BALANCES.c.account == last.account)
            .values(
                balance=BALANCES.c.balance - last.delta,
                deposited=BALANCES.c.deposited - last.delta,
                events=BALANCES.c.events - 1,
                checkpoint=BALANCES.c.checkpoint - 1,
            )
        )
        db.execute(delete(LOG).where(LOG.c.account == last.account, LOG.c.version == last.version))
    assert flow.invalid() == {"appends"}
