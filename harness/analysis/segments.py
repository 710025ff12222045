"""Identity ranges checked in worker processes, so that both cores work.

A *survey* (one pass over a few columns of each file: producer+key, a Kafka partition's
offsets, the intended send times) cuts the history into the same identity ranges the pass
over every column would, and notes where each starts in both files, the highest offset read
from each partition and the run's first intended send. Consecutive ranges are grouped into
*segments*; each worker process opens the Parquet files itself, reads its segment from those
rows on, checks it range by range (``bounded_checks.check_range``) and gathers its figures
and derived backlog, and hands back only counts, capped examples, scope runs, histogram
bucket counts and the per-second counts. The main process merges the segments in identity
order, so the verdicts and figures are the ones a single pass gives.

Why processes, not threads: with two threads the GIL and its hand-offs kept the second core
about half used (docs/architecture.md, "CPU per record").
"""

import contextlib
import functools
import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.analysis.allocation import freed_memory_kept
from harness.analysis.bounded_checks import RangeChecks, check_range, max_offsets_read
from harness.analysis.bounded_figures import FigureAccumulator, min_intended_ns
from harness.analysis.derived_backlog import DerivedBacklog
from harness.analysis.exact_ranks import Passes
from harness.analysis.ranges import identity_ranges, parquet_batches
from harness.checkers import HistoryIndex
from harness.drivers.base import OrderingScope
from harness.history.schema import RECEIVES, SENDS
from harness.history.store import parquet_path
from harness.run.figures import Window

I64 = npt.NDArray[np.int64]
RANGES_PER_SEGMENT = 16
"""At least this many ranges per segment: a worker decodes and drops the rows of a segment's
first row group that come before it (Parquet has no finer way in), so segments are few."""
SEGMENTS_PER_WORKER = 4
"""At most: several per worker even out ranges that cost more than others."""

_SURVEY_SENDS = _SURVEY_RECEIVES = ["producer_id", "key_id"]
_OFFSETS = ["partition", "offset"]
_RECEIVE_TIMES = ["receive_ns", "intended_ns"]
Part = TypeVar("Part")
Task = TypeVar("Task")
Done = TypeVar("Done")


def _narrow(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    return pa.schema([schema.field(name) for name in columns])


@dataclass(frozen=True)
class Survey:
    """What the column-only pass finds before any range is checked."""

    read_up_to: I64
    """The highest offset delivered from each Kafka partition (``max_offsets_read``)."""
    origin: int | None
    """The run's first intended send (the time series' origin)."""
    starts: list[tuple[int, int]]
    """Each identity range's first row in the sends and in the receives."""


def survey(run_dir: Path, messages_per_range: int) -> Survey:
    """Cut the compacted history into identity ranges from its producer+key columns alone
    (``identity_ranges``' own cut, so the same ranges); raises ``NotSortedError`` as it. The
    receives' offsets are read on a thread beside the cut (Parquet decodes without the GIL),
    and the first intended send comes from the row groups' statistics where they have them."""
    sends = parquet_batches(parquet_path(run_dir, "sends"), SENDS, _SURVEY_SENDS)
    receives = parquet_batches(parquet_path(run_dir, "receives"), RECEIVES, _SURVEY_RECEIVES)
    schemas = (_narrow(SENDS, _SURVEY_SENDS), _narrow(RECEIVES, _SURVEY_RECEIVES))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="survey") as beside:
        offsets = parquet_batches(parquet_path(run_dir, "receives"), RECEIVES, _OFFSETS)
        read_up_to = beside.submit(max_offsets_read, offsets)
        starts: list[tuple[int, int]] = []
        send_row = receive_row = 0
        for part in identity_ranges(sends, receives, schemas, messages_per_range):
            starts.append((send_row, receive_row))
            send_row += part.sends.num_rows
            receive_row += part.receives.num_rows
        origin = _first_intended(parquet_path(run_dir, "sends"))
        return Survey(read_up_to.result(), origin, starts)


def _first_intended(sends: Path) -> int | None:
    """The smallest ``intended_ns``: the row groups' minimums, or a scan of the column when a
    row group has none (statistics are optional in Parquet)."""
    metadata = pq.ParquetFile(sends).metadata
    column = [metadata.schema.column(i).name for i in range(metadata.num_columns)].index(
        "intended_ns"
    )
    minimums = []
    for group in range(metadata.num_row_groups):
        if not metadata.row_group(group).num_rows:
            continue
        statistics = metadata.row_group(group).column(column).statistics
        if statistics is None or not statistics.has_min_max:
            return min_intended_ns(parquet_batches(sends, SENDS, ["intended_ns"]))
        minimums.append(int(statistics.min))
    return min(minimums, default=None)


@dataclass(frozen=True)
class Segment:
    """Consecutive identity ranges, checked by one worker process."""

    first_send_row: int
    first_receive_row: int
    ranges: int


def segments(starts: list[tuple[int, int]], workers: int) -> list[Segment]:
    """The ranges (``Survey.starts``) grouped into segments of about equal size, in order."""
    count = workers * max(1, min(SEGMENTS_PER_WORKER, len(starts) // RANGES_PER_SEGMENT))
    count = max(1, min(count, len(starts)))
    cuts = [len(starts) * i // count for i in range(count + 1)]
    return [Segment(*starts[begin], end - begin) for begin, end in itertools.pairwise(cuts)]


@dataclass(frozen=True)
class SegmentTask:
    """Everything a worker process needs to check one segment (pickled to it)."""

    run_dir: Path
    segment: Segment
    messages_per_range: int
    read_up_to: I64
    ordering: OrderingScope
    exactly_once: bool
    window: Window
    message_size: int
    origin: int | None
    backlog_folder: Path | None
    """Where to spill the derived backlog's times (None: the broker's lag is used)."""
    name: str
    """Keeps this segment's spilled files apart from the others'."""


@dataclass(frozen=True)
class SegmentResult:
    checks: RangeChecks
    figures: FigureAccumulator
    backlog: DerivedBacklog | None


def check_segment(task: SegmentTask) -> SegmentResult:
    """Check one segment's ranges and gather their figures (in a worker process, or in this
    one when there is a single segment; the caller keeps freed memory, ``allocation``)."""
    segment = task.segment
    checks = RangeChecks()
    figures = FigureAccumulator(task.window, task.message_size, task.origin)
    backlog = (
        None
        if task.backlog_folder is None
        else DerivedBacklog(spill_to=task.backlog_folder, name=task.name)
    )
    ranges = identity_ranges(
        parquet_batches(parquet_path(task.run_dir, "sends"), SENDS, None, segment.first_send_row),
        parquet_batches(
            parquet_path(task.run_dir, "receives"), RECEIVES, None, segment.first_receive_row
        ),
        (SENDS, RECEIVES),
        task.messages_per_range,
    )
    for read in itertools.islice(ranges, segment.ranges):
        part = replace(read, first_receive_row=read.first_receive_row + segment.first_receive_row)
        history = HistoryIndex(part.sends, part.receives)
        checks.add(
            check_range(
                part, history, task.read_up_to, task.ordering, exactly_once=task.exactly_once
            )
        )
        figures.add(part, history)
        if backlog is not None:
            backlog.add(history)
    return SegmentResult(checks, figures, backlog)


def _ready() -> None:
    """A task that only makes a worker start (and import this module)."""


class Slots:
    """Where tasks run: threads of this process and, for a large history, spawned worker
    processes, each task handed to whichever slot is free."""

    def __init__(self, executors: list[tuple[Executor, int]]) -> None:
        self._executors = executors
        """Each executor and how many tasks it runs at once."""

    def run(self, work: Callable[[Task], Done], tasks: list[Task]) -> Iterator[Done]:
        """``work`` of each task, in the tasks' order, on every slot at once."""
        pending = deque(enumerate(tasks))
        running: dict[Future[Done], tuple[int, int]] = {}
        free = [size for _, size in self._executors]
        done: dict[int, Done] = {}
        after = 0
        while pending or running:
            for at, (executor, _) in enumerate(self._executors):
                while free[at] and pending:
                    index, task = pending.popleft()
                    running[executor.submit(work, task)] = (index, at)
                    free[at] -= 1
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index, at = running.pop(future)
                free[at] += 1
                done[index] = future.result()
            while after in done:
                yield done.pop(after)
                after += 1


@contextlib.contextmanager
def worker_pool(workers: int, *, processes: bool) -> Iterator[Slots]:
    """``workers`` slots. With ``processes``: one thread of this process (idle otherwise: it
    only merges) and ``workers - 1`` spawned worker processes, started at once so that their
    interpreters start up while this process surveys the history (spawned, not forked:
    forking a process that holds Arrow's thread pools is unsafe). Without: ``workers``
    threads (the GIL keeps the second core about half used, but nothing to start up)."""
    local = ThreadPoolExecutor(
        max_workers=1 if processes else max(1, workers), thread_name_prefix="segments"
    )
    executors: list[tuple[Executor, int]] = [(local, 1 if processes else max(1, workers))]
    pool = None
    if processes and workers > 1:
        pool = ProcessPoolExecutor(
            max_workers=workers - 1, mp_context=multiprocessing.get_context("spawn")
        )
        executors.append((pool, workers - 1))
    try:
        if pool is not None:
            for _ in range(workers - 1):
                pool.submit(_ready)
        yield Slots(executors)
    finally:  # on an error, the tasks not started yet are dropped, not run in vain
        local.shutdown(wait=True, cancel_futures=True)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _scan_rows(
    path: Path,
    rows: tuple[int, int],
    scan: Callable[[Iterator[pa.RecordBatch]], Part],
) -> Part:
    return scan(parquet_batches(path, RECEIVES, _RECEIVE_TIMES, rows[0], rows[1]))


def receive_time_passes(run_dir: Path, slots: Slots, parts: int) -> Passes:
    """Scans over the receives' two time columns (``exact_ranks``' passes), in ``parts``
    shares of whole row groups (none read twice) on ``slots``."""
    path = parquet_path(run_dir, "receives")
    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    starts = [0, *itertools.accumulate(sizes)]
    cuts = sorted({len(sizes) * i // max(1, parts) for i in range(parts + 1)})
    shares = [(starts[a], starts[b] - starts[a]) for a, b in itertools.pairwise(cuts)]

    def passes(scan: Callable[[Iterator[pa.RecordBatch]], Part]) -> list[Part]:
        return list(slots.run(functools.partial(_scan_rows, path, scan=scan), shares))

    return passes


def check_segments(slots: Slots, tasks: list[SegmentTask]) -> Iterator[SegmentResult]:
    """Every task's result, in the tasks' order, on every slot at once."""
    return slots.run(_check_segment_anywhere, tasks)


def _check_segment_anywhere(task: SegmentTask) -> SegmentResult:
    """``check_segment`` keeping freed memory: in a worker process for the task; in this
    process the evaluation already does (``allocation``: not nested)."""
    if multiprocessing.parent_process() is None:
        return check_segment(task)
    with freed_memory_kept():
        return check_segment(task)
