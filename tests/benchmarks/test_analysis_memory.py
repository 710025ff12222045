"""Peak memory and end-to-end records/s of the end-of-run evaluation (``evaluate``, what
``analyze`` runs) of a large compacted history, range by range (targets, on a 100-million-message
history: <= 2 GB peak, >= 5 M records/s on 2 cores).

The history is ``big_history``'s: test_checker_speed's synthetic one (every anomaly planted)
replicated with new producers, written in chunks. The evaluation runs in a child process of its
own (``analysis_probe``), so the peak RSS is the evaluation's alone (its worker processes
counted: see the probe); records = sends + receives
rows; the derived backlog is computed too (``broker_lag`` off, the costlier path).

    BROKERBENCH_BENCHMARKS=1 BROKERBENCH_BENCH_MESSAGES=100000000 .venv/bin/python -m pytest \\
        tests/benchmarks/test_analysis_memory.py --benchmark-only -s

``BROKERBENCH_BENCH_MESSAGES`` (default 20,000,000; 100 M take about 1.3 GB of disk in the
temporary folder and under a minute to build), ``BROKERBENCH_BENCH_WHOLE=1`` also measures the
whole-history path (the "before": about 4 GB per 12 M messages, so keep it below 40 M on a
24 GB machine), ``BROKERBENCH_BENCH_HISTORY=DIR`` reuses (or keeps) the built history there.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

pytestmark = pytest.mark.benchmark

MESSAGES = int(os.environ.get("BROKERBENCH_BENCH_MESSAGES", "20000000"))
WHOLE = os.environ.get("BROKERBENCH_BENCH_WHOLE") == "1"
TARGET_PEAK_MB = 2048
TARGET_RECORDS_PER_SECOND = 5_000_000


def _probe(run_dir: Path, *extra: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.analysis_probe", str(run_dir), *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    found: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.timeout(7200)
def test_bench_bounded_analysis(benchmark: BenchmarkFixture) -> None:
    kept = os.environ.get("BROKERBENCH_BENCH_HISTORY")
    with tempfile.TemporaryDirectory(prefix="brokerbench-big-") as scratch:
        run_dir = Path(kept) if kept else Path(scratch) / "run"
        if not (run_dir / "history" / "sends.parquet").exists():
            subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.big_history", str(run_dir),
                 "--messages", str(MESSAGES)],
                check=True,
            )  # fmt: skip
        found = benchmark.pedantic(lambda: _probe(run_dir), rounds=1, iterations=1)
        before = _probe(run_dir, "--whole") if WHOLE else None
    benchmark.extra_info.update(
        found,
        target_peak_rss_mb=TARGET_PEAK_MB,
        target_records_per_second=TARGET_RECORDS_PER_SECOND,
        whole_history=before,
    )
    print(
        f"\nevaluate in ranges: {found['records']:,} records in {found['wall_seconds']} s wall / "
        f"{found['cpu_seconds']} s cpu: {found['records_per_second']:,} records/s (target "
        f"{TARGET_RECORDS_PER_SECOND:,}); peak RSS of the process and its workers "
        f"{found['peak_rss_mb']:,} MB sampled, {found.get('peak_rss_bound_mb', '-')} MB bound "
        f"(target {TARGET_PEAK_MB:,}); load average {found['load_average_1m']}"
        + (f"\nwhole history: {before}" if before else "")
    )
