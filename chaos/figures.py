"""Per-fault figures of a run, from its stored history (pure: no brokers, no clock).

For each fault window (its ``fault-start`` / ``fault-end`` events):

- ``errors`` / ``unknown``: sends *intended* within the window that failed / ended unknown;
- ``unavailable_seconds``: the longest time without an acknowledged send or without a receive
  (whichever is longer; both under ``unavailable``), counted from the window's start until the
  first ack / receive after its end (or the end of the load when none came);
- ``recovery.throughput_seconds``: from the heal until the receive rate over a sliding 1 s
  window is back within the hypothesis's percentage of the pre-fault rate (the receive rate
  over the 5 s before the fault, after the warm-up, capped at the offered send rate, which is
  also used if nothing was received then); None if that did not happen before the last receive;
- ``recovery.lag_seconds``: the lag-recovery checker on this window alone (broker lag samples,
  or the backlog derived from the history);
- ``anomalies``: the checkers' anomaly counts over the messages intended within the window,
  without what ``expected_losses`` sets apart (``non_durable_lost``, ``unrecorded_sends``);
- ``non_durable``: the fault wiped an in-memory broker; acknowledged messages lost to it are
  counted as ``non_durable_lost`` in the ``lost`` check, not as an anomaly.

``scenario_section`` also judges the scenario's steady-state hypothesis. It leaves the run's
verdicts alone: the fault-aware verdict stage is ``chaos/verdicts.py``.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
from pydantic import ValidationError

from chaos.scenario import Hypothesis
from chaos.verdicts import adjust_for_faults
from harness.checkers import check_all, check_lag_recovery
from harness.drivers.base import OrderingScope
from harness.errors import UserError
from harness.history.schema import EVENTS, EventKind, SendOutcome
from harness.history.store import History
from harness.history.trusted import DAMAGED_FIX

SCENARIO_FILE = "scenario.json"
"""The scenario a run followed, written into its run folder by the runner."""
NS_PER_S = 1_000_000_000
PRE_FAULT_SECONDS = 5.0
SLIDE_NS = NS_PER_S // 10
ANOMALY_COUNTS: dict[str, tuple[str, ...]] = {
    "lost": ("lost",),
    "failed-but-delivered": ("failed_but_delivered",),
    "phantom": ("phantom",),
    "duplicates": ("duplicated",),
    "ordering": ("reorder", "skip"),
}
"""Which of each checker's counts are anomalies (the rest are measurements)."""
EXPECTED_COUNTS = ("non_durable_lost", "unrecorded_sends")
"""Counts set apart from the anomalies: what a non-durable broker or a crashed producer lost."""

I64 = npt.NDArray[np.int64]


def _i64(table: pa.Table, name: str, fill: int = -1) -> I64:
    return np.asarray(table.column(name).fill_null(fill).to_numpy(), dtype=np.int64)


def fault_windows(events: pa.Table) -> list[dict[str, Any]]:
    """The windows recorded in ``events``: id, action, target, start_ns, end_ns, details."""
    rows = events.sort_by([("time_ns", "ascending")]).to_pylist()
    windows: dict[str, dict[str, Any]] = {}
    for row in rows:
        detail = json.loads(row["detail"]) if row.get("detail") else {}
        if row["kind"] == EventKind.FAULT_START.value:
            windows[row["name"]] = {
                "name": row["name"],
                "action": detail.get("action"),
                "target": row.get("target"),
                "params": detail.get("params", {}),
                "start_ns": row["time_ns"],
                "end_ns": None,
                "non_durable": bool(detail.get("non_durable", False)),
            }
        elif row["kind"] == EventKind.FAULT_END.value and row["name"] in windows:
            windows[row["name"]]["end_ns"] = row["time_ns"]
            if detail.get("error"):
                windows[row["name"]]["heal_error"] = detail["error"]
    return list(windows.values())


def _unavailable(times: I64, start: int, end: int, load_end: int) -> float:
    """Longest gap between ``start``, the ``times`` after it, and the first time at or after
    ``end`` (or ``load_end`` if none came)."""
    relevant = times[times > start]
    first_after = relevant[relevant >= end]
    horizon = int(first_after.min()) if first_after.size else max(load_end, end)
    inside = relevant[relevant <= horizon]
    points = np.concatenate([[start], np.sort(inside)])
    if not first_after.size:
        points = np.concatenate([points, [horizon]])
    return round(float(np.diff(points).max(initial=0)) / NS_PER_S, 3)


def _rate(times: I64, start: int, stop: int) -> float:
    """Messages per second within [start, stop)."""
    if stop <= start:
        return 0.0
    count = np.searchsorted(times, stop) - np.searchsorted(times, start)
    return float(count) * NS_PER_S / (stop - start)


def _throughput_recovery(
    receive_times: I64, end: int, horizon: int, *, pre_rate: float, percent: float
) -> float | None:
    """Seconds from ``end`` until a 1 s sliding window's rate is within ``percent`` of
    ``pre_rate``; None if no window ending before ``horizon`` (the last receive) gets there."""
    if pre_rate <= 0:
        return None
    wanted = pre_rate * (1 - percent / 100)
    offsets = np.arange(end, horizon - NS_PER_S + 1, SLIDE_NS, dtype=np.int64)
    if not offsets.size:
        return None
    counts = np.searchsorted(receive_times, offsets + NS_PER_S) - np.searchsorted(
        receive_times, offsets
    )
    good = np.flatnonzero(counts >= wanted)
    return round(float(offsets[good[0]] - end) / NS_PER_S, 1) if good.size else None


def _events_of(events: pa.Table, window: dict[str, Any]) -> pa.Table:
    """This fault's start and end (and the warm-up marker) only, for the lag checker."""
    rows = [
        {
            "time_ns": window["start_ns"],
            "kind": EventKind.FAULT_START.value,
            "name": window["name"],
            "target": None,
            "detail": None,
        }
    ]
    if window["end_ns"] is not None:
        rows.append(
            {
                "time_ns": window["end_ns"],
                "kind": EventKind.FAULT_END.value,
                "name": window["name"],
                "target": None,
                "detail": None,
            }
        )
    warmups = events.filter(pc.equal(events.column("kind"), EventKind.WARMUP_END.value))
    return pa.concat_tables([warmups, pa.Table.from_pylist(rows, schema=EVENTS)])


def _within(table: pa.Table, start: int, end: int) -> pa.Table:
    intended = table.column("intended_ns")
    return table.filter(pc.and_(pc.greater_equal(intended, start), pc.less(intended, end)))


def _anomalies(
    history: History, window: dict[str, Any], end: int, ordering: OrderingScope
) -> tuple[dict[str, int], dict[str, int]]:
    """The checkers' anomaly counts over the messages intended within the window; losses to a
    non-durable broker and deliveries a crashed producer never recorded are left out."""
    start = int(window["start_ns"])
    sends, receives = _within(history.sends, start, end), _within(history.receives, start, end)
    inside = History(sends, receives, history.events.slice(0, 0))
    verdicts = check_all(sends, receives, inside.events, ordering)
    verdicts = adjust_for_faults(verdicts, inside, [window])
    found: dict[str, int] = {}
    expected: dict[str, int] = {}
    for verdict in verdicts:
        keys = ANOMALY_COUNTS.get(verdict.name)
        if keys is None:
            continue
        set_apart = {k: int(verdict.counts.get(k, 0)) for k in EXPECTED_COUNTS}
        expected.update({k: v for k, v in set_apart.items() if v})
        total = sum(int(verdict.counts.get(key, 0)) for key in keys)
        found[verdict.name] = total - sum(set_apart.values())
    return found, expected


def fault_figures(
    history: History,
    lag: pa.Table | None,
    ordering: OrderingScope,
    *,
    throughput_within_percent: float = 20.0,
    recover_within_seconds: float = 30.0,
) -> list[dict[str, Any]]:
    """The per-fault figures (see the module docstring), in start order."""
    sends = history.sends
    intended = _i64(sends, "intended_ns")
    outcome = np.asarray(sends.column("outcome").to_numpy(), dtype=np.int64)
    complete = _i64(sends, "complete_ns")
    acked = np.sort(complete[(outcome == SendOutcome.OK) & (complete >= 0)])
    received = np.sort(_i64(history.receives, "receive_ns"))
    load_end = int(intended.max()) if intended.size else 0
    load_start = int(intended.min()) if intended.size else 0
    warmups = [
        row["time_ns"]
        for row in history.events.to_pylist()
        if row["kind"] == EventKind.WARMUP_END.value
    ]
    steady_from = max([load_start, *warmups])
    figures = []
    for window in fault_windows(history.events):
        start = int(window["start_ns"])
        healed = window["end_ns"] is not None
        end = int(window["end_ns"]) if healed else max(load_end, start)
        in_window = (intended >= start) & (intended < end)
        pre_from = max(steady_from, start - round(PRE_FAULT_SECONDS * NS_PER_S))
        if start - pre_from < NS_PER_S // 2:
            pre_from = load_start  # too little steady time before the fault: use all of it
        offered = intended.size * NS_PER_S / max(load_end - load_start, 1)
        pre_rate = _rate(received, pre_from, start) if start > pre_from else 0.0
        # Nothing received yet (a slow group join) or a catch-up burst: the offered rate.
        pre_rate = offered if pre_rate == 0.0 else min(pre_rate, offered)
        lag_verdict = check_lag_recovery(
            lag, _events_of(history.events, window), recover_within_seconds
        )
        lag_ms = lag_verdict.counts.get("time_to_recover_ms")
        anomalies, expected_losses = _anomalies(history, window, end, ordering)
        figures.append(
            {
                **window,
                "end_ns": window["end_ns"],
                "healed": healed,
                "duration_seconds": round((end - start) / NS_PER_S, 3),
                "errors": int((in_window & (outcome == SendOutcome.FAIL)).sum()),
                "unknown": int((in_window & (outcome == SendOutcome.UNKNOWN)).sum()),
                "unavailable_seconds": max(
                    _unavailable(acked, start, end, load_end),
                    _unavailable(received, start, end, load_end),
                ),
                "unavailable": {
                    "sends": _unavailable(acked, start, end, load_end),
                    "receives": _unavailable(received, start, end, load_end),
                },
                "pre_fault_msgs_per_s": round(pre_rate, 1),
                "recovery": {
                    "throughput_seconds": _throughput_recovery(
                        received,
                        end,
                        int(received[-1]) + 1 if received.size else end,
                        pre_rate=pre_rate,
                        percent=throughput_within_percent,
                    ),
                    "lag_seconds": None if lag_ms is None else round(lag_ms / 1000, 3),
                    "lag_notes": lag_verdict.notes,
                },
                "anomalies": anomalies,
                "expected_losses": expected_losses,
            }
        )
    return figures


def judge_hypothesis(
    hypothesis: dict[str, Any], faults: list[dict[str, Any]], lag: pa.Table | None
) -> dict[str, Any]:
    """Per fault: did throughput and lag recover within the allowed time; overall: max lag."""
    limit = float(hypothesis.get("recover_within_seconds", 30.0))
    per_fault = []
    for fault in faults:
        recovery = fault["recovery"]
        throughput = (
            None
            if hypothesis.get("throughput_within_percent", 20.0) is None
            else (
                recovery["throughput_seconds"] is not None
                and recovery["throughput_seconds"] <= limit
            )
        )
        lag_ok = None if recovery["lag_seconds"] is None else recovery["lag_seconds"] <= limit
        per_fault.append(
            {"fault": fault["name"], "throughput_recovered": throughput, "lag_recovered": lag_ok}
        )
    max_lag_limit = hypothesis.get("max_lag")
    peak = None
    if lag is not None and lag.num_rows:
        known = lag.column("backlog").drop_null()
        peak = int(pc.max(known).as_py()) if len(known) else None
    max_lag_ok = None if max_lag_limit is None or peak is None else peak <= max_lag_limit
    judged = [v for f in per_fault for v in (f["throughput_recovered"], f["lag_recovered"])]
    judged.append(max_lag_ok)
    known = [v for v in judged if v is not None]
    valid = all(known) if known or not faults else None
    return {
        **hypothesis,
        "faults": per_fault,
        "peak_lag": peak,
        "max_lag_ok": max_lag_ok,
        "valid": valid,
    }


def read_scenario(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SCENARIO_FILE
    if not path.exists():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}): {DAMAGED_FIX}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("name"), str):
        raise UserError(f"{path}: not a scenario (no name): {DAMAGED_FIX}")
    try:  # the part the re-check reads; the rest is kept as written
        Hypothesis.model_validate(loaded.get("hypothesis", {}))
    except ValidationError as exc:
        raise UserError(f"{path}: hypothesis: {exc.errors()[0]['msg']}: {DAMAGED_FIX}") from exc
    return loaded


def scenario_section(
    run_dir: Path, history: History, lag: pa.Table | None, ordering: OrderingScope
) -> dict[str, Any] | None:
    """result.json's ``scenario`` (None for a run without ``scenario.json``); its ``faults``
    are what ``chaos.verdicts.adjust_for_faults`` adjusts the run's verdicts for."""
    scenario = read_scenario(run_dir)
    if scenario is None:
        return None
    hypothesis = scenario.get("hypothesis", {})
    faults = fault_figures(
        history,
        lag,
        ordering,
        throughput_within_percent=hypothesis.get("throughput_within_percent") or 20.0,
        recover_within_seconds=hypothesis.get("recover_within_seconds", 30.0),
    )
    return {
        "name": scenario["name"],
        "description": scenario.get("description", ""),
        "hypothesis": judge_hypothesis(hypothesis, faults, lag),
        "faults": faults,
    }
