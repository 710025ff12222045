"""One ``evaluate`` of a run folder's history in this process, printed as JSON with its peak
memory: the child process of ``test_analysis_memory.py`` (a process of its own, so the peak
is the evaluation's alone).

    .venv/bin/python -m tests.benchmarks.analysis_probe RUN_DIR [--whole] [--range MESSAGES]
        [--run-window]

The latency window is the synthetic run's second second unless ``--run-window`` makes it the
whole run, as a real run's (warm-up to drain) nearly is: every message then goes through the
latency figures, which costs more. ``cpu_seconds`` is the process's CPU time (every thread),
the steadier figure on a shared machine.
"""

import argparse
import json
import os
import resource
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--whole", action="store_true", help="the whole-history path (before)")
    parser.add_argument("--range", type=int, default=evaluation.MESSAGES_PER_RANGE)
    parser.add_argument("--run-window", action="store_true", help="latencies of every message")
    args = parser.parse_args()
    evaluation.BOUNDED_ABOVE_MESSAGES = 1 << 62 if args.whole else 0
    evaluation.MESSAGES_PER_RANGE = args.range
    records = sum(
        pq.ParquetFile(parquet_path(args.run_dir, table)).metadata.num_rows
        for table in ("sends", "receives")
    )
    window = Window(START_NS + SECOND, START_NS + 2 * SECOND)
    if args.run_window:
        window = _run_window(args.run_dir)
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate(args.run_dir, OrderingScope.PARTITION, window, 200, broker_lag=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "path": "whole" if args.whole else "ranges",
                "records": records,
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "records_per_second": round(records / wall),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "valid": result.valid,
            }
        )
    )


if __name__ == "__main__":
    main()
