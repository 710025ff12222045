"""Undecodable messages of a run whose bodies go through a schema registry
(``payload_schema: avro``; ``harness/schemas/evolution.py``), from the run's events.

Consumers decode every body with their reader schema (v1 or v2); one they cannot decode is
nacked to the dead-letter destination (an ``undecodable`` event with its reason), and the
dead-letter reader records what arrives there (``dead-lettered``). Reasons:

- *not-wire-format*: the body does not start with the magic byte (a producer that bypassed
  the registry);
- *unknown-schema-id*: a schema id the registry never gave;
- *unreadable-body*: a registered schema's body the reader's schema cannot read: the failure a
  compatibility rule exists to prevent.

``valid``: False if any message written with a registered schema could not be read
(unknown-schema-id, unreadable-body), if an undecodable message never reached the dead-letter
destination, or if one reached it that no consumer found undecodable; else True (undecodable
messages that all ended in the dead-letter destination are the system coping, and are counted).
The lost, duplicate and ordering checks judge the same messages as usual (a nacked delivery
counts as delivered). Not run (``None``) for a run without schema events.

The counts also say what was written and read per schema version, and the registry's answers
to the ``schema-roll`` faults (``rolled``, ``refused``; the refusal, with its time and reason,
among the examples).
"""

import json
from collections import Counter
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.verdict import MAX_EXAMPLES, Verdict
from harness.history.schema import EventKind

NAME = "undecodable"
WRITTEN_WITH_A_REGISTERED_SCHEMA = ("unknown-schema-id", "unreadable-body")
SCHEMA_EVENTS = {
    EventKind.SCHEMA_WRITTEN,
    EventKind.SCHEMA_READ,
    EventKind.UNDECODABLE,
    EventKind.DEAD_LETTERED,
    EventKind.SCHEMA_ROLLED,
    EventKind.SCHEMA_REFUSED,
}
Identity = tuple[int, int, int]


def _rows(events: pa.Table) -> list[dict[str, Any]]:
    kinds = events["kind"].to_pylist()
    wanted = [i for i, kind in enumerate(kinds) if kind in SCHEMA_EVENTS]
    if not wanted:
        return []
    picked: list[dict[str, Any]] = events.take(pa.array(wanted)).to_pylist()
    for row in picked:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return picked


def _identity(detail: dict[str, Any]) -> Identity:
    return int(detail["producer_id"]), int(detail["key_id"]), int(detail["seq"])


def _count_decoded(
    rows: list[dict[str, Any]], versions_by_id: dict[int, str], counts: Counter[str]
) -> None:
    """Bodies decoded per reader schema, and per version they were written with."""
    for row in rows:
        if row["kind"] == EventKind.SCHEMA_READ:
            reader = row["detail"]["reader"]
            for schema_id, count in row["detail"]["decoded"].items():
                written = versions_by_id.get(int(schema_id), "other")
                counts[f"decoded_{reader}_reader"] += count
                counts[f"decoded_{reader}_reader_of_{written}"] += count


def check_undecodable(events: pa.Table) -> Verdict | None:
    """What could not be decoded and where it went; None when the run used no schemas."""
    rows = _rows(events)
    if not rows:
        return None
    counts: Counter[str] = Counter()
    versions_by_id: dict[int, str] = {}
    undecodable: dict[Identity, dict[str, Any]] = {}
    dead_lettered: set[Identity] = set()
    examples: list[dict[str, object]] = []
    for row in rows:
        kind, detail = row["kind"], row["detail"]
        if kind == EventKind.SCHEMA_WRITTEN:
            for version, count in detail["written"].items():
                counts[f"sent_{version}"] += count
            versions_by_id |= {int(i): v for v, i in detail["schema_ids"].items()}
        elif kind == EventKind.UNDECODABLE:
            counts[f"undecodable_{row['name'].replace('-', '_')}"] += 1
            undecodable.setdefault(_identity(detail), {**detail, "reason": row["name"]})
            undecodable[_identity(detail)].setdefault("time_ns", row["time_ns"])
        elif kind == EventKind.DEAD_LETTERED:
            dead_lettered.add(_identity(detail))
        elif kind == EventKind.SCHEMA_ROLLED:
            counts["rolled"] += 1
        elif kind == EventKind.SCHEMA_REFUSED:
            counts["refused"] += 1
            examples.append({"kind": "refused", "time_ns": row["time_ns"], **detail})
    _count_decoded(rows, versions_by_id, counts)  # after every schema id is known
    counts["undecodable"] = len(undecodable)
    counts["dead_lettered"] = len(dead_lettered)
    missing = [undecodable[i] for i in sorted(set(undecodable) - dead_lettered)]
    unexpected = sorted(dead_lettered - set(undecodable))
    unreadable = [
        u for u in undecodable.values() if u["reason"] in WRITTEN_WITH_A_REGISTERED_SCHEMA
    ]
    counts["undecodable_not_dead_lettered"] = len(missing)
    counts["dead_lettered_decodable"] = len(unexpected)
    counts["registered_but_unreadable"] = len(unreadable)
    for kind, found in (("not-dead-lettered", missing), ("unreadable", unreadable)):
        examples += [{"kind": kind, **u} for u in found[:MAX_EXAMPLES]]
    examples += [
        {"kind": "dead-lettered-decodable", "producer_id": p, "key_id": k, "seq": s}
        for p, k, s in unexpected[:MAX_EXAMPLES]
    ]
    examples += [
        {"kind": "undecodable", **u}
        for u in list(undecodable.values())[:MAX_EXAMPLES]
        if u["reason"] not in WRITTEN_WITH_A_REGISTERED_SCHEMA
    ]
    valid = not (missing or unexpected or unreadable)
    notes = (
        "every body was decoded"
        if not undecodable
        else f"{len(undecodable)} undecodable, {len(dead_lettered)} dead-lettered"
    )
    if unreadable:
        notes += "; bodies written with a registered schema could not be read"
    return Verdict(NAME, valid, dict(sorted(counts.items())), examples, notes)
