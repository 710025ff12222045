"""Kafka consumer CPU per message: a consumer process (``harness.load.consumer_process``, as a
run starts it) reads a backlog of ``BROKERBENCH_BENCH_CONSUME`` (default 300,000) 200-byte
envelopes on a 6-partition topic, written beforehand by a plain confluent-kafka producer
(target: <= 4 us a message).

The figure is the process's CPU time, every thread's (librdkafka's included), from its
``ready`` line to the progress line that counts the last message, divided by the messages: CPU
time, not wall clock, so a busy machine moves it little. Also printed: the main (Python)
thread's share, and the longest ``poll_gap_ms_max`` seen. ``BROKERBENCH_BENCH_POLL_BATCH`` sets
the plan's ``poll_batch`` (default: the plan's own).

    BROKERBENCH_BENCHMARKS=1 .venv/bin/python -m pytest tests/benchmarks/test_kafka_consume.py \\
        --benchmark-only -s
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from confluent_kafka import Producer
from pytest_benchmark.fixture import BenchmarkFixture

from harness.drivers.targets import open_driver
from harness.history.envelope import Envelope, encode
from harness.history.store import read_shards
from harness.load.plan import ConsumerPlan, DestinationPlan, RunShared
from harness.settings import Settings
from tests.conftest import RequireService

pytestmark = [pytest.mark.broker, pytest.mark.benchmark]

MESSAGES = int(os.environ.get("BROKERBENCH_BENCH_CONSUME", "300000"))
POLL_BATCH = os.environ.get("BROKERBENCH_BENCH_POLL_BATCH")
MESSAGE_SIZE, PARTITIONS, KEYS = 200, 6, 64
TARGET_US = 4.0


def produce_backlog(settings: Settings, topic: str, run_id: int) -> None:
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka}", "linger.ms": 20})
    seqs = [0] * KEYS
    for index in range(MESSAGES):
        key_id = index % KEYS
        envelope = Envelope(run_id, 0, key_id, seqs[key_id], 1_700_000_000_000_000_000 + index)
        seqs[key_id] += 1
        while True:
            try:
                producer.produce(topic, encode(envelope, MESSAGE_SIZE), key=f"k-{key_id}".encode())
                break
            except BufferError:  # the local queue is full
                producer.poll(0.01)
    assert producer.flush(60) == 0


def cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU time of the whole process and of its main thread."""
    times = process.cpu_times()
    main = next(t for t in process.threads() if t.id == process.pid)
    return times.user + times.system, main.user_time + main.system_time


def consume_backlog(plan_path: Path) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-m", "harness.load.consumer_process", str(plan_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        process = psutil.Process(child.pid)
        assert child.stdout is not None
        ready = cpu_seconds(process)
        gaps: list[float] = []
        for line in child.stdout:
            fields = json.loads(line)
            if fields["kind"] == "ready":
                ready = cpu_seconds(process)
            elif fields["kind"] == "progress":
                gaps.append(fields.get("poll_gap_ms_max", -1.0))  # -1: a version without it
                if fields["received"] >= MESSAGES:
                    done = cpu_seconds(process)
                    break
        else:
            raise AssertionError("the consumer ended before it received the backlog")
    finally:
        child.terminate()
        child.wait(timeout=30)
    return {
        "cpu_us_per_msg": round((done[0] - ready[0]) / MESSAGES * 1e6, 2),
        "main_thread_us_per_msg": round((done[1] - ready[1]) / MESSAGES * 1e6, 2),
        "poll_gap_ms_max": max(gaps),
    }


def test_bench_kafka_consume(
    benchmark: BenchmarkFixture,
    settings: Settings,
    require_service: RequireService,
    tmp_path: Path,
) -> None:
    require_service("kafka")
    run_id = secrets.randbits(63)
    destination = DestinationPlan(name=f"bb-bench-consume-{run_id:016x}", partitions=PARTITIONS)
    driver = open_driver("kafka", settings)
    created = driver.create_destination(destination.spec())
    try:
        produce_backlog(settings, destination.name, run_id)
        shared = RunShared(
            run_dir=str(tmp_path),
            run_id=run_id,
            target="kafka",
            settings=settings,
            destination=destination,
        )
        extra = {} if POLL_BATCH is None else {"poll_batch": int(POLL_BATCH)}
        plan = ConsumerPlan(run=shared, consumer_id=0, **extra)
        plan_path = tmp_path / "consumer-0.json"
        plan_path.write_text(plan.model_dump_json(), encoding="utf-8")
        figures = benchmark.pedantic(consume_backlog, args=(plan_path,), rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    finally:
        driver.delete_destination(created)
        driver.close()
    assert read_shards(tmp_path, "receives").num_rows == MESSAGES
    benchmark.extra_info.update(
        figures, messages=MESSAGES, poll_batch=plan.poll_batch, load_average=os.getloadavg()
    )
    print(
        f"\nconsumer CPU: {figures['cpu_us_per_msg']} us/msg "
        f"(main thread {figures['main_thread_us_per_msg']}), target <= {TARGET_US}; "
        f"longest poll gap {figures['poll_gap_ms_max']} ms; poll_batch {plan.poll_batch}"
    )
