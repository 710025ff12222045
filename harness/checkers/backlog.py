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
from harness.checkers.index import HistoryIndex, column, run_starts, sorted_member

NANOSECONDS_PER_SECOND = 1_000_000_000


def derive_backlog(history: HistoryIndex, interval_ns: int = NANOSECONDS_PER_SECOND) -> pa.Table:
    """The history's backlog every ``interval_ns``, as a lag table with source ``derived``."""
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    complete = column(history.sends, "complete_ns", np.int64)
    entered = complete[(history.send_outcome == Outcome.OK) & (complete >= 0)]

    acked = np.flatnonzero(
        column(history.receives, "disposition", np.uint8, 255) == Disposition.ACKED
    )
    codes = history.identities.receives[acked]
    time = history.receive_time[acked]
    order = np.argsort(codes)
    codes = codes[order]
    starts = run_starts(codes)
    first_acked = np.minimum.reduceat(time[order], starts) if starts.size else time[:0]
    ok_keys = history.send_keys[history.send_key_outcome == Outcome.OK]
    consumed = first_acked[sorted_member(codes[starts], ok_keys)]

    if not entered.size and not consumed.size:
        return LAG_SCHEMA.empty_table()
    start = int(
        min(
            entered.min(initial=np.iinfo(np.int64).max),
            consumed.min(initial=np.iinfo(np.int64).max),
        )
    )
    end = int(max(entered.max(initial=start), consumed.max(initial=start)))
    bins = (end - start) // interval_ns + 1
    sent = np.cumsum(np.bincount((entered - start) // interval_ns, minlength=bins))
    done = np.cumsum(np.bincount((consumed - start) // interval_ns, minlength=bins))
    backlog = np.maximum(sent - done, 0).astype(np.int64)
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
