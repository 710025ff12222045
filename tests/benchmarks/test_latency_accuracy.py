"""Latency accuracy: how much a 50 ms toxiproxy latency toxic on the ``kafka`` proxy raises the
measured end-to-end p50 (target from the issue: 50 ms +- 2 ms).

Each run: 10 s, 2 s warm-up, 1 producer, 1 consumer, 1 partition. The headline: only the
producers go through the proxy (``proxy: producers``) and the toxic delays their requests
(upstream), so every message reaches the broker 50 ms late and nothing else changes: the e2e
p50 must rise by 50 ms. For comparison, with everyone on the proxy (``proxy: all``) and the
toxic on responses (downstream), the consumer's fetches are delayed too and messages also wait
for the next fetch: about +75 ms at 200 msg/s, +50 ms at 10 msg/s (docs/benchmarks.md). The
toxic is always removed.

    BROKERBENCH_BENCHMARKS=1 .venv/bin/python -m pytest tests/benchmarks/test_latency_accuracy.py \\
        --benchmark-only -s
"""

from pathlib import Path
from typing import Literal

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.load.throughput import ThroughputConfig
from harness.settings import Settings
from harness.stack.services import Toxiproxy
from harness.stack.toxiproxy import Toxic
from harness.suite import ProxyPath
from tests.benchmarks.kafka_runs import run_and_evaluate
from tests.conftest import RequireService

pytestmark = [pytest.mark.broker, pytest.mark.benchmark]

PROXY = "kafka"
TOXIC = "bench-latency"
LATENCY_MS = 50
TOLERANCE_MS = 2
RATE, LOW_RATE = 200, 10
Stream = Literal["upstream", "downstream"]
Run = tuple[int, ProxyPath, Stream | None]
HEADLINE: Run = (RATE, "producers", "upstream")
RUNS: list[Run] = [
    (RATE, "producers", None),
    HEADLINE,
    (RATE, "all", None),
    (RATE, "all", "downstream"),
    (LOW_RATE, "all", None),
    (LOW_RATE, "all", "downstream"),
]


def label(rate: int, proxy: ProxyPath, stream: Stream | None) -> str:
    return f"{rate}/s proxy={proxy} {stream or 'no toxic'}"


def p50s(
    settings: Settings, run_dir: Path, rate: int, proxy: ProxyPath, stream: Stream | None
) -> dict[str, float]:
    """e2e and publish p50 (ms) of one run, with the toxic on ``stream``."""
    config = ThroughputConfig(
        rate=rate, duration=10, warmup=2, producers=1, processes=1, consumers=1, partitions=1
    )
    client = Toxiproxy(settings).client()
    if stream is not None:
        attributes = {"latency": LATENCY_MS, "jitter": 0}
        client.add_toxic(PROXY, Toxic("latency", TOXIC, stream=stream, attributes=attributes))
    try:
        _, result = run_and_evaluate(settings, config, run_dir, proxy=proxy)
    finally:
        if stream is not None:
            client.remove_toxic(PROXY, TOXIC)
    assert result["valid"], result["checks"]
    latency = result["figures"]["latency"]
    return {kind: float(latency[kind]["stats"]["p50"]) for kind in ("e2e", "publish")}


def test_bench_latency_accuracy(
    benchmark: BenchmarkFixture,
    settings: Settings,
    require_service: RequireService,
    tmp_path: Path,
) -> None:
    require_service("kafka")

    def measure() -> dict[str, dict[str, float]]:
        return {
            label(*run): p50s(settings, tmp_path / label(*run).replace(" ", "-"), *run)
            for run in RUNS
        }

    runs: dict[str, dict[str, float]] = benchmark.pedantic(  # type: ignore[no-untyped-call]
        measure, rounds=1, iterations=1
    )
    rises = {
        label(rate, proxy, stream): {
            kind: p50 - runs[label(rate, proxy, None)][kind]
            for kind, p50 in runs[label(rate, proxy, stream)].items()
        }
        for rate, proxy, stream in RUNS
        if stream is not None
    }
    rise = rises[label(*HEADLINE)]["e2e"]
    benchmark.extra_info.update(
        p50_ms={run: {k: round(v, 2) for k, v in p.items()} for run, p in runs.items()},
        rise_ms={run: {k: round(v, 2) for k, v in r.items()} for run, r in rises.items()},
        e2e_rise_ms=round(rise, 2),
        within_target=abs(rise - LATENCY_MS) <= TOLERANCE_MS,
    )
    print()
    for run, p50 in runs.items():
        rise_of = rises.get(run)
        shown = {
            kind: f"{p50[kind]:.2f} ms" + (f" (+{rise_of[kind]:.2f})" if rise_of else "")
            for kind in p50
        }
        print(f"{run}: e2e p50 {shown['e2e']}, publish p50 {shown['publish']}")
    for run, rise_of in rises.items():
        verdict = "within" if abs(rise_of["e2e"] - LATENCY_MS) <= TOLERANCE_MS else "outside"
        print(f"{run}: e2e rise {rise_of['e2e']:.2f} ms, {verdict} {LATENCY_MS} +- {TOLERANCE_MS}")
