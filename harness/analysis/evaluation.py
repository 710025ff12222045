"""The end-of-run evaluation (``harness.run.result.evaluate``) of a large compacted history in
bounded memory: one pass over its identity ranges runs the checkers and gathers the figures
(and, without a broker lag probe, the derived backlog), plus column-only passes for what spans
ranges. Memory follows ``MESSAGES_PER_RANGE``, not the run (docs/architecture.md, "Analysis in
bounded memory").
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.analysis.allocation import freed_memory_kept
from harness.analysis.bounded_checks import check_ranges, max_offsets_read
from harness.analysis.bounded_figures import FigureAccumulator, min_intended_ns
from harness.analysis.derived_backlog import DerivedBacklog
from harness.analysis.history_ranges import (
    MESSAGES_PER_RANGE,
    history_ranges,
    is_compacted,
    message_count,
)
from harness.analysis.ranges import IdentityRange, NotSortedError, parquet_batches
from harness.checkers import HistoryIndex, Verdict
from harness.drivers.base import OrderingScope
from harness.history.schema import EVENTS, RECEIVES, SENDS
from harness.history.store import history_dir, parquet_path
from harness.history.trusted import DAMAGED_FIX, UntrustedTableError, read_parquet
from harness.run.figures import Window, not_sent

WORKERS = 2
"""Ranges checked at once (threads): memory grows with each, about one range's worth."""

BOUNDED_ABOVE_MESSAGES = 2_000_000
"""Histories with more sends than this are evaluated range by range; smaller ones whole (the
whole-history path is simpler and, below this size, fits easily)."""


def applies(run_dir: Path, *, has_flow_checks: bool, has_scenario: bool) -> bool:
    """Whether ``evaluate`` takes the bounded path: a large compacted history of a raw
    throughput run without a fault scenario (a flow's invariant checks and the scenario's
    per-fault figures still read the whole history)."""
    if has_flow_checks or has_scenario or not is_compacted(run_dir):
        return False
    messages = message_count(run_dir)
    return messages is not None and messages > BOUNDED_ABOVE_MESSAGES


@dataclass(frozen=True)
class BoundedEvaluation:
    verdicts: list[Verdict]
    lag: pa.Table
    counts: dict[str, int]
    figures: dict[str, Any]
    """``throughput``, ``latency`` and ``series`` (``lag`` comes from ``lag``)."""
    events: pa.Table


@freed_memory_kept()  # for the whole call: a context manager from contextlib decorates too
def evaluate_in_ranges(
    run_dir: Path,
    ordering: OrderingScope,
    window: Window,
    message_size: int,
    lag: pa.Table | None,
    *,
    exactly_once: bool = False,
    messages_per_range: int | None = None,
) -> BoundedEvaluation:
    """The verdicts and figures ``evaluate`` derives from the whole history; ``lag``: the
    broker's samples, or None to derive the backlog from the history."""
    events = read_parquet(parquet_path(run_dir, "events"), EVENTS, versioned=True)
    sends_path, receives_path = parquet_path(run_dir, "sends"), parquet_path(run_dir, "receives")
    read_up_to = max_offsets_read(parquet_batches(receives_path, RECEIVES, ["partition", "offset"]))
    origin = min_intended_ns(parquet_batches(sends_path, SENDS, ["intended_ns"]))
    figures = FigureAccumulator(window, message_size, origin)
    derived = DerivedBacklog() if lag is None else None

    lock = threading.Lock()

    def on_range(part: IdentityRange, history: HistoryIndex) -> None:
        with lock:
            figures.add(part, history)
            if derived is not None:
                derived.add(history)

    per_range = MESSAGES_PER_RANGE if messages_per_range is None else messages_per_range

    def ranges() -> Iterator[IdentityRange]:
        return history_ranges(run_dir, per_range)

    lag_table: list[pa.Table] = [] if lag is None else [lag]

    def final_lag() -> pa.Table:
        if not lag_table and derived is not None:
            lag_table.append(derived.table())
        return lag_table[0]

    try:
        verdicts = check_ranges(
            ranges,
            read_up_to,
            events,
            ordering,
            final_lag,
            exactly_once=exactly_once,
            on_range=on_range,
            workers=WORKERS,
        )
    except NotSortedError as exc:
        raise UntrustedTableError(
            f"{history_dir(run_dir)}: {exc}, as compaction writes them (rewritten by another "
            f"tool?): {DAMAGED_FIX}"
        ) from exc

    def receive_times() -> Iterator[pa.RecordBatch]:
        return parquet_batches(receives_path, RECEIVES, ["receive_ns", "intended_ns"])

    return BoundedEvaluation(
        verdicts=verdicts,
        lag=final_lag(),
        counts=figures.counts(not_sent(events)),
        figures={
            "throughput": figures.throughput_figures(),
            "latency": figures.latency_figures(),
            "series": figures.time_series(receive_times),
        },
        events=events,
    )
