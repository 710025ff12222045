"""Fan-out: does every subscriber of a topic get every event, and how often?

A fan-out topic is consumed by several *subscribers* (a Kafka consumer group, a Pub/Sub
subscription, an SQS queue behind an SNS topic), each of which must get every event. Their
deliveries are told apart by the ``receives.subscriber`` column (``<topic>/<group>``; null for
a destination with one group), and every subscriber that ran is named by a ``subscribed``
event, so one that received nothing at all is still judged.

The checkers that count deliveries per identity (duplicates, ordering) judge each subscriber's
deliveries apart (``subscriber_slices``; ``check_all`` merges their verdicts), so two
subscribers getting the same event is no duplicate. This checker adds, per subscriber:

- *missing*: events of its topic (identities some subscriber of the topic received) it never
  received: the broker lost them for that subscriber only. Invalid.
- *received* (distinct events) and *extra_deliveries* (its deliveries beyond the first of each
  event: its duplicates, of whatever class).

An acknowledged event no subscriber received is lost for all of them; the ``lost`` checker
reports it (the history records the topic of a delivery, not of a send).

``valid``: None if no fan-out subscriber received anything; False if any subscriber misses an
event; else True. Counts: totals, and ``<subscriber>:received|missing|extra_deliveries``.
"""

from collections.abc import Iterable

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.identity import U64
from harness.checkers.index import HistoryIndex, dictionary_codes, sorted_member
from harness.checkers.verdict import MAX_EXAMPLES, Verdict
from harness.history.schema import EventKind

NAME = "subscribers"
COLUMN = "subscriber"


def topic_of(subscriber: str) -> str:
    """The topic of a subscriber named ``<topic>/<group>``."""
    return subscriber.split("/", 1)[0]


def subscribed(events: pa.Table) -> set[str]:
    """The subscribers named by the history's ``subscribed`` events."""
    if events.num_rows == 0 or "kind" not in events.column_names:
        return set()
    found = events.filter(pc.equal(events["kind"], EventKind.SUBSCRIBED.value))
    return {str(name) for name in found["name"].to_pylist()}


def subscriber_slices(history: HistoryIndex) -> list[tuple[str | None, HistoryIndex]]:
    """The history once per subscriber: every send, and that subscriber's deliveries (None:
    the deliveries of destinations with one group). A history without fan-out is one slice,
    itself."""
    receives = history.receives
    if COLUMN not in receives.column_names or receives.column(COLUMN).null_count == len(receives):
        return [(None, history)]
    codes, _ = dictionary_codes(receives, COLUMN)
    names = receives.column(COLUMN).to_pylist()
    slices: list[tuple[str | None, HistoryIndex]] = []
    for code in np.unique(codes).tolist():
        rows = np.flatnonzero(codes == code)
        name = None if code < 0 else str(names[int(rows[0])])
        slices.append((name, HistoryIndex(history.sends, receives.take(pa.array(rows)))))
    return slices


def _distinct(history: HistoryIndex) -> U64:
    return history.receive_keys


def check_subscribers(history: HistoryIndex, events: pa.Table) -> Verdict | None:
    """Per fan-out subscriber: events of its topic it missed, events received, extra
    deliveries. None when the history has no fan-out subscriber (nothing to add)."""
    slices = {name: h for name, h in subscriber_slices(history) if name is not None}
    names = sorted(set(slices) | subscribed(events))
    if not names:
        return None
    counts: dict[str, int] = {
        "subscribers": len(names),
        "topics": len({topic_of(name) for name in names}),
        "missing": 0,
        "extra_deliveries": 0,
    }
    examples: list[dict[str, object]] = []
    empty = np.zeros(0, dtype=np.uint64)
    for topic in sorted({topic_of(name) for name in names}):
        members = [name for name in names if topic_of(name) == topic]
        received = {name: _distinct(slices[name]) if name in slices else empty for name in members}
        events_of_topic = np.unique(np.concatenate(list(received.values())))
        for name in members:
            got = sorted_member(events_of_topic, received[name])
            missing = events_of_topic[~got]
            deliveries = slices[name].receives.num_rows if name in slices else 0
            extra = deliveries - int(received[name].size)
            counts[f"{name}:received"] = int(received[name].size)
            counts[f"{name}:missing"] = int(missing.size)
            counts[f"{name}:extra_deliveries"] = extra
            counts["missing"] += int(missing.size)
            counts["extra_deliveries"] += extra
            examples += _examples(history, name, missing)
    if not any(counts[f"{name}:received"] for name in names):
        return Verdict(NAME, None, counts, notes="unknown: no subscriber received anything")
    valid = counts["missing"] == 0
    per = ", ".join(
        f"{name} {counts[f'{name}:received']} (missing {counts[f'{name}:missing']}, "
        f"{counts[f'{name}:extra_deliveries']} extra)"
        for name in names
    )
    notes = (
        f"every subscriber got every event of its topic: {per}"
        if valid
        else f"{counts['missing']} events missed by a subscriber that its topic's other "
        f"subscribers received: {per}"
    )
    return Verdict(NAME, valid, counts, examples, notes)


def _examples(history: HistoryIndex, subscriber: str, missing: U64) -> list[dict[str, object]]:
    """A few events ``subscriber`` missed, as their first delivery to another subscriber."""
    if not missing.size:
        return []
    at = np.searchsorted(history.receive_keys, missing[:MAX_EXAMPLES])
    rows = history.first_delivery[at]
    return [
        {
            "kind": "missed-by-subscriber",
            "subscriber": subscriber,
            "producer_id": record["producer_id"],
            "key_id": record["key_id"],
            "seq": record["seq"],
            "received_by": record.get(COLUMN),
        }
        for record in history.receive_records(rows)
    ]


def merge(name: str, verdicts: Iterable[tuple[str | None, Verdict]]) -> Verdict:
    """One verdict from a checker's verdicts over each subscriber's slice: counts summed,
    examples tagged with their subscriber (at most ``MAX_EXAMPLES`` per kind), validity composed
    (False over unknown over True), notes per subscriber."""
    parts = list(verdicts)
    counts: dict[str, int] = {}
    examples: list[dict[str, object]] = []
    per_kind: dict[object, int] = {}
    for subscriber, verdict in parts:
        for key, value in verdict.counts.items():
            counts[key] = counts.get(key, 0) + value
        for example in verdict.examples:
            kind = example.get("kind")
            if per_kind.get(kind, 0) < MAX_EXAMPLES:
                per_kind[kind] = per_kind.get(kind, 0) + 1
                examples.append({**example, "subscriber": subscriber})
    valids = [verdict.valid for _, verdict in parts]
    valid = False if False in valids else (None if None in valids else True)
    notes = "; ".join(
        f"{subscriber or 'single-group topics'}: {v.notes}" for subscriber, v in parts
    )
    return Verdict(name, valid, counts, examples, notes)
