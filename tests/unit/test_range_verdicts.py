"""Each checker's verdict from counts merged over identity ranges equals its verdict on the
whole history, for a valid and an invalid case of each (``harness.analysis.merge`` sums the
counts and caps the examples; the checker's own ``*_verdict`` function judges them).

The histories are ``test_checkers``' small hand-made ones with the anomaly planted once per
producer, and checked in ranges of one producer each, so every count is split across ranges.
"""

from collections.abc import Callable

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest

from harness.analysis.bounded_checks import check_ranges, max_offsets_read
from harness.analysis.ranges import identity_ranges, table_batches
from harness.checkers import Verdict, check_all
from harness.history.store import SORT_KEYS
from tests.unit.test_checkers import (
    CONSUMERS,
    FAIL,
    ORDERING,
    SECOND,
    UNKNOWN,
    History,
    build,
    healthy_lag,
)

PRODUCERS = (0, 1)
PER_PRODUCER = 24  # build()'s 4 keys x 6 seqs: a range of one producer's sends


def _sorted(table: pa.Table, name: str) -> pa.Table:
    return table.sort_by([(column, "ascending") for column in SORT_KEYS[name]])


def _both(
    history: History, broker: str, *, exactly_once: bool = False
) -> tuple[dict[str, Verdict], dict[str, Verdict], int]:
    """The whole-history verdicts, the verdicts merged over one range per producer, and how
    many ranges there were."""
    sends, receives, events = history.tables()
    sends, receives = _sorted(sends, "sends"), _sorted(receives, "receives")
    ordering = ORDERING[broker]
    whole = check_all(sends, receives, events, ordering, healthy_lag(), exactly_once=exactly_once)
    ranges_seen: list[int] = []

    def ranges():  # type: ignore[no-untyped-def]
        found = list(
            identity_ranges(
                table_batches(sends, 5),
                table_batches(receives, 5),
                (sends.schema, receives.schema),
                PER_PRODUCER,
            )
        )
        ranges_seen.append(len(found))
        return iter(found)

    ranged = check_ranges(
        ranges,
        max_offsets_read(table_batches(receives)),
        events,
        ordering,
        healthy_lag(),
        exactly_once=exactly_once,
    )
    return {v.name: v for v in whole}, {v.name: v for v in ranged}, ranges_seen[0]


def _drop_a_middle_offset(history: History, producer: int) -> None:
    history.receives.pop(history.find(producer, 2, 3))


def _drop_without_offsets(history: History, producer: int) -> None:
    history.receives.pop(history.find(producer, 1, 2))


def _drop_the_last_offset(history: History, producer: int) -> None:
    # The last message of partition 1 is producer 1's; producer 0's key 3 seq 5 comes before
    # it, so dropping both leaves one unseen and one lost-write: look at producer 1 alone.
    if producer == 1:
        history.receives.pop(history.find(1, 3, 5))


def _unknown_outcomes(history: History, producer: int) -> None:
    history.sent(producer, 0, 0)["outcome"] = UNKNOWN
    history.sent(producer, 3, 2)["outcome"] = UNKNOWN
    history.receives.pop(history.find(producer, 3, 2))


def _failed_but_delivered(history: History, producer: int) -> None:
    history.sent(producer, 0, 2)["outcome"] = FAIL


def _a_failed_send_not_delivered(history: History, producer: int) -> None:
    history.sent(producer, 1, 1)["outcome"] = FAIL
    history.receives.pop(history.find(producer, 1, 1))


def _phantom(history: History, producer: int) -> None:
    ghost = dict(history.receives[history.find(producer, 0, 5)])
    history.receives.append(ghost | {"seq": 99, "receive_ns": ghost["receive_ns"] + 1})


def _redelivery(history: History, producer: int) -> None:
    again = dict(history.receives[history.find(producer, 2, 1)])
    history.receives.append(again | {"receive_ns": 30 * SECOND, "delivery_attempt": 2})


def _redelivery_and_failed_acks(history: History, producer: int) -> None:
    _redelivery(history, producer)
    history.events.append(
        {"time_ns": SECOND, "kind": "ack-failed", "name": "x", "target": None,
         "detail": '{"count": 2}'}
    )  # fmt: skip


def _reorder(history: History, producer: int) -> None:
    first, second = history.find(producer, 3, 2), history.find(producer, 3, 3)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times


def _skip(history: History, producer: int) -> None:
    late = history.receives.pop(history.find(producer, 0, 2))
    late["consumer_id"] = CONSUMERS[1]
    late["receive_ns"] = history.stream(producer, 0)[-1]["receive_ns"] + 1
    history.receives.append(late)


def _nothing(history: History, producer: int) -> None:
    pass


Plant = Callable[[History, int], None]
CASES: list[tuple[str, str, Plant, bool, bool | None]] = [
    # (checker, broker, anomaly planted once per producer, exactly_once, expected valid)
    ("lost", "kafka", _nothing, False, True),
    ("lost", "kafka", _drop_a_middle_offset, False, False),
    ("lost", "kafka", _drop_the_last_offset, False, None),
    ("lost", "fifo", _drop_without_offsets, False, False),
    ("unknown-outcome", "fifo", _nothing, False, True),
    ("unknown-outcome", "fifo", _unknown_outcomes, False, True),
    ("failed-but-delivered", "kafka", _a_failed_send_not_delivered, False, True),
    ("failed-but-delivered", "kafka", _failed_but_delivered, False, False),
    ("phantom", "fifo", _nothing, False, True),
    ("phantom", "fifo", _phantom, False, False),
    ("duplicates", "fifo", _redelivery, False, True),
    ("duplicates", "fifo", _redelivery_and_failed_acks, False, True),
    ("duplicates", "kafka", _redelivery, True, False),
    ("duplicates", "kafka", _nothing, True, True),
    ("ordering", "kafka", _nothing, False, True),
    ("ordering", "kafka", _reorder, False, False),
    ("ordering", "kafka", _skip, False, False),
    ("ordering", "fifo", _reorder, False, False),
    ("ordering", "standard", _reorder, False, True),
]


@pytest.mark.parametrize(
    ("checker", "broker", "plant", "exactly_once", "valid"),
    CASES,
    ids=[f"{case[0]}-{case[1]}-{case[2].__name__.strip('_')}" for case in CASES],
)
def test_the_merged_verdict_is_the_whole_histories(
    checker: str, broker: str, plant: Plant, exactly_once: bool, valid: bool | None
) -> None:
    history = build(broker)
    for producer in PRODUCERS:
        plant(history, producer)

    whole, ranged, ranges = _both(history, broker, exactly_once=exactly_once)

    assert ranges == len(PRODUCERS)
    assert whole[checker].valid is valid, whole[checker]
    assert ranged[checker].to_dict() == whole[checker].to_dict()
