"""SQS (ElasticMQ) and Pub/Sub (emulator) on the batched hot path: harness CPU per message at
200 msg/s, and the highest sustained rate against the bare client library.

**CPU per message** (target <= 0.5 ms, producer + consumer, recording included): a producer
process sends the messages due every 5 ms at 200 msg/s (``BROKERBENCH_BENCH_HOT_RATE``) for
``BROKERBENCH_BENCH_HOT_SECONDS`` (default 30) under gevent's patching (as a Locust producer
process runs), while a consumer process polls, records and acks them; each process measures
its own CPU time (all its threads, from its loop's start to its driver's close), which other
work on the machine does not inflate (cold caches on a busy machine still do: a boto3 request
made every 50 ms costs about twice one made back to back). The end-to-end latency percentiles
show what batching costs. Paths: ``per-message`` (``send``/``poll``/``ack`` through the
fallback in ``harness.drivers.batching``) and ``batched`` (the driver's ``send_batch``/
``poll_batch``/``ack_batch``). ``tests/benchmarks/hot_path_load.py`` says exactly what each
loop does.

**Highest sustained rate** (target >= 0.8x the bare client): the producer sends as fast as the
driver takes messages (at most 2,000 unfinished) for ``BROKERBENCH_BENCH_MAX_SECONDS`` (default
15) while the consumer keeps up as well as it can. At most 5,000 messages wait in the broker
(the consumer's count reaches the producer through a file) and at most 120,000 are sent, so the
figure is the rate the two sustain together and the broker's memory stays safe: the Pub/Sub
emulator keeps every message until its topic is deleted (each run has its own). The figure is
the lower of the two processes' rates over the run minus its first 1 s and last 0.5 s. The two
variants alternate for ``BROKERBENCH_BENCH_MAX_ROUNDS`` rounds (default 2) and each keeps its
best round, so that a change in the machine's other load between them does not decide the
ratio. The bare loops: boto3 SendMessageBatch of 10 on 4 threads and ReceiveMessage +
DeleteMessageBatch on 3 threads; google-cloud-pubsub's batching publisher and streaming-pull
subscriber (callback acks).

    BROKERBENCH_BENCHMARKS=1 .venv/bin/python -m pytest \\
        tests/benchmarks/test_sqs_pubsub_hot_path.py --benchmark-only -s
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness.drivers.base import DestinationSpec
from harness.drivers.targets import open_driver
from harness.settings import load_settings
from tests.conftest import RequireService

pytestmark = [pytest.mark.broker, pytest.mark.benchmark]

TARGETS = ["elasticmq", "pubsub"]
PATHS = ["per-message", "batched"]
RATE = float(os.environ.get("BROKERBENCH_BENCH_HOT_RATE", "200"))
TICK = 0.005
SIZE = 200
CPU_SECONDS = float(os.environ.get("BROKERBENCH_BENCH_HOT_SECONDS", "30"))
MAX_SECONDS = float(os.environ.get("BROKERBENCH_BENCH_MAX_SECONDS", "15"))
MAX_ROUNDS = int(os.environ.get("BROKERBENCH_BENCH_MAX_ROUNDS", "2"))
MAX_WINDOW = 2000
MAX_BACKLOG = 5000
MAX_MESSAGES = 120_000
"""Per max-rate run: about 90 MB of the Pub/Sub emulator's 384 MB heap until it is deleted."""
SKIP_START, SKIP_END = 1.0, 0.5
TARGET_MS_PER_MESSAGE = 0.5
TARGET_RATIO = 0.8
ROOT = Path(__file__).resolve().parents[2]


class Process:
    """One ``hot_path_load`` process."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.hot_path_load", json.dumps(plan)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> dict[str, Any]:
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        assert line, f"{self.plan['role']} ended without a report (exit {self.child.wait()})"
        return dict(json.loads(line))

    def result(self) -> dict[str, Any]:
        result = self.line()
        assert self.child.wait(timeout=120) == 0
        return result


def run_pair(consumer_plan: dict[str, Any], producer_plan: dict[str, Any]) -> dict[str, Any]:
    consumer = Process(consumer_plan)
    try:
        assert consumer.line()["kind"] == "ready"
        producer = Process(producer_plan)
        try:
            return {"producer": producer.result(), "consumer": consumer.result()}
        finally:
            producer.child.kill()
    finally:
        consumer.child.kill()


def window_rate(samples: list[list[float]], start: float, end: float) -> float:
    """Messages per second between the samples nearest ``start`` and ``end``."""
    inside = [(t, count) for t, count in samples if start <= t <= end]
    if len(inside) < 2:
        return 0.0
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0)


@contextmanager
def fresh_destination(target: str) -> Iterator[str]:
    """A new destination for one run, deleted right after it: the Pub/Sub emulator keeps every
    message, acked or not, until its topic is deleted (about 750 bytes each, measured)."""
    driver = open_driver(target, load_settings())
    name = f"bb-hot-{uuid.uuid4().hex[:10]}"
    destination = driver.create_destination(DestinationSpec(name))
    try:
        yield name
    finally:
        driver.delete_destination(destination)
        driver.close()


def cpu_run(target: str, path: str) -> dict[str, float]:
    with fresh_destination(target) as destination:
        return cpu_figures(target, destination, path)


def cpu_figures(target: str, destination: str, path: str) -> dict[str, float]:
    common = {"target": target, "destination": destination, "path": path}
    expected = int(RATE * CPU_SECONDS)
    run = run_pair(
        {**common, "role": "consume", "expect": expected, "seconds": CPU_SECONDS + 60},
        {
            **common,
            "role": "produce",
            "rate": RATE,
            "seconds": CPU_SECONDS,
            "tick": TICK,
            "size": SIZE,
            "gevent": True,
        },
    )
    produced, consumed = run["producer"], run["consumer"]
    assert produced["failed"] == 0 and consumed["received"] >= produced["sent"]
    producer_ms = produced["cpu_s"] * 1000 / produced["sent"]
    consumer_ms = consumed["cpu_s"] * 1000 / consumed["received"]
    return {
        "producer_ms": round(producer_ms, 3),
        "consumer_ms": round(consumer_ms, 3),
        "total_ms": round(producer_ms + consumer_ms, 3),
        "sent": produced["sent"],
        "e2e_p50_ms": consumed["e2e_p50_ms"],
        "e2e_p99_ms": consumed["e2e_p99_ms"],
    }


@pytest.mark.parametrize("target", TARGETS)
def test_bench_cpu_per_message_at_200_per_second(
    benchmark: BenchmarkFixture,
    target: str,
    require_service: RequireService,
) -> None:
    require_service(target)
    load_average = os.getloadavg()

    def measure() -> dict[str, dict[str, float]]:
        return {path: cpu_run(target, path) for path in PATHS}

    runs = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(runs=runs, load_average=load_average, cpus=os.cpu_count())
    for path, figures in runs.items():
        print(
            f"\n{target} {path} at {RATE} msg/s for {CPU_SECONDS:.0f} s: producer "
            f"{figures['producer_ms']} + consumer {figures['consumer_ms']} = "
            f"{figures['total_ms']} ms CPU per message (target <= {TARGET_MS_PER_MESSAGE}); "
            f"e2e p50 {figures['e2e_p50_ms']} ms, p99 {figures['e2e_p99_ms']} ms"
        )


def max_rate_run(target: str, variant: str, folder: Path) -> dict[str, float]:
    with fresh_destination(target) as destination:
        return max_rate_figures(target, destination, variant, folder)


def max_rate_figures(target: str, destination: str, variant: str, folder: Path) -> dict[str, float]:
    progress = str(folder / f"{variant}-received")
    common = {
        "target": target,
        "destination": destination,
        "size": SIZE,
        "progress": progress,
        "backlog": MAX_BACKLOG,
        "max_messages": MAX_MESSAGES,
    }
    if variant == "bare":
        broker = "sqs" if target == "elasticmq" else "pubsub"
        consumer_plan = {**common, "role": f"bare-consume-{broker}", "seconds": MAX_SECONDS + 3}
        producer_plan = {
            **common,
            "role": f"bare-produce-{broker}",
            "seconds": MAX_SECONDS,
            "window": MAX_WINDOW,
        }
    else:
        consumer_plan = {
            **common,
            "role": "consume",
            "path": variant,
            "expect": 10**9,
            "seconds": MAX_SECONDS + 3,
        }
        producer_plan = {
            **common,
            "role": "produce",
            "path": variant,
            "rate": 0,
            "seconds": MAX_SECONDS,
            "tick": TICK,
            "window": MAX_WINDOW,
            "gevent": True,
        }
    run = run_pair(consumer_plan, producer_plan)
    produced, consumed = run["producer"]["samples"], run["consumer"]["samples"]
    start, end = produced[0][0] + SKIP_START, produced[-1][0] - SKIP_END
    sent, received = window_rate(produced, start, end), window_rate(consumed, start, end)
    wall = produced[-1][0] - produced[0][0]
    return {
        "sent": round(sent),
        "received": round(received),
        "sustained": round(min(sent, received)),
        # Cores used by each process: near 1.0 is a process that is CPU-bound.
        "producer_cores": round(run["producer"]["cpu_s"] / wall, 2),
        "consumer_cores": round(run["consumer"]["cpu_s"] / wall, 2),
    }


@pytest.mark.parametrize("target", TARGETS)
def test_bench_highest_sustained_rate(
    benchmark: BenchmarkFixture,
    target: str,
    require_service: RequireService,
    tmp_path: Path,
) -> None:
    require_service(target)
    load_average = os.getloadavg()

    def measure() -> dict[str, list[dict[str, float]]]:
        rounds: dict[str, list[dict[str, float]]] = {"batched": [], "bare": []}
        for _ in range(MAX_ROUNDS):
            for variant, results in rounds.items():
                results.append(max_rate_run(target, variant, tmp_path))
        return rounds

    rounds = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    runs = {v: max(r, key=lambda rates: rates["sustained"]) for v, r in rounds.items()}
    ratio = runs["batched"]["sustained"] / max(runs["bare"]["sustained"], 1)
    benchmark.extra_info.update(
        rounds=rounds, ratio=round(ratio, 3), load_average=load_average, cpus=os.cpu_count()
    )
    for variant, results in rounds.items():
        print(f"\n{target} {variant} rounds: {[r['sustained'] for r in results]} msg/s")
    for variant, rates in runs.items():
        print(
            f"{target} {variant} best: sent {rates['sent']:,} msg/s, received "
            f"{rates['received']:,} msg/s, sustained {rates['sustained']:,} msg/s (cores used: "
            f"producer {rates['producer_cores']}, consumer {rates['consumer_cores']})"
        )
    print(f"{target}: batched / bare = {ratio:.2f}x (target >= {TARGET_RATIO}x)")
