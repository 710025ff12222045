"""Lag recovery: does the consumers' backlog return to about zero soon after the faults heal?

Input: lag samples (``time_ns``, ``backlog``, ``source``), from the broker (Kafka end offset minus
committed offset, SQS visible plus in-flight) or derived from the history (``derive_backlog``,
for Pub/Sub's emulator, which has no metric). Samples with a null backlog (the probe failed) are
ignored; when broker samples exist, derived ones are ignored.

Heal time: the last ``fault-end`` event. Threshold, "about zero": the largest of ``min_backlog``
(10), ``1%`` of the peak backlog, and the highest backlog sampled before the first fault (after
``warmup-end`` if there is one), since a fast producer keeps some messages in flight even in a
healthy steady state.

The backlog has *recovered* at the first sample at or after the heal that is at or below the
threshold; the time to recover is that sample's time minus the heal time (0 if the last sample
before the heal was already at or below it). ``valid``: True if it recovered within
``recovery_seconds``; False if later or never; None without samples (or without samples after
the heal). With no ``fault-end`` event: True, reporting the final backlog.

A backlog that recovers and later grows again is not judged here: that is a later slowdown,
not a slow recovery, and shows in the final backlog and the throughput.
"""

import math

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.columns import (
    EVENT_COLUMNS,
    FAULT_END,
    FAULT_START,
    LAG_COLUMNS,
    WARMUP_END,
    require_columns,
)
from harness.checkers.index import I64, column
from harness.checkers.verdict import Verdict

NAME = "lag-recovery"
_NS_PER_MS = 1_000_000


def _event_times(events: pa.Table, kind: str) -> list[int]:
    kinds = events.column("kind").to_pylist()
    times = events.column("time_ns").to_pylist()
    return [time for time, name in zip(times, kinds, strict=True) if name == kind]


def _samples(lag: pa.Table) -> tuple[I64, I64, str]:
    """Sorted (time_ns, backlog) of the usable samples and the source they came from."""
    time = column(lag, "time_ns", np.int64)
    backlog = column(lag, "backlog", np.int64)
    known = np.asarray(pc.is_valid(lag.column("backlog")).to_numpy(), dtype=np.bool_)
    source = np.asarray(lag.column("source").to_numpy(), dtype=object)
    broker = known & (source == "broker")
    used = broker if broker.any() else known
    label = "broker" if broker.any() else "derived"
    order = np.argsort(time[used], kind="stable")
    return time[used][order], backlog[used][order], label


def check_lag_recovery(
    lag: pa.Table | None,
    events: pa.Table,
    recovery_seconds: float = 30.0,
    *,
    min_backlog: int = 10,
    peak_fraction: float = 0.01,
) -> Verdict:
    """Whether the backlog returned to about zero within ``recovery_seconds`` of the last heal."""
    if lag is None or lag.num_rows == 0:
        return Verdict(NAME, None, notes="no lag samples")
    require_columns(lag, LAG_COLUMNS, "lag")
    require_columns(events, EVENT_COLUMNS, "events")
    time, backlog, source = _samples(lag)
    if not time.size:
        return Verdict(NAME, None, notes="no lag sample has a known backlog")

    peak = int(backlog.max())
    counts = {"samples": int(time.size), "peak_backlog": peak, "final_backlog": int(backlog[-1])}
    heals = _event_times(events, FAULT_END)
    if not heals:
        notes = f"no fault healed; final backlog {counts['final_backlog']} ({source})"
        return Verdict(NAME, True, counts, notes=notes)
    heal = max(heals)

    starts = _event_times(events, FAULT_START)
    warmups = _event_times(events, WARMUP_END)
    first_fault = min(starts) if starts else heal
    steady = (time < first_fault) & (time >= (max(warmups) if warmups else time[0]))
    baseline = int(backlog[steady].max()) if steady.any() else 0
    threshold = max(min_backlog, math.ceil(peak_fraction * peak), baseline)
    counts.update(threshold=threshold, baseline_backlog=baseline)
    after_heal = time >= heal
    if not after_heal.any():
        notes = f"no lag sample after the last fault healed ({source})"
        return Verdict(NAME, None, counts, notes=notes)
    first_after = int(np.flatnonzero(after_heal)[0])
    counts["backlog_at_heal"] = int(backlog[first_after])

    low = np.flatnonzero(after_heal & (backlog <= threshold))
    if not low.size:
        counts["recovered"] = 0
        notes = (
            f"backlog never returned to <= {threshold} after the last heal: last sample "
            f"{counts['final_backlog']} ({source})"
        )
        return Verdict(NAME, False, counts, notes=notes)
    already_low = (
        first_after > 0 and backlog[first_after - 1] <= threshold and low[0] == first_after
    )
    recovery_ms = 0 if already_low else (int(time[low[0]]) - heal) // _NS_PER_MS
    counts.update(recovered=1, time_to_recover_ms=recovery_ms)
    valid = recovery_ms <= recovery_seconds * 1000
    notes = (
        f"backlog back to <= {threshold} {recovery_ms} ms after the last heal "
        f"({'within' if valid else 'beyond'} {recovery_seconds:g} s; peak {peak}, {source})"
    )
    return Verdict(NAME, valid, counts, notes=notes)
