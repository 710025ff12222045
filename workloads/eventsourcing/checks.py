"""The event-sourced account's invariants at quiescence (/work/shared/notes/checks.md):

- ``eventsourcing-versions``: each account's versions are contiguous from 1, no duplicates;
  event ids are unique;
- ``eventsourcing-appends``: exactly one writer won each expected version, every recorded
  conflict lost to a real other writer; no command applied twice (a redelivered or re-published
  command, i.e. a retried append after an unknown outcome); every acknowledged command decided;
- ``eventsourcing-balances``: no balance ever below 0; sum of balances == deposits - withdrawals
  (transfers move money, never make or lose it);
- ``eventsourcing-projection``: the read model equals the fold of the event log, and a rebuild
  (the projector's own code replaying the log into a fresh database) equals the live read model;
- ``eventsourcing-checkpoints``: projection checkpoints only move forward.

Each violation is reported by the check that owns it: accounts whose log is malformed (failed
by the versions check) are left out of the balance and projection comparisons (counted as
``accounts_unchecked``), since their fold has no defined order.

Two phases, as in the saga's checks: ``read_records`` reads the handler's event store and the
projector's read model once into an ``EventSourcingRecords`` snapshot (the only database
reads), then the ``check_*`` functions judge that snapshot without I/O (the projection check's
rebuild replays the log through the projector's own code into a private in-memory database).
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Connection, create_engine, select

from harness.checkers.verdict import MAX_EXAMPLES, Verdict
from harness.flows.api import FlowState, event_id, event_rng
from workloads.eventsourcing.commands import (
    Command,
    EventSourcingConfig,
    MalformedCommandError,
    generate,
    parse,
)
from workloads.eventsourcing.handler import accounts_of
from workloads.eventsourcing.projector import (
    BALANCES,
    COUNTER_OF,
    COUNTERS,
    LOG,
    PENDING,
    PROJECTION_METADATA,
    project,
)
from workloads.eventsourcing.store import CONFLICTS, DECISIONS, EVENTS, AccountEvent

Examples = list[dict[str, object]]
VIEW_FIELDS = ("checkpoint", "balance", "events", *COUNTERS)


@dataclass
class View:
    """One account's read-model row (live, rebuilt or folded)."""

    checkpoint: int = 0
    balance: int = 0
    events: int = 0
    moved: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.checkpoint, self.balance, self.events, *(self.moved[c] for c in COUNTERS))


@dataclass(frozen=True)
class Decision:
    """A handler's decision on a command (``command_decisions``)."""

    command_id: str
    outcome: str
    """``accepted``, or ``rejected:<reason>``."""


@dataclass(frozen=True)
class Conflict:
    """An append a handler lost (``append_conflicts``)."""

    command_id: str
    account: str
    expected_version: int


@dataclass(frozen=True)
class ProjectionStep:
    """One step the projector logged (``projection_log``)."""

    account: str
    version: int
    step: str
    """``applied``, ``skipped`` (seen before) or ``buffered`` (early)."""
    checkpoint_before: int
    checkpoint_after: int
    command_ns: int
    at_ns: int


@dataclass(frozen=True)
class EventSourcingRecords:
    """What the checks read, gathered once by ``read_records``."""

    commands: dict[str, tuple[str, Command | None]]
    """Command id -> (send outcome, the command regenerated from its identity)."""
    log: list[AccountEvent]
    """The event store in append order."""
    decisions: list[Decision]
    conflicts: list[Conflict]
    views: dict[str, View]
    """The live read model, by account."""
    pending: list[tuple[str, int]]
    """(account, version) of the events still buffered by the projector."""
    steps: list[ProjectionStep]
    """The projection log in row order."""

    @cached_property
    def streams(self) -> dict[str, list[AccountEvent]]:
        """Each account's events in version order."""
        return by_account(self.log)

    @cached_property
    def malformed(self) -> set[str]:
        """Accounts whose versions do not run 1..n (the versions check fails them)."""
        return malformed_accounts(self.streams)


def read_records(
    config: EventSourcingConfig, state: FlowState, handler: str, projector: str
) -> EventSourcingRecords:
    """The snapshot: the sent commands (regenerated from the history), the handler's event
    store, decisions and conflicts, the projector's read model, buffer and log."""
    store = state.databases[handler]
    view = state.databases[projector]
    decisions = store.execute(select(DECISIONS.c.command_id, DECISIONS.c.outcome)).all()
    conflicts = store.execute(select(CONFLICTS)).all()
    pending = view.execute(select(PENDING.c.account, PENDING.c.version)).all()
    steps = view.execute(select(LOG).order_by(LOG.c.row)).all()
    return EventSourcingRecords(
        commands=sent_commands(config, state),
        log=read_log(store),
        decisions=[Decision(row.command_id, row.outcome) for row in decisions],
        conflicts=[
            Conflict(row.command_id, row.account, row.expected_version) for row in conflicts
        ],
        views=read_views(view),
        pending=[(row.account, row.version) for row in pending],
        steps=[
            ProjectionStep(
                account=row.account,
                version=row.version,
                step=row.step,
                checkpoint_before=row.checkpoint_before,
                checkpoint_after=row.checkpoint_after,
                command_ns=row.command_ns,
                at_ns=row.at_ns,
            )
            for row in steps
        ],
    )


def read_log(db: Connection) -> list[AccountEvent]:
    """The event store in append order."""
    rows = db.execute(select(EVENTS).order_by(EVENTS.c.position)).all()
    return [
        AccountEvent(
            event_id=r.event_id,
            account=r.account,
            version=r.version,
            expected_version=r.expected_version,
            type=r.type,
            delta=r.delta,
            command_id=r.command_id,
            command_ns=r.command_ns,
        )
        for r in rows
    ]


def read_views(db: Connection) -> dict[str, View]:
    return {
        row.account: View(
            checkpoint=row.checkpoint,
            balance=row.balance,
            events=row.events,
            moved={c: int(getattr(row, c)) for c in COUNTERS},
        )
        for row in db.execute(select(BALANCES))
    }


def sent_commands(
    config: EventSourcingConfig, state: FlowState
) -> dict[str, tuple[str, Command | None]]:
    """Command id -> (send outcome, the command regenerated from its identity)."""
    commands: dict[str, tuple[str, Command | None]] = {}
    for producer_id, key_id, seq, outcome in state.sends:
        body = generate(config, key_id, seq, event_rng(state.run_id, producer_id, key_id, seq))
        try:
            command: Command | None = parse(body)
        except MalformedCommandError:
            command = None
        commands[event_id(producer_id, key_id, seq)] = (outcome, command)
    return commands


def by_account(log: Iterable[AccountEvent]) -> dict[str, list[AccountEvent]]:
    """Each account's events in version order."""
    streams: dict[str, list[AccountEvent]] = defaultdict(list)
    for event in log:
        streams[event.account].append(event)
    for stream in streams.values():
        stream.sort(key=lambda e: e.version)
    return dict(streams)


def malformed_accounts(streams: dict[str, list[AccountEvent]]) -> set[str]:
    return {
        account
        for account, stream in streams.items()
        if [e.version for e in stream] != list(range(1, len(stream) + 1))
    }


def fold(stream: list[AccountEvent]) -> View:
    view = View()
    for event in stream:
        view.checkpoint = event.version
        view.balance += event.delta
        view.events += 1
        counter = COUNTER_OF.get(event.type)
        if counter is not None:
            view.moved[counter] += abs(event.delta)
    return view


def rebuild(log: list[AccountEvent]) -> dict[str, View]:
    """Replay the log through the projector's own code into a fresh in-memory database."""
    engine = create_engine("sqlite://")
    try:
        PROJECTION_METADATA.create_all(engine)
        with engine.begin() as db:
            for event in log:
                project(db, event)
            return read_views(db)
    finally:
        engine.dispose()


def check_versions(streams: dict[str, list[AccountEvent]]) -> Verdict:
    duplicates: Examples = []
    gaps: Examples = []
    for account, stream in sorted(streams.items()):
        versions = Counter(e.version for e in stream)
        for version, times in sorted(versions.items()):
            if times > 1:
                duplicates.append(
                    {"kind": "duplicate-version", "account": account, "version": version,
                     "events": times}
                )  # fmt: skip
        expected = set(range(1, max(versions) + 1))
        missing = sorted(expected - set(versions))
        if missing:
            gaps.append({"kind": "gap", "account": account, "missing": missing[:10]})
    ids = Counter(e.event_id for stream in streams.values() for e in stream)
    repeated = [
        {"kind": "duplicate-event-id", "event_id": eid, "events": n}
        for eid, n in ids.items()
        if n > 1
    ]
    valid = not duplicates and not gaps and not repeated
    return Verdict(
        "eventsourcing-versions",
        valid,
        {
            "accounts": len(streams),
            "events": sum(ids.values()),
            "duplicate_versions": len(duplicates),
            "accounts_with_gaps": len(gaps),
            "duplicate_event_ids": len(repeated),
        },
        duplicates[:MAX_EXAMPLES] + gaps[:MAX_EXAMPLES] + repeated[:MAX_EXAMPLES],
        notes="every account's versions run 1..n without duplicates; event ids are unique"
        if valid
        else "an account's versions repeat or skip (appends without the expected-version "
        "check), or an event id repeats",
    )


def _matches(event: AccountEvent, command: Command) -> bool:
    if event.account not in accounts_of(command):
        return False
    if command.type == "open":
        return event.type == "opened" and event.delta == 0
    expected = {
        "deposit": ("deposited",),
        "withdraw": ("withdrawn",),
        "transfer": ("transferred-out", "transferred-in"),
    }[command.type]
    return event.type in expected and abs(event.delta) == command.amount


def _race_anomalies(log: list[AccountEvent], conflicts: list[Conflict]) -> dict[str, Examples]:
    """Several winners of one expected version; conflicts lost to no other writer."""
    examples: dict[str, Examples] = defaultdict(list)
    winners = Counter((e.account, e.expected_version) for e in log)
    for (account, expected), n in sorted(winners.items()):
        if n > 1:
            examples["several-winners"].append(
                {"account": account, "expected_version": expected, "winners": n}
            )
    at = {(e.account, e.version): e for e in log}
    for row in conflicts:
        winner = at.get((row.account, row.expected_version + 1))
        if winner is None or winner.command_id == row.command_id:
            examples["phantom-conflict"].append(
                {"command_id": row.command_id, "account": row.account,
                 "expected_version": row.expected_version}
            )  # fmt: skip
    return examples


def _command_anomalies(
    log: list[AccountEvent],
    commands: dict[str, tuple[str, Command | None]],
    decisions: list[Decision],
    malformed: set[str],
) -> dict[str, Examples]:
    """Commands applied or decided twice, never decided, accepted without their events (a
    writer that lost its race unawares; an event missing from a malformed log is left to the
    versions check) or rejected with events; events matching no command."""
    examples: dict[str, Examples] = defaultdict(list)
    decided = Counter(row.command_id for row in decisions)
    accepted = {row.command_id for row in decisions if row.outcome == "accepted"}
    with_events = {e.command_id for e in log}
    for command_id in sorted(accepted - with_events):
        command = commands.get(command_id, ("", None))[1]
        if command is None or not malformed.intersection(accounts_of(command)):
            examples["accepted-without-events"].append({"command_id": command_id})
    for command_id in sorted(with_events & set(decided) - accepted):
        examples["rejected-with-events"].append({"command_id": command_id})
    applied = Counter((e.command_id, e.account) for e in log)
    for (command_id, account), n in sorted(applied.items()):
        if n > 1:
            examples["applied-twice"].append(
                {"command_id": command_id, "account": account, "events": n}
            )
    for event in log:
        outcome_command = commands.get(event.command_id)
        if outcome_command is None:
            examples["phantom-event"].append({"event_id": event.event_id})
        elif outcome_command[1] is None or not _matches(event, outcome_command[1]):
            examples["event-unlike-its-command"].append(
                {"event_id": event.event_id, "command_id": event.command_id}
            )
    for command_id, (outcome, _) in sorted(commands.items()):
        if outcome == "ok" and command_id not in decided:
            examples["undecided"].append({"command_id": command_id})
    for command_id, n in sorted(decided.items()):
        if n > 1:  # a redelivered command changed state (even a repeated rejection)
            examples["decided-twice"].append({"command_id": command_id, "decisions": n})
    return examples


def check_appends(records: EventSourcingRecords) -> Verdict:
    commands, conflicts, decisions = records.commands, records.conflicts, records.decisions
    examples = _race_anomalies(records.log, conflicts) | _command_anomalies(
        records.log, commands, decisions, records.malformed
    )
    outcomes = Counter(row.outcome for row in decisions)
    counts = {
        "commands_acked": sum(1 for o, _ in commands.values() if o == "ok"),
        "commands_unknown": sum(1 for o, _ in commands.values() if o == "unknown"),
        "decisions": len(decisions),
        "accepted": outcomes.pop("accepted", 0),
        **{k.replace(":", "_").replace("-", "_"): v for k, v in sorted(outcomes.items())},
        "conflicts": len(conflicts),
        "commands_with_conflicts": len({row.command_id for row in conflicts}),
        **{kind.replace("-", "_"): len(found) for kind, found in sorted(examples.items())},
    }
    valid = not examples
    return Verdict(
        "eventsourcing-appends",
        valid,
        counts,
        [{"kind": kind} | e for kind, found in examples.items() for e in found[:MAX_EXAMPLES]],
        notes="one winner per expected version, every conflict real, every acknowledged "
        "command decided and none applied twice"
        if valid
        else "several writers won one expected version, a conflict had no winner, a command "
        "was applied twice or never decided, or an event matches no command",
    )


def check_balances(streams: dict[str, list[AccountEvent]], malformed: set[str]) -> Verdict:
    overdrafts: Examples = []
    for account, stream in sorted(streams.items()):
        if account in malformed:
            continue
        balance = 0
        for event in stream:
            balance += event.delta
            if balance < 0:
                overdrafts.append(
                    {"kind": "overdraft", "account": account, "version": event.version,
                     "balance": balance}
                )  # fmt: skip
                break
    totals: Counter[str] = Counter()
    transfers: dict[str, int] = defaultdict(int)
    for stream in streams.values():
        for event in stream:
            totals[event.type] += abs(event.delta)
            if event.type.startswith("transferred"):
                transfers[event.command_id] += event.delta
    balances = sum(e.delta for stream in streams.values() for e in stream)
    conserved = balances == totals["deposited"] - totals["withdrawn"]
    unpaired = [
        {"kind": "unpaired-transfer", "command_id": c, "net": n} for c, n in transfers.items() if n
    ]
    valid = not overdrafts and conserved and not unpaired
    return Verdict(
        "eventsourcing-balances",
        valid,
        {
            "accounts": len(streams),
            "sum_of_balances": balances,
            "deposits": totals["deposited"],
            "withdrawals": totals["withdrawn"],
            "transferred": totals["transferred-out"],
            "overdrafts": len(overdrafts),
            "unpaired_transfers": len(unpaired),
            "accounts_unchecked": len(malformed),
        },
        overdrafts[:MAX_EXAMPLES] + unpaired[:MAX_EXAMPLES],
        notes="no balance ever below 0; sum of balances == deposits - withdrawals"
        if valid
        else "a balance went below 0, or money was made or lost (a transfer half-applied)",
    )


def _differences(
    kind: str, expected: dict[str, View], actual: dict[str, View], accounts: Iterable[str]
) -> Examples:
    found: Examples = []
    for account in sorted(accounts):
        want, got = expected.get(account), actual.get(account)
        if want is None or got is None or want.as_tuple() != got.as_tuple():
            found.append(
                {"kind": kind, "account": account,
                 "expected": None if want is None else dict(zip(VIEW_FIELDS, want.as_tuple(),
                                                                 strict=True)),
                 "actual": None if got is None else dict(zip(VIEW_FIELDS, got.as_tuple(),
                                                              strict=True))}
            )  # fmt: skip
    return found


def check_projection(records: EventSourcingRecords) -> Verdict:
    live, malformed = records.views, records.malformed
    folded = {account: fold(stream) for account, stream in records.streams.items()}
    rebuilt = rebuild(records.log)
    accounts = (set(folded) | set(live)) - malformed
    unlike_fold = _differences("projection-differs-from-fold", folded, live, accounts)
    unlike_rebuild = _differences("rebuild-differs-from-projection", rebuilt, live, accounts)
    left = [
        {"kind": "still-buffered", "account": account, "version": version}
        for account, version in records.pending
        if account not in malformed
    ]
    steps = Counter(step.step for step in records.steps)
    delays = sorted(
        step.at_ns - step.command_ns for step in records.steps if step.step == "applied"
    )
    valid = not unlike_fold and not unlike_rebuild and not left
    return Verdict(
        "eventsourcing-projection",
        valid,
        {
            "accounts": len(live),
            "differs_from_fold": len(unlike_fold),
            "differs_from_rebuild": len(unlike_rebuild),
            "still_buffered": len(left),
            "accounts_unchecked": len(malformed),
            "events_applied": steps["applied"],
            "deliveries_skipped": steps["skipped"],
            "deliveries_buffered": steps["buffered"],
            **_percentiles_us("command_to_view", delays),
        },
        unlike_fold[:MAX_EXAMPLES] + unlike_rebuild[:MAX_EXAMPLES] + left[:MAX_EXAMPLES],
        notes="the read model equals the fold of the event log and a rebuild from it"
        if valid
        else "the read model differs from the fold of the event log (an event applied twice "
        "or missed) or from a rebuild, or events are still buffered at quiescence",
    )


def _percentiles_us(name: str, delays_ns: list[int]) -> dict[str, int]:
    """Command intended time -> applied in the read model, in microseconds."""
    if not delays_ns:
        return {}
    last = len(delays_ns) - 1
    return {
        f"{name}_p50_us": delays_ns[last // 2] // 1000,
        f"{name}_p99_us": delays_ns[(last * 99) // 100] // 1000,
        f"{name}_max_us": delays_ns[last] // 1000,
    }


def check_checkpoints(records: EventSourcingRecords) -> Verdict:
    last: dict[str, int] = {}
    examples: Examples = []
    steps = 0
    for row in records.steps:
        steps += 1
        previous = last.get(row.account, 0)
        if row.checkpoint_after < row.checkpoint_before or row.checkpoint_before != previous:
            examples.append(
                {"kind": "checkpoint-moved-back", "account": row.account,
                 "from": previous, "before": row.checkpoint_before,
                 "after": row.checkpoint_after}
            )  # fmt: skip
        last[row.account] = row.checkpoint_after
    live = records.views
    for account, checkpoint in sorted(last.items()):
        if account in live and live[account].checkpoint != checkpoint:
            examples.append(
                {"kind": "checkpoint-not-the-last-logged", "account": account,
                 "stored": live[account].checkpoint, "logged": checkpoint}
            )  # fmt: skip
    valid = not examples
    return Verdict(
        "eventsourcing-checkpoints",
        valid,
        {"accounts": len(last), "steps": steps, "regressions": len(examples)},
        examples[:MAX_EXAMPLES],
        notes="every account's checkpoint only moved forward"
        if valid
        else "a projection checkpoint moved back (or the stored one is not the last logged)",
    )


def check_all(
    config: EventSourcingConfig, state: FlowState, handler: str, projector: str
) -> list[Verdict]:
    records = read_records(config, state, handler, projector)
    return [
        check_versions(records.streams),
        check_appends(records),
        check_balances(records.streams, records.malformed),
        check_projection(records),
        check_checkpoints(records),
    ]
