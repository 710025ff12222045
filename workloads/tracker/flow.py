"""The tracker flow: the generator publishes clicks, the aggregator folds them per user and,
where the broker fans out, the archive keeps every event (both subscribe to ``clicks``)."""

import random
from collections import Counter
from typing import ClassVar

from sqlalchemy import select

from harness.checkers.verdict import MAX_EXAMPLES, Verdict
from harness.flows.api import Flow, FlowConfig, FlowState, Service, Topic, event_id, event_rng
from harness.flows.dead_letters import DEAD_LETTERS
from harness.flows.plan import DEAD_LETTER_SERVICE
from workloads.tracker.aggregator import AGGREGATES, Aggregator
from workloads.tracker.archive import ARCHIVED, Archive
from workloads.tracker.events import (
    EVENT_TYPES,
    Click,
    MalformedEventError,
    TrackerConfig,
    generate,
    parse,
)

COUNTERS = (*EVENT_TYPES, "revenue_cents")


class TrackerFlow(Flow):
    kind: ClassVar[str] = "tracker"
    config_model: ClassVar[type[FlowConfig]] = TrackerConfig
    entry_topic: ClassVar[str] = "clicks"
    topics: ClassVar[tuple[Topic, ...]] = (Topic("clicks", dead_letter=True),)
    services: ClassVar[tuple[type[Service], ...]] = (Aggregator, Archive)

    @classmethod
    def generate(cls, config: FlowConfig, key_id: int, seq: int, rng: random.Random) -> bytes:
        assert isinstance(config, TrackerConfig)
        return generate(config, key_id, seq, rng)

    @classmethod
    def check(cls, config: FlowConfig, state: FlowState) -> list[Verdict]:
        assert isinstance(config, TrackerConfig)
        sent = _regenerate(config, state)
        verdicts = [check_aggregates(sent, state), check_poison(sent, state)]
        if config.fan_out != "off":  # the archive ran
            verdicts.append(check_archive(config, sent, state))
        return verdicts


def _regenerate(config: TrackerConfig, state: FlowState) -> dict[str, tuple[str, Click | None]]:
    """Event id -> (send outcome, the click, or None for a poison pill), from the history."""
    events: dict[str, tuple[str, Click | None]] = {}
    for producer_id, key_id, seq, outcome in state.sends:
        body = generate(config, key_id, seq, event_rng(state.run_id, producer_id, key_id, seq))
        try:
            click: Click | None = parse(body)
        except MalformedEventError:
            click = None
        events[event_id(producer_id, key_id, seq)] = (outcome, click)
    return events


def _fold(clicks: list[Click]) -> dict[str, Counter[str]]:
    folded: dict[str, Counter[str]] = {}
    for click in clicks:
        counter = folded.setdefault(click.user, Counter())
        counter[click.type] += 1
        counter["revenue_cents"] += click.amount_cents
    return folded


def check_aggregates(sent: dict[str, tuple[str, Click | None]], state: FlowState) -> Verdict:
    """Every acknowledged click is counted exactly once: per user and counter, the aggregate
    lies between the fold of the acknowledged clicks and that plus the clicks whose send
    outcome is unknown (they may or may not have reached the broker)."""
    acked = _fold([c for outcome, c in sent.values() if outcome == "ok" and c is not None])
    maybe = _fold([c for outcome, c in sent.values() if outcome == "unknown" and c is not None])
    db = state.databases[Aggregator.name]
    stored = {row.user: row for row in db.execute(select(AGGREGATES))}
    over: list[dict[str, object]] = []
    under: list[dict[str, object]] = []
    for user in sorted(set(acked) | set(maybe) | set(stored)):
        row = stored.get(user)
        for counter in COUNTERS:
            low = acked.get(user, Counter())[counter]
            high = low + maybe.get(user, Counter())[counter]
            value = 0 if row is None else int(getattr(row, counter))
            if value > high:
                over.append(
                    {
                        "kind": "over-counted",
                        "user": user,
                        "counter": counter,
                        "stored": value,
                        "expected_at_most": high,
                    }
                )
            elif value < low:
                under.append(
                    {
                        "kind": "under-counted",
                        "user": user,
                        "counter": counter,
                        "stored": value,
                        "expected_at_least": low,
                    }
                )
    counts = {
        "users": len(stored),
        "acked_clicks": sum(1 for o, c in sent.values() if o == "ok" and c is not None),
        "over_counted": len(over),
        "under_counted": len(under),
    }
    valid = not over and not under
    return Verdict(
        "tracker-aggregates",
        valid,
        counts,
        over[:MAX_EXAMPLES] + under[:MAX_EXAMPLES],
        notes="per-user aggregates equal the fold of the distinct acknowledged clicks"
        if valid
        else "aggregates differ from the fold of the acknowledged clicks (over-counted: a "
        "redelivery or duplicate was applied twice; under-counted: a click was lost)",
    )


def check_poison(sent: dict[str, tuple[str, Click | None]], state: FlowState) -> Verdict:
    """Every acknowledged poison pill is in the dead-letter destination, and nothing else is."""
    rows = state.databases[DEAD_LETTER_SERVICE].execute(select(DEAD_LETTERS.c.event_id)).all()
    dead = Counter(row.event_id for row in rows)
    poison_acked = {eid for eid, (o, c) in sent.items() if c is None and o == "ok"}
    poison_all = {eid for eid, (_, c) in sent.items() if c is None}
    missing = sorted(poison_acked - set(dead))
    wrong = sorted(set(dead) - poison_all)
    examples: list[dict[str, object]] = [
        {"kind": "not-dead-lettered", "event_id": e} for e in missing[:MAX_EXAMPLES]
    ]
    examples += [{"kind": "wrongly-dead-lettered", "event_id": e} for e in wrong[:MAX_EXAMPLES]]
    counts = {
        "poison_acked": len(poison_acked),
        "dead_lettered": len(dead),
        "dead_lettered_twice": sum(1 for n in dead.values() if n > 1),
        "not_dead_lettered": len(missing),
        "wrongly_dead_lettered": len(wrong),
    }
    valid = not missing and not wrong
    return Verdict(
        "tracker-poison",
        valid,
        counts,
        examples,
        notes="every poison pill ended in the dead-letter destination, and only they did"
        if valid
        else "poison pills missing from the dead-letter destination, or valid events in it",
    )


def check_archive(
    config: TrackerConfig, sent: dict[str, tuple[str, Click | None]], state: FlowState
) -> Verdict:
    """The archive (the second subscriber of ``clicks``) holds every acknowledged event, poison
    pills included, exactly as published, and nothing that was never sent."""
    rows = state.databases[Archive.name].execute(select(ARCHIVED.c.event_id, ARCHIVED.c.body))
    archived = {row.event_id: bytes(row.body) for row in rows}
    acked = sorted(eid for eid, (outcome, _) in sent.items() if outcome == "ok")
    missing = [eid for eid in acked if eid not in archived]
    phantom = sorted(set(archived) - set(sent))
    altered = sorted(
        eid for eid in set(archived) & set(sent) if archived[eid] != _body(config, state, eid)
    )
    examples: list[dict[str, object]] = [
        {"kind": kind, "event_id": eid}
        for kind, found in (("missing", missing), ("phantom", phantom), ("altered", altered))
        for eid in found[:MAX_EXAMPLES]
    ]
    counts = {
        "acked_events": len(acked),
        "archived": len(archived),
        "missing": len(missing),
        "phantom": len(phantom),
        "altered": len(altered),
    }
    valid = not missing and not phantom and not altered
    return Verdict(
        "tracker-archive",
        valid,
        counts,
        examples,
        notes="the archive holds every acknowledged event, as published"
        if valid
        else "the archive misses acknowledged events, holds events never sent, or altered them",
    )


def _body(config: TrackerConfig, state: FlowState, eid: str) -> bytes:
    producer_id, key_id, seq = (int(part) for part in eid.split("-"))
    return generate(config, key_id, seq, event_rng(state.run_id, producer_id, key_id, seq))
