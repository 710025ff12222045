"""Identity ranges checked in worker processes (harness/analysis/segments.py): the survey cuts
the ranges a single pass cuts, a worker reading its segment from a row in the middle of a
Parquet row group gets the rows a single pass gets, and the merged verdicts (rebalance examples
included) and figures are the single pass's.

The history: test_checker_speed's synthetic one (every anomaly planted, partitions moving
between consumers), written as compaction writes it, then rewritten with small row groups so
that segments start inside one.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harness.analysis import evaluation
from harness.analysis.bounded_checks import RangeChecks, check_ranges, max_offsets_read
from harness.analysis.bounded_figures import FigureAccumulator, receive_time_batches
from harness.analysis.history_ranges import history_ranges
from harness.analysis.ranges import parquet_batches
from harness.analysis.rebalance import ScopeRuns
from harness.analysis.segments import SegmentTask, check_segment, segments, survey
from harness.checkers import HistoryIndex
from harness.drivers.base import OrderingScope
from harness.history.schema import EVENTS, RECEIVES, SENDS
from harness.history.store import parquet_path
from harness.history.trusted import read_parquet
from harness.run.figures import Window
from tests.benchmarks.big_history import replicate_history, synthetic_base
from tests.benchmarks.test_checker_speed import START_NS

SECOND = 1_000_000_000
ROW_GROUP = 50_000
PER_RANGE = 20_000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("segments") / "run"
    replicate_history(synthetic_base(0), run, 1)  # 640,000 messages
    for table in ("sends", "receives"):
        path = parquet_path(run, table)
        pq.write_table(pq.read_table(path), path, row_group_size=ROW_GROUP)
    return run


@pytest.mark.parametrize("rows", [None, 0, 1, 70_000])
@pytest.mark.parametrize("first_row", [0, 1, ROW_GROUP - 1, ROW_GROUP, 123_457, 639_999, 640_000])
def test_reading_from_a_row_gives_those_rows(
    run_dir: Path, first_row: int, rows: int | None
) -> None:
    path = parquet_path(run_dir, "sends")
    whole = read_parquet(path, SENDS, versioned=True)
    expected = whole.slice(first_row, rows)
    read = list(parquet_batches(path, SENDS, None, first_row, rows))
    assert sum(batch.num_rows for batch in read) == expected.num_rows
    if read:
        assert pa.Table.from_batches(read).equals(expected)


def test_the_survey_cuts_the_ranges_one_pass_cuts(run_dir: Path) -> None:
    found = survey(run_dir, PER_RANGE)
    starts, sends, receives = [], 0, 0
    for part in history_ranges(run_dir, PER_RANGE):
        assert part.first_receive_row == receives
        starts.append((sends, receives))
        sends += part.sends.num_rows
        receives += part.receives.num_rows
    assert found.starts == starts
    read_up_to = max_offsets_read(
        parquet_batches(parquet_path(run_dir, "receives"), RECEIVES, ["partition", "offset"])
    )
    assert found.read_up_to.tolist() == read_up_to.tolist()
    intended = pq.read_table(parquet_path(run_dir, "sends"), columns=["intended_ns"])
    assert found.origin == pc.min(intended.column(0)).as_py()
    chosen = segments(found.starts, 2)
    assert len(chosen) == 2 * min(4, len(starts) // 16) >= 4
    assert sum(segment.ranges for segment in chosen) == len(starts)
    assert any(segment.first_send_row % ROW_GROUP for segment in chosen[1:])


def test_the_survey_finds_the_first_send_in_a_file_without_statistics(
    run_dir: Path, tmp_path: Path
) -> None:
    # Statistics are optional in Parquet: without them the survey scans the column.
    bare = tmp_path / "run"
    parquet_path(bare, "sends").parent.mkdir(parents=True)
    for table in ("sends", "receives"):
        written = pq.read_table(parquet_path(run_dir, table))
        pq.write_table(
            written, parquet_path(bare, table), row_group_size=ROW_GROUP, write_statistics=False
        )
    assert (
        pq.ParquetFile(parquet_path(bare, "sends")).metadata.row_group(0).column(3).statistics
        is None
    )
    found, expected = survey(bare, PER_RANGE), survey(run_dir, PER_RANGE)
    assert (found.origin, found.starts) == (expected.origin, expected.starts)
    assert found.read_up_to.tolist() == expected.read_up_to.tolist()


@pytest.mark.parametrize(
    ("workers", "processes_from"),
    [(2, 1), (2, 1 << 40), (1, 1 << 40)],
    ids=["a-worker-process", "two-threads", "one-thread"],
)
def test_worker_processes_give_the_single_pass_verdicts_and_figures(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, workers: int, processes_from: int
) -> None:
    monkeypatch.setattr(evaluation, "WORKERS", workers)
    monkeypatch.setattr(evaluation, "PROCESSES_FROM_RANGES", processes_from)
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    found = evaluation.evaluate_in_ranges(
        run_dir, OrderingScope.PARTITION, window, 200, None, messages_per_range=PER_RANGE
    )
    # The single pass: every range in turn in this process, as before the worker processes.
    events = read_parquet(parquet_path(run_dir, "events"), EVENTS, versioned=True)
    receives = parquet_path(run_dir, "receives")
    intended = pq.read_table(parquet_path(run_dir, "sends"), columns=["intended_ns"])
    figures = FigureAccumulator(window, 200, pc.min(intended.column(0)).as_py())

    verdicts = check_ranges(
        lambda: history_ranges(run_dir, PER_RANGE),
        max_offsets_read(parquet_batches(receives, RECEIVES, ["partition", "offset"])),
        events,
        OrderingScope.PARTITION,
        found.lag,
        on_range=figures.add,
    )
    assert found.verdicts == verdicts
    assert any(e["kind"] == "rebalance" for v in verdicts for e in v.examples)
    times = receive_time_batches(read_parquet(receives, RECEIVES, versioned=True))
    assert found.figures == {
        "throughput": figures.throughput_figures(),
        "latency": figures.latency_figures(),
        "series": figures.time_series(times),
    }


def test_segments_report_the_scope_runs_of_one_pass(run_dir: Path) -> None:
    # The runs' global receive rows break ties in receive order across ranges: each segment
    # must place its ranges' rows where the single pass does.
    found = survey(run_dir, PER_RANGE)
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    merged = RangeChecks()
    for segment in segments(found.starts, 2):
        task = SegmentTask(
            run_dir, segment, PER_RANGE, found.read_up_to, OrderingScope.PARTITION, False,
            window, 200, found.origin, None, "",
        )  # fmt: skip
        merged.extend(check_segment(task).checks)
    single = ScopeRuns()
    for part in history_ranges(run_dir, PER_RANGE):
        single.add(part, HistoryIndex(part.sends, part.receives))
    assert merged.runs.scope == single.scope
    for name in ("start_ns", "start_row", "end_ns", "end_row", "consumer"):
        assert np.concatenate(getattr(merged.runs, name)).tolist() == (
            np.concatenate(getattr(single, name)).tolist()
        )
