"""Fan-out in the checkers (harness/checkers/subscribers.py) on small synthetic histories:
each subscriber's deliveries are judged apart, a subscriber missing events is caught for that
subscriber only, and a history without fan-out is judged exactly as before."""

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers import check_all
from harness.drivers.base import OrderingScope
from harness.history.schema import EVENTS, RECEIVES, SENDS

A, B = "clicks/aggregator", "clicks/archive"


def history(
    deliveries: dict[str | None, list[int]], *, events: tuple[str, ...] = (), sent: int = 10
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``sent`` ok sends (producer 1, key 0, seq 0..); each subscriber's delivered seqs."""
    sends = [
        {"producer_id": 1, "key_id": 0, "seq": s, "intended_ns": s, "invoke_ns": s}
        | {"complete_ns": s + 1, "outcome": 0, "partition": -1, "offset": -1}
        for s in range(sent)
    ]
    receives: list[dict[str, Any]] = []
    for consumer, (subscriber, seqs) in enumerate(deliveries.items()):
        for at, seq in enumerate(seqs):
            receives.append(
                {"consumer_id": consumer, "producer_id": 1, "key_id": 0, "seq": seq}
                | {"intended_ns": seq, "receive_ns": 100 + at, "partition": -1, "offset": -1}
                | {"message_id": f"{subscriber}-{seq}-{at}", "delivery_attempt": 1}
                | {"disposition": 0, "scope": None, "subscriber": subscriber}
            )
    marks = [{"time_ns": 1, "kind": "subscribed", "name": name} for name in events]
    return (
        pa.Table.from_pylist(sends, schema=SENDS),
        pa.Table.from_pylist(receives, schema=RECEIVES),
        pa.Table.from_pylist(marks, schema=EVENTS),
    )


def verdicts(tables: tuple[pa.Table, pa.Table, pa.Table]) -> dict[str, Any]:
    return {v.name: v for v in check_all(*tables, OrderingScope.NONE)}


def test_two_subscribers_each_getting_every_event_is_no_duplicate() -> None:
    everything = list(range(10))
    found = verdicts(history({A: everything, B: everything}))
    assert found["subscribers"].valid is True
    assert found["subscribers"].counts[f"{A}:received"] == 10
    assert found["subscribers"].counts[f"{B}:received"] == 10
    assert found["duplicates"].counts["extra_deliveries"] == 0
    assert found["lost"].valid is True


def test_a_subscriber_missing_events_is_caught_for_that_subscriber_only() -> None:
    found = verdicts(history({A: list(range(10)), B: [0, 1, 2, 4, 5, 6, 8, 9]}))
    subscribers = found["subscribers"]
    assert subscribers.valid is False
    assert subscribers.counts[f"{B}:missing"] == 2
    assert subscribers.counts[f"{A}:missing"] == 0
    assert {(e["subscriber"], e["seq"]) for e in subscribers.examples} == {(B, 3), (B, 7)}
    assert found["lost"].valid is True  # delivered to the aggregator: not lost to the broker


def test_a_subscriber_that_received_nothing_misses_everything() -> None:
    found = verdicts(history({A: list(range(10))}, events=(A, B)))
    assert found["subscribers"].valid is False
    assert found["subscribers"].counts[f"{B}:missing"] == 10
    assert found["subscribers"].counts[f"{B}:received"] == 0


def test_duplicates_are_counted_per_subscriber() -> None:
    found = verdicts(history({A: [*range(10), 4], B: [*range(10), 4, 5]}))
    assert found["subscribers"].counts[f"{A}:extra_deliveries"] == 1
    assert found["subscribers"].counts[f"{B}:extra_deliveries"] == 2
    assert found["duplicates"].counts["extra_deliveries"] == 3
    assert found["duplicates"].counts["redelivery"] == 0  # new message ids: duplicate publish
    assert {e["subscriber"] for e in found["duplicates"].examples} == {A, B}


def test_fan_out_topics_beside_single_group_topics() -> None:
    """A flow's other topics (null subscriber) are judged as before, beside the fan-out."""
    found = verdicts(history({A: [0, 1, 2, 3], B: [0, 1, 2, 3], None: [4, 5, 6, 7, 8, 9]}))
    assert found["subscribers"].valid is True
    assert found["subscribers"].counts["subscribers"] == 2
    assert found["duplicates"].counts["extra_deliveries"] == 0
    assert found["lost"].valid is True


def test_without_fan_out_the_verdicts_are_unchanged() -> None:
    found = verdicts(history({None: [*range(10), 3]}))
    assert "subscribers" not in found
    assert found["duplicates"].counts["extra_deliveries"] == 1
    assert list(found) == [
        "lost",
        "unknown-outcome",
        "failed-but-delivered",
        "phantom",
        "duplicates",
        "ordering",
        "lag-recovery",
    ]
