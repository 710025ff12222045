"""A backlog derived from the history, for brokers with no lag metric (the Pub/Sub emulator).

At the end of each interval: acknowledged sends so far (ok outcomes, by ``complete_ns``) minus
those of them consumed so far (first acked delivery, by ``receive_ns``), floored at 0 (a consumer
may ack a message before its producer hears the broker's ack). An acknowledged message never
consumed (lost) stays in this backlog for good, so a loss also shows as a lag that never
recovers.
"""

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.columns import LAG_SCHEMA, Disposition, Outcome
from harness.checkers.index import I64, HistoryIndex, column, run_starts, sorted_member

NANOSECONDS_PER_SECOND = 1_000_000_000
_LATEST = np.iinfo(np.int64).max


def backlog_times(history: HistoryIndex) -> tuple[I64, I64]:
    """When each acknowledged send entered the backlog (its ``complete_ns``) and when each of
    them left it (its first acked delivery's ``receive_ns``), in no particular order."""
    complete = column(history.sends, "complete_ns", np.int64)
    entered = complete[(history.send_outcome == Outcome.OK) & (complete >= 0)]
    acked = column(history.receives, "disposition", np.uint8, 255) == Disposition.ACKED
    # The acked receives in identity order: the checkers' sort, filtered (no sort again).
    rows = history.receive_order[acked[history.receive_order]]
    codes = history.identities.receives[rows]
    time = history.receive_time[rows]
    starts = run_starts(codes)
    first_acked = np.minimum.reduceat(time, starts) if starts.size else time[:0]
    ok_keys = history.send_keys[history.send_key_outcome == Outcome.OK]
    return entered, first_acked[sorted_member(codes[starts], ok_keys)]


def binned(times: I64, start: int, interval_ns: int, bins: int) -> I64:
    """How many of ``times`` fall in each of ``bins`` intervals from ``start``."""
    counts: I64 = np.bincount((times - start) // interval_ns, minlength=bins)
    return counts


def backlog_table(entered: I64, left: I64, start: int, interval_ns: int) -> pa.Table:
    """The lag table (source ``derived``) of the backlog at the end of each interval from
    ``start``, given how many messages entered and left it in each (``np.bincount`` of
    ``bin_index``, one length)."""
    bins = entered.size
    backlog = np.maximum(np.cumsum(entered) - np.cumsum(left), 0).astype(np.int64)
    times = start + interval_ns * np.arange(1, bins + 1, dtype=np.int64)
    return pa.table(
        {
            "time_ns": times,
            "backlog": backlog,
            "source": pa.array(["derived"] * bins, pa.string()),
            "error": pa.nulls(bins, pa.string()),
        },
        schema=LAG_SCHEMA,
    )


def derive_backlog(history: HistoryIndex, interval_ns: int = NANOSECONDS_PER_SECOND) -> pa.Table:
    """The history's backlog every ``interval_ns``, as a lag table with source ``derived``."""
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    entered, consumed = backlog_times(history)
    if not entered.size and not consumed.size:
        return LAG_SCHEMA.empty_table()
    start = int(min(entered.min(initial=_LATEST), consumed.min(initial=_LATEST)))
    end = int(max(entered.max(initial=start), consumed.max(initial=start)))
    bins = (end - start) // interval_ns + 1
    return backlog_table(
        binned(entered, start, interval_ns, bins),
        binned(consumed, start, interval_ns, bins),
        start,
        interval_ns,
    )
