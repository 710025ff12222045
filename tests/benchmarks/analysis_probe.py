"""One ``evaluate`` of a run folder's history in this process, printed as JSON with its peak
memory: the child process of ``test_analysis_memory.py`` (a process of its own, so the peak
is the evaluation's alone).

    .venv/bin/python -m tests.benchmarks.analysis_probe RUN_DIR [--whole] [--range MESSAGES]
        [--run-window] [--processes-from RANGES]

The latency window is the synthetic run's second second unless ``--run-window`` makes it the
whole run, as a real run's (warm-up to drain) nearly is: every message then goes through the
latency figures, which costs more. ``cpu_seconds`` is the CPU time of this process (every
thread) and of its worker processes (``resource.RUSAGE_CHILDREN``: every child waited for, and
the evaluation waits for its workers), the steadier figure on a shared machine.
``peak_rss_mb`` is the largest sum of the resident memory of this process and all its
descendants, sampled every 20 ms with psutil (a peak shorter than that can be missed);
``peak_rss_bound_mb`` cannot miss one: this process's peak plus ``WORKERS`` times the largest
child's peak (an upper bound: the children's peaks need not coincide).
"""

import argparse
import contextlib
import json
import os
import resource
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.analysis import evaluation
from harness.drivers.base import OrderingScope
from harness.history.store import parquet_path
from harness.run.figures import Window
from harness.run.result import evaluate
from tests.benchmarks.test_checker_speed import START_NS

SECOND = 1_000_000_000


def _run_window(run_dir: Path) -> Window:
    """From the first intended send to the last, from the Parquet footer's statistics."""
    metadata = pq.ParquetFile(parquet_path(run_dir, "sends")).metadata
    at = metadata.schema.to_arrow_schema().get_field_index("intended_ns")
    stats = [metadata.row_group(i).column(at).statistics for i in range(metadata.num_row_groups)]
    return Window(min(s.min for s in stats), max(s.max for s in stats) + 1)


class TreeMemory:
    """Samples the resident memory of a process (this one unless ``root`` names another) and
    its descendants, keeps the largest sum."""

    def __init__(self, every_seconds: float = 0.02, root: int | None = None) -> None:
        self.peak = 0
        self._root = root
        self._every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process(self._root)
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):  # the root ended: nothing left to add
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # ended between listing and reading
                        total += process.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--whole", action="store_true", help="the whole-history path (before)")
    parser.add_argument("--range", type=int, default=evaluation.MESSAGES_PER_RANGE)
    parser.add_argument("--run-window", action="store_true", help="latencies of every message")
    parser.add_argument(
        "--processes-from",
        type=int,
        default=evaluation.PROCESSES_FROM_RANGES,
        help="ranges from which worker processes check them (1: always; a huge number: never)",
    )
    args = parser.parse_args()
    evaluation.BOUNDED_ABOVE_MESSAGES = 1 << 62 if args.whole else 0
    evaluation.MESSAGES_PER_RANGE = args.range
    evaluation.PROCESSES_FROM_RANGES = args.processes_from
    records = sum(
        pq.ParquetFile(parquet_path(args.run_dir, table)).metadata.num_rows
        for table in ("sends", "receives")
    )
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    if args.run_window:
        window = _run_window(args.run_dir)
    wall, cpu, children = time.perf_counter(), time.process_time(), children_cpu()
    with TreeMemory() as memory:
        result = evaluate(args.run_dir, OrderingScope.PARTITION, window, 200, broker_lag=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    children = children_cpu() - children
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(
        json.dumps(
            {
                "path": "whole" if args.whole else "ranges",
                "records": records,
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu + children, 2),
                "cpu_seconds_workers": round(children, 2),
                "records_per_second": round(records / wall),
                "peak_rss_mb": max(memory.peak >> 20, own_peak),
                "peak_rss_bound_mb": own_peak + evaluation.WORKERS * child_peak,
                "peak_rss_main_mb": own_peak,
                "peak_rss_largest_worker_mb": child_peak,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "valid": result.valid,
            }
        )
    )


if __name__ == "__main__":
    main()
