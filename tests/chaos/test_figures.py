"""Per-fault figures on a synthetic history: a 2 s outage in a steady 100 msg/s flow."""

import json

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from chaos.figures import fault_figures, judge_hypothesis
from chaos.verdicts import adjust_for_non_durable, adjust_for_producer_crash
from harness.checkers import check_all
from harness.drivers.base import OrderingScope
from harness.history.schema import EVENTS, RECEIVES, SENDS, EventKind, SendOutcome
from harness.history.store import History

S = 1_000_000_000
T0 = 1_700_000_000 * S
FAULT = (T0 + 3 * S, T0 + 5 * S)


def history(*, lose_in_window: int = 0, non_durable: bool = False) -> History:
    """100 msg/s for 10 s; sends intended during the fault fail (every 4th: unknown); the rest
    are acked 1 ms and received 5 ms after their intended time, except ``lose_in_window``
    acked sends of the window that are never received."""
    intended = T0 + np.arange(1000, dtype=np.int64) * (S // 100)
    in_fault = (intended >= FAULT[0]) & (intended < FAULT[1])
    outcome = np.where(in_fault, SendOutcome.FAIL, SendOutcome.OK).astype(np.uint8)
    outcome[np.flatnonzero(in_fault)[::4]] = SendOutcome.UNKNOWN
    lost = np.flatnonzero(in_fault)[1 : 1 + lose_in_window]
    outcome[lost] = SendOutcome.OK
    complete = intended + 1_000_000
    n = intended.size
    sends = pa.table(
        {
            "producer_id": np.zeros(n, np.uint32), "key_id": np.zeros(n, np.uint32),
            "seq": np.arange(n, dtype=np.uint64), "intended_ns": intended,
            "invoke_ns": intended, "complete_ns": complete, "outcome": outcome,
            "partition": np.full(n, -1, np.int32), "offset": np.full(n, -1, np.int64),
        },
        schema=SENDS,
    )  # fmt: skip
    delivered = np.flatnonzero((outcome == SendOutcome.OK) & ~np.isin(np.arange(n), lost))
    m = delivered.size
    receives = pa.table(
        {
            "consumer_id": np.zeros(m, np.uint32), "producer_id": np.zeros(m, np.uint32),
            "key_id": np.zeros(m, np.uint32), "seq": delivered.astype(np.uint64),
            "intended_ns": intended[delivered], "receive_ns": intended[delivered] + 5_000_000,
            "partition": np.full(m, -1, np.int32), "offset": np.full(m, -1, np.int64),
            "message_id": [f"m{i}" for i in delivered],
            "delivery_attempt": np.ones(m, np.int16), "disposition": np.zeros(m, np.uint8),
            "scope": [None] * m, "subscriber": [None] * m,
        },
        schema=RECEIVES,
    )  # fmt: skip
    detail = {"id": "crash", "action": "crash", "params": {}, "non_durable": non_durable}
    events = pa.Table.from_pylist(
        [
            {"time_ns": T0 + S, "kind": EventKind.WARMUP_END.value, "name": "warmup",
             "target": None, "detail": None},
            {"time_ns": FAULT[0], "kind": EventKind.FAULT_START.value, "name": "crash",
             "target": "kafka", "detail": json.dumps(detail)},
            {"time_ns": FAULT[1], "kind": EventKind.FAULT_END.value, "name": "crash",
             "target": "kafka", "detail": json.dumps({"id": "crash"})},
        ],
        schema=EVENTS,
    )  # fmt: skip
    return History(sends, receives, events)


def test_a_two_second_outage_is_measured() -> None:
    (fault,) = fault_figures(history(), None, OrderingScope.NONE)
    assert (fault["name"], fault["action"], fault["target"]) == ("crash", "crash", "kafka")
    assert (fault["start_ns"], fault["end_ns"]) == FAULT
    assert fault["errors"] == 150
    assert fault["unknown"] == 50
    assert 1.99 <= fault["unavailable_seconds"] <= 2.02
    assert fault["pre_fault_msgs_per_s"] == 100.0
    assert fault["recovery"]["throughput_seconds"] == 0.0
    assert fault["recovery"]["lag_seconds"] is None  # no lag samples given
    assert fault["anomalies"] == {
        "lost": 0, "failed-but-delivered": 0, "phantom": 0, "duplicates": 0, "ordering": 0,
    }  # fmt: skip
    assert fault["non_durable"] is False


def test_anomalies_count_only_messages_intended_within_the_window() -> None:
    (fault,) = fault_figures(history(lose_in_window=3), None, OrderingScope.NONE)
    assert fault["anomalies"]["lost"] == 3


def test_losses_to_an_in_memory_broker_s_crash_are_non_durable_not_anomalies() -> None:
    lossy = history(lose_in_window=3, non_durable=True)
    verdicts = check_all(lossy.sends, lossy.receives, lossy.events, OrderingScope.NONE)
    assert next(v for v in verdicts if v.name == "lost").valid is False
    faults = fault_figures(lossy, None, OrderingScope.NONE)
    assert faults[0]["non_durable"] is True
    lost = next(v for v in adjust_for_non_durable(verdicts, lossy, faults) if v.name == "lost")
    assert lost.valid is True
    assert lost.counts["non_durable_lost"] == 3
    assert "non-durable" in lost.notes


def test_the_hypothesis_is_judged_per_fault() -> None:
    faults = fault_figures(history(), None, OrderingScope.NONE)
    judged = judge_hypothesis({"throughput_within_percent": 20, "recover_within_seconds": 5},
                              faults, None)  # fmt: skip
    assert judged["faults"] == [
        {"fault": "crash", "throughput_recovered": True, "lag_recovered": None}
    ]
    assert judged["valid"] is True
    faults[0]["recovery"]["throughput_seconds"] = None
    assert judge_hypothesis({"recover_within_seconds": 5}, faults, None)["valid"] is False


def test_deliveries_a_crashed_producer_never_recorded_are_not_phantoms() -> None:
    full = history()
    crash = FAULT[0]
    # The producer died at the fault's start; its last 20 sends before it were never flushed.
    flushed = full.sends.filter(pc.less(full.sends.column("intended_ns"), crash - S // 5))
    receives = full.receives.filter(pc.less(full.receives.column("intended_ns"), crash))
    events = full.events.to_pylist()
    events[1]["detail"] = json.dumps({"id": "crash", "action": "producer-crash"})
    crashed = History(flushed, receives, pa.Table.from_pylist(events, schema=EVENTS))
    verdicts = check_all(crashed.sends, crashed.receives, crashed.events, OrderingScope.NONE)
    assert next(v for v in verdicts if v.name == "phantom").counts["phantom"] == 20
    faults = fault_figures(crashed, None, OrderingScope.NONE)
    phantom = next(
        v for v in adjust_for_producer_crash(verdicts, crashed, faults) if v.name == "phantom"
    )
    assert phantom.valid is True
    assert phantom.counts["unrecorded_sends"] == 20
