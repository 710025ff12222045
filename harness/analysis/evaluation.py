"""The end-of-run evaluation (``harness.run.result.evaluate``) of a large compacted history in
bounded memory: one pass over its identity ranges runs the checkers and gathers the figures
(and, without a broker lag probe, the derived backlog), plus column-only passes for what spans
ranges. Memory follows ``MESSAGES_PER_RANGE``, not the run (docs/architecture.md, "Analysis in
bounded memory").
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.analysis.allocation import freed_memory_kept
from harness.analysis.bounded_checks import RangeChecks, merged_verdicts
from harness.analysis.bounded_figures import FigureAccumulator
from harness.analysis.derived_backlog import DerivedBacklog
from harness.analysis.history_ranges import (
    MESSAGES_PER_RANGE,
    history_ranges,
    is_compacted,
    message_count,
)
from harness.analysis.ranges import IdentityRange, NotSortedError
from harness.analysis.segments import (
    SegmentTask,
    check_segments,
    receive_time_passes,
    segments,
    survey,
    worker_pool,
)
from harness.checkers import Verdict
from harness.drivers.base import OrderingScope
from harness.history.schema import EVENTS
from harness.history.store import history_dir, parquet_path
from harness.history.trusted import DAMAGED_FIX, UntrustedTableError, read_parquet
from harness.run.figures import Window, not_sent

WORKERS = 2
"""Ranges checked at once: this process and ``WORKERS - 1`` worker processes; memory grows
with each, about one range's worth (plus an interpreter for a worker process)."""

PROCESSES_FROM_RANGES = 48
"""Histories of at least this many ranges (about 24 M messages) are checked in ``WORKERS - 1``
worker processes and this process; smaller ones on ``WORKERS`` threads. A worker process costs
about 2 CPU-seconds to start (an interpreter importing the libraries and the main module): at
12 ranges it was slower than the threads, at 200 (100 M messages) faster by about a tenth
(docs/benchmarks.md); 48 lies between the two measured points, the crossover itself is not
measured."""

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
    broker's samples, or None to derive the backlog from the history. The ranges are checked
    in ``WORKERS`` processes (``segments``); this process surveys, merges and ranks."""
    events = read_parquet(parquet_path(run_dir, "events"), EVENTS, versioned=True)
    per_range = MESSAGES_PER_RANGE if messages_per_range is None else messages_per_range

    def ranges() -> Iterator[IdentityRange]:
        return history_ranges(run_dir, per_range)

    processes = (message_count(run_dir) or 0) >= PROCESSES_FROM_RANGES * per_range
    with worker_pool(WORKERS, processes=processes) as slots:
        try:
            found = survey(run_dir, per_range)
            figures = FigureAccumulator(window, message_size, found.origin)
            derived = DerivedBacklog() if lag is None else None
            tasks = [
                SegmentTask(
                    run_dir=run_dir,
                    segment=segment,
                    messages_per_range=per_range,
                    read_up_to=found.read_up_to,
                    ordering=ordering,
                    exactly_once=exactly_once,
                    window=window,
                    message_size=message_size,
                    origin=found.origin,
                    backlog_folder=None if derived is None else derived.folder,
                    name=f"segment{index}-",
                )
                for index, segment in enumerate(segments(found.starts, WORKERS))
            ]
            checks = RangeChecks()
            for result in check_segments(slots, tasks):
                checks.extend(result.checks)
                figures.merge(result.figures)
                if derived is not None and result.backlog is not None:
                    derived.merge(result.backlog)
            final_lag = derived.table() if derived is not None else lag
            verdicts = merged_verdicts(
                checks, ranges, events, ordering, final_lag, exactly_once=exactly_once
            )
        except NotSortedError as exc:
            raise UntrustedTableError(
                f"{history_dir(run_dir)}: {exc}, as compaction writes them (rewritten by "
                f"another tool?): {DAMAGED_FIX}"
            ) from exc
        series = figures.time_series(receive_time_passes(run_dir, slots, 2 * WORKERS))
    return BoundedEvaluation(
        verdicts=verdicts,
        lag=final_lag,
        counts=figures.counts(not_sent(events)),
        figures={
            "throughput": figures.throughput_figures(),
            "latency": figures.latency_figures(),
            "series": series,
        },
        events=events,
    )
