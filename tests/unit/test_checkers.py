"""The log-level checkers on small synthetic histories: a clean history passes every checker,
and each planted anomaly is found by exactly the checker that should find it."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest

from harness.checkers import (
    HistoryIndex,
    Verdict,
    all_valid,
    check_all,
    check_duplicates,
    check_lag_recovery,
    check_lost,
    check_ordering,
    derive_backlog,
)
from harness.checkers.index import sorted_members
from harness.drivers.base import OrderingScope

# The schemas of docs/history.md, written out here so these tests do not depend on the recorder.
_DICT = pa.dictionary(pa.int32(), pa.string())
SENDS = pa.schema(
    [
        ("producer_id", pa.uint32()),
        ("key_id", pa.uint32()),
        ("seq", pa.uint64()),
        ("intended_ns", pa.int64()),
        ("invoke_ns", pa.int64()),
        ("complete_ns", pa.int64()),
        ("outcome", pa.uint8()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)
RECEIVES = pa.schema(
    [
        ("consumer_id", pa.uint32()),
        ("producer_id", pa.uint32()),
        ("key_id", pa.uint32()),
        ("seq", pa.uint64()),
        ("intended_ns", pa.int64()),
        ("receive_ns", pa.int64()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("message_id", _DICT),
        ("delivery_attempt", pa.int16()),
        ("disposition", pa.uint8()),
        ("scope", _DICT),
    ]
)
EVENTS = pa.schema(
    [
        ("time_ns", pa.int64()),
        ("kind", pa.string()),
        ("name", pa.string()),
        ("target", pa.string()),
        ("detail", pa.string()),
    ]
)
LAG = pa.schema([("time_ns", pa.int64()), ("backlog", pa.int64()), ("source", pa.string())])

OK, FAIL, UNKNOWN = 0, 1, 2
CONSUMERS = (10, 11)
SECOND = 1_000_000_000


@dataclass
class History:
    """Rows of a history as dicts, easy to tamper with, and their Arrow tables."""

    sends: list[dict[str, Any]] = field(default_factory=list)
    receives: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def send(self, producer: int, key: int, seq: int, time: int, **extra: Any) -> None:
        row = {
            "producer_id": producer,
            "key_id": key,
            "seq": seq,
            "intended_ns": time,
            "invoke_ns": time,
            "complete_ns": time + 5,
            "outcome": OK,
            "partition": -1,
            "offset": -1,
        }
        self.sends.append(row | extra)

    def receive(
        self, consumer: int, producer: int, key: int, seq: int, time: int, **extra: Any
    ) -> None:
        row = {
            "consumer_id": consumer,
            "producer_id": producer,
            "key_id": key,
            "seq": seq,
            "intended_ns": 0,
            "receive_ns": time,
            "partition": -1,
            "offset": -1,
            "message_id": None,
            "delivery_attempt": 1,
            "disposition": 0,
            "scope": None,
        }
        self.receives.append(row | extra)

    def find(self, producer: int, key: int, seq: int) -> int:
        """The index of the (first) receive of this identity."""
        return next(
            at
            for at, row in enumerate(self.receives)
            if (row["producer_id"], row["key_id"], row["seq"]) == (producer, key, seq)
        )

    def sent(self, producer: int, key: int, seq: int) -> dict[str, Any]:
        return next(
            row
            for row in self.sends
            if (row["producer_id"], row["key_id"], row["seq"]) == (producer, key, seq)
        )

    def stream(self, producer: int, key: int) -> list[dict[str, Any]]:
        """The receives of one producer+key, in receive order."""
        rows = [r for r in self.receives if (r["producer_id"], r["key_id"]) == (producer, key)]
        return sorted(rows, key=lambda r: r["receive_ns"])

    def tables(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        return (
            pa.Table.from_pylist(self.sends, schema=SENDS),
            pa.Table.from_pylist(self.receives, schema=RECEIVES),
            pa.Table.from_pylist(self.events, schema=EVENTS),
        )

    def index(self) -> HistoryIndex:
        sends, receives, _ = self.tables()
        return HistoryIndex(sends, receives)


def build(broker: str, producers: int = 2, keys: int = 4, per_key: int = 6) -> History:
    """A clean history: every send ok and delivered once, in order, one consumer per scope.

    ``kafka``: two partitions (key % 2), scope ``p<partition>``; ``fifo``: SQS FIFO, message
    ids, scope = the key; ``standard``: message ids, no scope, consumers take turns.
    """
    history = History()
    offsets = [0, 0]
    time = SECOND
    turn = 0
    for seq in range(per_key):
        for producer in range(producers):
            for key in range(keys):
                time += 100
                turn += 1
                if broker == "kafka":
                    partition = key % 2
                    where = {"partition": partition, "offset": offsets[partition]}
                    offsets[partition] += 1
                    history.send(producer, key, seq, time, **where)
                    history.receive(
                        CONSUMERS[partition],
                        producer,
                        key,
                        seq,
                        time + 50,
                        scope=f"p{partition}",
                        **where,
                    )
                    continue
                history.send(producer, key, seq, time)
                message = f"m-{producer}-{key}-{seq}"
                if broker == "fifo":
                    consumer, scope = CONSUMERS[key % 2], f"k-{key}"
                else:
                    consumer, scope = CONSUMERS[turn % 2], None
                history.receive(
                    consumer, producer, key, seq, time + 50, message_id=message, scope=scope
                )
    return history


ORDERING = {
    "kafka": OrderingScope.PARTITION,
    "fifo": OrderingScope.MESSAGE_GROUP,
    "standard": OrderingScope.NONE,
}


def healthy_lag() -> pa.Table:
    return pa.Table.from_pylist(
        [{"time_ns": SECOND * s, "backlog": 3, "source": "broker"} for s in range(1, 4)],
        schema=LAG,
    )


def run(history: History, broker: str, **kwargs: Any) -> dict[str, Verdict]:
    sends, receives, events = history.tables()
    verdicts = check_all(sends, receives, events, ORDERING[broker], healthy_lag(), **kwargs)
    assert [v.name for v in verdicts] == [
        "lost",
        "unknown-outcome",
        "failed-but-delivered",
        "phantom",
        "duplicates",
        "ordering",
        "lag-recovery",
    ]
    return {verdict.name: verdict for verdict in verdicts}


def only(verdicts: dict[str, Verdict], name: str, valid: bool | None = False) -> Verdict:
    """Assert that ``name`` alone is not valid (is ``valid``); return its verdict."""
    for other, verdict in verdicts.items():
        if other != name:
            assert verdict.valid is True, verdict
    assert verdicts[name].valid is valid, verdicts[name]
    return verdicts[name]


def kinds(verdict: Verdict) -> list[object]:
    return [example["kind"] for example in verdict.examples]


# -- clean histories -------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["kafka", "fifo", "standard"])
def test_a_clean_history_passes_every_checker(broker: str) -> None:
    verdicts = run(build(broker), broker)

    assert all_valid(list(verdicts.values())) is True, verdicts
    assert all(not v.examples for v in verdicts.values())
    assert verdicts["lost"].counts["acked"] == 48
    assert verdicts["ordering"].counts["rebalance"] == 0
    if broker != "standard":
        assert verdicts["ordering"].counts["judged"] == 48
    for verdict in verdicts.values():
        assert verdict.to_dict()["name"] == verdict.name


@pytest.mark.parametrize("broker", ["kafka", "fifo", "standard"])
def test_an_empty_history_is_unknown_never_a_pass(broker: str) -> None:
    verdicts = run(History(), broker)
    judged = {name: v.valid for name, v in verdicts.items() if name != "lag-recovery"}
    assert judged == dict.fromkeys(judged), verdicts
    assert all(v.notes.startswith("unknown: ") for n, v in verdicts.items() if n in judged)
    assert all_valid(list(verdicts.values())) is None


def test_sends_with_nothing_received_judge_nothing_about_deliveries() -> None:
    history = build("kafka")
    history.receives.clear()
    verdicts = run(history, "kafka")
    assert verdicts["lost"].valid is None  # unseen: Kafka cannot tell lost from late
    assert verdicts["lost"].counts["unseen"] == 48
    assert verdicts["unknown-outcome"].valid is True
    for name in ("failed-but-delivered", "phantom", "duplicates", "ordering"):
        assert verdicts[name].valid is None, verdicts[name]
        assert "nothing was received" in verdicts[name].notes
    assert all_valid(list(verdicts.values())) is None


def test_deliveries_with_nothing_acknowledged_leave_lost_unknown() -> None:
    history = build("fifo")
    for row in history.sends:
        row["outcome"] = UNKNOWN
    verdicts = run(history, "fifo")
    assert verdicts["lost"].valid is None
    assert "no send was acknowledged" in verdicts["lost"].notes
    others = [v.valid for name, v in verdicts.items() if name != "lost"]
    assert others == [True] * len(others), verdicts


# -- lost ----------------------------------------------------------------------------------------


def test_a_dropped_middle_offset_is_a_lost_write() -> None:
    history = build("kafka")
    dropped = history.receives.pop(history.find(1, 2, 3))

    lost = only(run(history, "kafka"), "lost")

    assert lost.counts == {
        "acked": 48,
        "lost": 1,
        "lost_write": 1,
        "unseen": 0,
        "lost_unpositioned": 0,
    }
    assert kinds(lost) == ["lost-write"]
    example = lost.examples[0]
    assert (example["producer_id"], example["key_id"], example["seq"]) == (1, 2, 3)
    assert example["offset"] == dropped["offset"]
    assert example["max_offset_read"] == 23  # partition 0 holds 24 messages


def test_a_dropped_last_offset_is_unseen_not_invalid() -> None:
    history = build("kafka")
    history.receives.pop(history.find(1, 3, 5))  # the last message of partition 1

    lost = only(run(history, "kafka"), "lost", valid=None)

    assert lost.counts["unseen"] == 1
    assert lost.counts["lost_write"] == 0
    assert kinds(lost) == ["unseen"]


def test_a_dropped_message_without_offsets_is_lost() -> None:
    history = build("fifo")
    history.receives.pop(history.find(0, 1, 2))

    lost = only(run(history, "fifo"), "lost")

    assert lost.counts["lost"] == lost.counts["lost_unpositioned"] == 1
    assert kinds(lost) == ["lost"]


def test_sends_that_failed_or_timed_out_are_not_expected() -> None:
    history = build("kafka")
    for identity, outcome in (((0, 0, 1), FAIL), ((0, 1, 1), UNKNOWN), ((1, 1, 4), UNKNOWN)):
        history.receives.pop(history.find(*identity))
        history.sent(*identity)["outcome"] = outcome

    verdicts = run(history, "kafka")

    assert all_valid(list(verdicts.values())) is True, verdicts
    assert verdicts["lost"].counts["acked"] == 45
    assert verdicts["unknown-outcome"].counts == {
        "unknown": 2,
        "delivered": 0,
        "not_delivered": 2,
    }


# -- fates -------------------------------------------------------------------------------------


def test_unknown_outcomes_are_split_by_fate_and_never_invalid() -> None:
    history = build("fifo")
    history.sent(0, 0, 0)["outcome"] = UNKNOWN
    history.sent(1, 3, 2)["outcome"] = UNKNOWN
    history.receives.pop(history.find(1, 3, 2))

    verdicts = run(history, "fifo")

    assert all_valid(list(verdicts.values())) is True
    assert verdicts["unknown-outcome"].counts == {
        "unknown": 2,
        "delivered": 1,
        "not_delivered": 1,
    }


def test_a_delivered_failed_send_is_failed_but_delivered() -> None:
    history = build("kafka")
    history.sent(1, 0, 2)["outcome"] = FAIL

    verdict = only(run(history, "kafka"), "failed-but-delivered")

    assert verdict.counts == {"failed": 1, "failed_but_delivered": 1}
    assert kinds(verdict) == ["failed-but-delivered"]
    assert verdict.examples[0]["consumer_id"] == CONSUMERS[0]


def test_a_receive_nobody_sent_is_a_phantom() -> None:
    history = build("fifo")
    history.receive(
        CONSUMERS[0],
        7,
        0,
        0,
        history.receives[-1]["receive_ns"] + 1,
        message_id="m-ghost",
        scope="k-0",
    )

    verdict = only(run(history, "fifo"), "phantom")

    assert verdict.counts == {"phantom": 1, "phantom_deliveries": 1}
    assert verdict.examples[0]["producer_id"] == 7


# -- duplicates --------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_the_same_broker_message_again_is_a_redelivery(broker: str) -> None:
    history = build(broker)
    again = dict(history.receives[history.find(0, 2, 1)])
    again["receive_ns"] += 10_000  # much later, after higher seqs: not an ordering anomaly
    again["delivery_attempt"] = 2
    history.receives.append(again)

    verdicts = run(history, broker)

    assert all_valid(list(verdicts.values())) is True, verdicts
    duplicates = verdicts["duplicates"]
    assert duplicates.counts["redelivery"] == 1
    assert duplicates.counts["duplicate_publish"] == 0
    assert duplicates.counts["duplicated"] == 1
    assert kinds(duplicates) == ["redelivery"]
    assert duplicates.examples[0]["deliveries"] == 2

    sends, receives, events = history.tables()
    exactly_once = check_all(
        sends, receives, events, ORDERING[broker], healthy_lag(), exactly_once=True
    )
    assert {v.name: v.valid for v in exactly_once}["duplicates"] is False


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_a_redelivery_the_consumer_asked_for_with_a_nack_is_no_exactly_once_violation(
    broker: str,
) -> None:
    history = build(broker)
    history.receives[history.find(0, 2, 1)]["disposition"] = 1  # nacked
    again = dict(history.receives[history.find(0, 2, 1)])
    again["receive_ns"] += 10_000
    again["delivery_attempt"] = 2
    again["disposition"] = 0
    history.receives.append(again)
    sends, receives, events = history.tables()

    verdicts = check_all(
        sends, receives, events, ORDERING[broker], healthy_lag(), exactly_once=True
    )

    duplicates = {v.name: v for v in verdicts}["duplicates"]
    assert duplicates.valid is True, duplicates
    assert duplicates.counts["redelivery_after_nack"] == duplicates.counts["redelivery"] == 1


def copy_at_a_new_position(history: History, broker: str, identity: tuple[int, int, int]) -> None:
    """A second delivery of ``identity`` from another broker position: a second copy written
    (Kafka: appended at the end of its partition; SQS: a new message id)."""
    copy = dict(history.receives[history.find(*identity)])
    copy["receive_ns"] += 10_000
    if broker == "kafka":
        copy["offset"] = 24
    else:
        copy["message_id"] = "m-second-copy"
    history.receives.append(copy)


def duplicates_under(history: History, broker: str) -> dict[str, Verdict]:
    """The duplicates verdict under each semantics."""
    return {
        "at-least-once": run(history, broker)["duplicates"],
        "exactly-once": run(history, broker, exactly_once=True)["duplicates"],
    }


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_one_send_at_two_broker_positions_is_a_duplicate_publish_by_the_client(
    broker: str,
) -> None:
    history = build(broker)
    history.sent(1, 1, 2)["outcome"] = UNKNOWN  # its answer was lost; the client retried
    copy_at_a_new_position(history, broker, (1, 1, 2))

    duplicates = only(run(history, broker), "duplicates", valid=True)

    assert duplicates.counts["duplicate_publish"] == 1
    assert duplicates.counts["duplicate_publish_by_client"] == 1
    assert duplicates.counts["duplicate_publish_after_resend"] == 0
    assert duplicates.counts["duplicate_publish_after_unknown"] == 1
    assert duplicates.counts["redelivery"] == 0
    assert duplicates.counts["unrequested"] == 1
    assert kinds(duplicates) == ["duplicate-publish-by-client"]
    example = duplicates.examples[0]
    assert (example["producer_id"], example["key_id"], example["seq"]) == (1, 1, 2)
    assert (example["sends"], example["send_outcome"]) == (1, "unknown")


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_an_acked_send_written_twice_is_also_the_clients(broker: str) -> None:
    """librdkafka's retry of a produce request whose answer was lost: the harness saw one
    send and one ok; the partition holds it twice."""
    history = build(broker)
    copy_at_a_new_position(history, broker, (0, 3, 4))

    verdicts = duplicates_under(history, broker)

    for verdict in verdicts.values():
        assert verdict.counts["duplicate_publish_by_client"] == 1
        assert verdict.counts["duplicate_publish_after_unknown"] == 0
    assert verdicts["at-least-once"].valid is True
    assert verdicts["exactly-once"].valid is False


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_a_copy_the_workload_sent_again_after_a_failed_send_is_a_resend(broker: str) -> None:
    history = build(broker)
    history.sent(1, 1, 2)["outcome"] = FAIL  # the broker said no (but had taken it) ...
    again = dict(history.sent(1, 1, 2)) | {"outcome": 0}  # ... so the outbox sent it again
    history.sends.append(again)
    copy_at_a_new_position(history, broker, (1, 1, 2))

    verdicts = duplicates_under(history, broker)

    for verdict in verdicts.values():
        assert verdict.counts["duplicate_publish"] == 1
        assert verdict.counts["duplicate_publish_after_resend"] == 1
        assert verdict.counts["duplicate_publish_by_client"] == 0
        assert kinds(verdict) == ["duplicate-publish"]
        assert verdict.examples[0]["sends"] == 2
    assert verdicts["at-least-once"].valid is True
    assert verdicts["exactly-once"].valid is False


def test_a_repeat_without_broker_ids_is_unclassified_and_only_exactly_once_fails_it() -> None:
    history = build("standard")
    for row in history.receives:
        row["message_id"] = None
    history.receives.append(dict(history.receives[0]) | {"receive_ns": 10 * SECOND})

    at_least_once = check_duplicates(history.index())
    exactly_once = check_duplicates(history.index(), exactly_once=True)

    assert at_least_once.counts["unclassified"] == exactly_once.counts["unclassified"] == 1
    assert at_least_once.valid is True
    assert exactly_once.valid is False


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_every_class_at_once_is_counted_apart_and_judged_by_the_semantics(broker: str) -> None:
    history = build(broker)
    copy_at_a_new_position(history, broker, (0, 1, 1))  # by the client
    history.sends.append(dict(history.sent(1, 2, 3)))  # the workload sent it twice ...
    copy = dict(history.receives[history.find(1, 2, 3)]) | {"receive_ns": 20 * SECOND}
    copy |= {"offset": 25} if broker == "kafka" else {"message_id": "m-resent"}
    history.receives.append(copy)  # ... and both arrived
    redelivered = dict(history.receives[history.find(0, 2, 5)])
    history.receives.append(redelivered | {"receive_ns": 30 * SECOND, "delivery_attempt": 2})
    history.receives[history.find(1, 0, 0)]["disposition"] = 1  # nacked ...
    asked = dict(history.receives[history.find(1, 0, 0)]) | {"disposition": 0}
    history.receives.append(asked | {"receive_ns": 40 * SECOND})  # ... so delivered again

    verdicts = duplicates_under(history, broker)

    expected = {
        "duplicated": 4,
        "extra_deliveries": 4,
        "unrequested": 3,
        "redelivery": 2,
        "redelivery_after_nack": 1,
        "duplicate_publish": 2,
        "duplicate_publish_by_client": 1,
        "duplicate_publish_after_resend": 1,
        "duplicate_publish_after_unknown": 0,
        "unclassified": 0,
        "failed_acks": 0,
    }
    assert verdicts["at-least-once"].counts == verdicts["exactly-once"].counts == expected
    assert verdicts["at-least-once"].valid is True
    assert verdicts["exactly-once"].valid is False
    assert "at-least-once" in verdicts["at-least-once"].notes


def test_acks_the_broker_refused_are_counted_from_the_history_events() -> None:
    history = build("fifo")
    redelivered = dict(history.receives[history.find(0, 2, 5)])
    history.receives.append(redelivered | {"receive_ns": 30 * SECOND, "delivery_attempt": 2})
    for count in (1, 2):
        history.events.append(
            {
                "time_ns": SECOND,
                "kind": "ack-failed",
                "name": "sqs",
                "target": None,
                "detail": f'{{"count": {count}, "errors": {{"ReceiptHandleIsInvalid": {count}}}}}',
            }
        )

    duplicates = run(history, "fifo")["duplicates"]

    assert duplicates.counts["failed_acks"] == 3
    assert duplicates.counts["redelivery"] == 1
    assert "3 acks failed" in duplicates.notes


# -- ordering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["kafka", "fifo"])
def test_two_swapped_seqs_on_one_consumer_are_a_reorder(broker: str) -> None:
    history = build(broker)
    first, second = history.find(0, 3, 2), history.find(0, 3, 3)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times

    ordering = only(run(history, broker), "ordering")

    assert ordering.counts["reorder"] == 1
    assert ordering.counts["skip"] == 0
    assert kinds(ordering) == ["reorder"]
    example = ordering.examples[0]
    assert (example["seq"], example["after_seq"]) == (2, 3)
    assert example["consumer_id"] == CONSUMERS[1]


def test_receive_order_breaks_time_ties_by_row() -> None:
    history = build("kafka")
    first, second = history.find(1, 0, 4), history.find(1, 0, 5)
    history.receives[second]["receive_ns"] = history.receives[first]["receive_ns"]
    history.receives.insert(first, history.receives.pop(second))  # seq 5 first in the batch

    ordering = only(run(history, "kafka"), "ordering")

    assert ordering.counts["reorder"] == 1


def test_a_gap_filled_later_by_another_consumer_is_a_skip() -> None:
    history = build("kafka")
    late = history.receives.pop(history.find(0, 0, 2))  # partition 0, consumer 10
    late["consumer_id"] = CONSUMERS[1]
    late["receive_ns"] = history.receives[-1]["receive_ns"] + 1
    history.receives.append(late)

    ordering = only(run(history, "kafka"), "ordering")

    assert ordering.counts["skip"] == 1
    assert ordering.counts["reorder"] == 0
    assert ordering.counts["rebalance"] == 1  # p0 moved to consumer 11 for that message
    assert kinds(ordering) == ["skip", "rebalance"]
    skip = ordering.examples[0]
    assert (skip["seq"], skip["consumer_id"]) == (2, CONSUMERS[1])
    assert (skip["after_seq"], skip["after_consumer_id"]) == (5, CONSUMERS[0])


def test_a_gap_never_filled_is_no_skip() -> None:
    history = build("fifo")
    history.receives.pop(history.find(0, 0, 2))
    history.sent(0, 0, 2)["outcome"] = FAIL

    verdicts = run(history, "fifo")

    assert all_valid(list(verdicts.values())) is True, verdicts
    assert verdicts["ordering"].counts["skip"] == 0


def test_a_scope_moving_to_another_consumer_is_a_rebalance_not_a_violation() -> None:
    history = build("fifo")
    for row in history.receives:
        if row["key_id"] == 1 and row["seq"] >= 3:
            row["consumer_id"] = CONSUMERS[0]  # k-1 moves from consumer 11 to 10

    verdicts = run(history, "fifo")

    assert all_valid(list(verdicts.values())) is True, verdicts
    ordering = verdicts["ordering"]
    assert ordering.counts["rebalance"] == 1
    assert ordering.counts["reorder"] == ordering.counts["skip"] == 0
    assert kinds(ordering) == ["rebalance"]
    assert ordering.examples[0] == {
        "kind": "rebalance",
        "scope": "k-1",
        "from_consumer_id": CONSUMERS[1],
        "to_consumer_id": CONSUMERS[0],
        "receive_ns": history.stream(0, 1)[3]["receive_ns"],
    }


def test_redelivered_history_after_a_consumer_restart_is_not_a_reorder() -> None:
    history = build("kafka")
    end = history.receives[-1]["receive_ns"]
    replay = [dict(r) for r in history.receives if r["partition"] == 0 and r["offset"] >= 10]
    for step, row in enumerate(replay, 1):
        row["receive_ns"] = end + step  # consumer 10 re-reads p0 from offset 10
    history.receives.extend(replay)

    verdicts = run(history, "kafka")

    assert all_valid(list(verdicts.values())) is True, verdicts
    assert verdicts["duplicates"].counts["redelivery"] == len(replay)
    assert verdicts["ordering"].counts["reorder"] == 0


def test_inversions_where_no_order_is_promised_are_counted_not_judged() -> None:
    history = build("standard")
    first, second = history.find(1, 2, 0), history.find(1, 2, 1)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times

    verdicts = run(history, "standard")

    assert all_valid(list(verdicts.values())) is True, verdicts
    ordering = verdicts["ordering"]
    assert ordering.counts["inversions"] == 1
    assert ordering.counts["judged"] == 0
    assert kinds(ordering) == ["inversion"]
    assert "not judged" in ordering.notes


def test_a_key_moving_to_a_new_partition_is_judged_per_partition() -> None:
    """Partitions added mid-run: key 0 goes to a new partition p2 (consumer 12) from seq 3 on,
    so one producer+key spans two scopes; a swap inside p2 is still a reorder."""
    history = build("kafka")
    for row in history.receives:
        if row["key_id"] == 0 and row["seq"] >= 3:
            row.update(scope="p2", consumer_id=12, partition=2, offset=row["seq"] - 3)
    clean = check_ordering(history.index(), OrderingScope.PARTITION)
    assert clean.valid is True, clean
    assert clean.counts["rebalance"] == 0

    first, second = history.find(1, 0, 4), history.find(1, 0, 5)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times
    swapped = check_ordering(history.index(), OrderingScope.PARTITION)
    assert swapped.counts["reorder"] == 1
    assert swapped.examples[0]["scope"] == "p2"


def test_promised_order_without_scopes_is_unknown() -> None:
    history = build("kafka")
    for row in history.receives:
        row["scope"] = None

    ordering = check_ordering(history.index(), OrderingScope.PARTITION)

    assert ordering.valid is None
    assert ordering.counts["unpromised"] == 48


def test_ordering_does_not_depend_on_the_row_layout() -> None:
    """Sorted by identity (as compacted Parquet is) or shuffled, with unique receive times."""
    history = build("kafka")
    first, second = history.find(0, 3, 2), history.find(0, 3, 3)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times
    expected = check_ordering(history.index(), OrderingScope.PARTITION).counts

    history.receives.sort(key=lambda r: (r["producer_id"], r["key_id"], r["seq"]))
    assert check_ordering(history.index(), OrderingScope.PARTITION).counts == expected
    np.random.default_rng(7).shuffle(history.receives)
    assert check_ordering(history.index(), OrderingScope.PARTITION).counts == expected


def _dictionary(values: list[str], dictionary: list[str]) -> pa.DictionaryArray:
    """``values`` encoded against ``dictionary`` (which may repeat entries: the first wins)."""
    lookup: dict[str, int] = {}
    for at, value in enumerate(dictionary):
        lookup.setdefault(value, at)
    indices = pa.array([lookup[value] for value in values], pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(dictionary))


def test_scope_dictionaries_may_differ_between_chunks_and_repeat_entries() -> None:
    history = build("fifo")
    for row in history.receives:
        if row["key_id"] == 1 and row["seq"] >= 3:
            row["consumer_id"] = CONSUMERS[0]
    sends, receives, _ = history.tables()
    scopes = [row["scope"] for row in history.receives]
    half = len(scopes) // 2
    chunks = [
        _dictionary(scopes[:half], ["k-0", "k-1", "k-2", "k-3"]),
        _dictionary(scopes[half:], ["unused", "k-3", "k-2", "k-1", "k-0"]),
    ]
    at = receives.schema.get_field_index("scope")
    chunked = receives.set_column(at, "scope", pa.chunked_array(chunks))
    repeated = receives.set_column(
        at, "scope", _dictionary(scopes, ["k-1", "k-0", "k-2", "k-3", "k-1", "k-0"])
    )

    for table in (chunked, repeated):
        ordering = check_ordering(HistoryIndex(sends, table), OrderingScope.MESSAGE_GROUP)
        assert ordering.valid is True
        assert ordering.counts["rebalance"] == 1
        assert ordering.examples[0]["scope"] == "k-1"


# -- identities beyond the fast bit budget -----------------------------------------------------


@pytest.mark.parametrize(("seq_offset", "seq_bits"), [(2**40, 41), (2**62, 3)])
def test_identities_too_wide_for_64_bits_are_still_exact(seq_offset: int, seq_bits: int) -> None:
    """Producer and key ids near 2**32 force ranking the pairs; a seq near 2**62 also the seqs."""
    history = build("kafka")
    wide = {0: 2**31 + 5, 1: 2**32 - 1}
    for row in history.sends + history.receives:
        row["producer_id"] = wide[row["producer_id"]]
        row["key_id"] += 2**30
        row["seq"] += seq_offset
    history.receives.pop(history.find(wide[1], 2**30 + 2, seq_offset + 3))
    history.receives.append(dict(history.receives[0]) | {"receive_ns": 10 * SECOND})
    first = history.find(wide[0], 2**30 + 3, seq_offset + 2)
    second = history.find(wide[0], 2**30 + 3, seq_offset + 3)
    times = history.receives[first]["receive_ns"], history.receives[second]["receive_ns"]
    history.receives[second]["receive_ns"], history.receives[first]["receive_ns"] = times

    index = history.index()

    assert index.identities.seq_bits == seq_bits
    assert check_lost(index).counts["lost_write"] == 1
    assert check_duplicates(index).counts["redelivery"] == 1
    ordering = check_ordering(index, OrderingScope.PARTITION)
    assert ordering.counts["reorder"] == 1
    assert ordering.examples[0]["seq"] == seq_offset + 2


# -- lag -----------------------------------------------------------------------------------------


def lag_table(backlog: list[int | None], source: str = "broker") -> pa.Table:
    rows = [
        {"time_ns": SECOND * (s + 1), "backlog": b, "source": source} for s, b in enumerate(backlog)
    ]
    return pa.Table.from_pylist(rows, schema=LAG)


def fault_events(start_s: int, end_s: int) -> pa.Table:
    rows = [
        {"time_ns": SECOND * 1, "kind": "warmup-end", "name": "warmup"},
        {"time_ns": SECOND * start_s, "kind": "fault-start", "name": "partition"},
        {"time_ns": SECOND * end_s, "kind": "fault-end", "name": "partition"},
    ]
    return pa.Table.from_pylist(rows, schema=EVENTS)


def test_lag_that_drains_within_the_limit_is_valid() -> None:
    # a fault from 3 s to 6 s; the backlog (20 at steady state) drains by 9 s
    backlog = [5, 20, 400, 900, 1300, 1100, 600, 150, 18, 12, None, 10]
    verdict = check_lag_recovery(lag_table(backlog), fault_events(3, 6), recovery_seconds=5)

    assert verdict.valid is True, verdict
    assert verdict.counts["threshold"] == 20  # the pre-fault steady state, above 1% of peak
    assert verdict.counts["time_to_recover_ms"] == 3000
    assert verdict.counts["peak_backlog"] == 1300

    untouched = check_lag_recovery(lag_table([5, 8, 6, 9, 7]), fault_events(2, 4))
    assert untouched.valid is True
    assert untouched.counts["time_to_recover_ms"] == 0


def test_lag_that_drains_too_late_or_never_is_invalid() -> None:
    late = check_lag_recovery(
        lag_table([0, 0, 900, 800, 700, 600, 500, 400, 300, 0]),
        fault_events(3, 4),
        recovery_seconds=2,
    )
    assert late.valid is False
    assert late.counts["time_to_recover_ms"] == 6000

    never = check_lag_recovery(lag_table([0, 0, 900, 950, 990]), fault_events(3, 4))
    assert never.valid is False
    assert never.counts["recovered"] == 0


def test_lag_without_samples_is_unknown_and_without_faults_reports_the_end() -> None:
    assert check_lag_recovery(None, fault_events(3, 4)).valid is None
    assert check_lag_recovery(lag_table([None, None]), fault_events(3, 4)).valid is None

    calm = check_lag_recovery(lag_table([4, 7, 2]), pa.Table.from_pylist([], schema=EVENTS))
    assert calm.valid is True
    assert calm.counts["final_backlog"] == 2


def test_derived_backlog_counts_acked_sends_not_yet_consumed() -> None:
    history = History()
    for seq in range(4):  # sent (acked) at 0.5 s, 1.5 s, 2.5 s, 3.5 s after the start
        history.send(0, 0, seq, SECOND // 2 + seq * SECOND - 5)
    history.send(0, 0, 4, 4 * SECOND, outcome=FAIL)
    history.receive(10, 0, 0, 0, 3 * SECOND, disposition=1)  # nacked: not consumed yet
    history.receive(10, 0, 0, 0, 3 * SECOND + 10)
    history.receive(10, 0, 0, 1, 3 * SECOND + 20)
    history.receive(10, 0, 0, 1, 3 * SECOND + 30)  # redelivered: counted once

    lag = derive_backlog(history.index())

    assert lag.column("source").to_pylist() == ["derived"] * 4
    assert lag.column("backlog").to_pylist() == [1, 2, 1, 2]
    assert lag.column("time_ns").to_pylist() == [SECOND // 2 + s * SECOND for s in range(1, 5)]


def test_sorted_members_is_membership_both_ways() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        left = np.unique(rng.integers(0, 50, rng.integers(0, 30)).astype(np.uint64))
        right = np.unique(rng.integers(0, 50, rng.integers(0, 30)).astype(np.uint64))
        in_right, in_left = sorted_members(left, right)
        assert in_right.tolist() == np.isin(left, right).tolist()
        assert in_left.tolist() == np.isin(right, left).tolist()
