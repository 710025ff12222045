"""Kafka produce-and-consume throughput and CPU per message: brokerbench's raw-throughput run
against Kafka's own tools doing the same job on the same broker (issue 11's reference).

Reference: ``ConsumerPerformance`` consuming while ``ProducerPerformance`` sends
``BROKERBENCH_BENCH_RECORDS`` (default 2,000,000) 200-byte records, acks=all, unthrottled, to a
fresh 6-partition topic. brokerbench: one run (``execute`` + ``evaluate``, what ``brokerbench
run`` does), 200-byte messages, acks=all, 6 partitions, 1 consumer, a constant rate no variant
reaches (the run is bounded: the producers send as fast as they can for the schedule's
``LOAD_SECONDS`` + 1 s), once per producers x processes variant
(``BROKERBENCH_BENCH_VARIANTS``, default ``1x1,2x2``). Every message brokerbench sends is keyed
(100 keys) and recorded, sends and receives; the reference's records are unkeyed and unrecorded.

The figure for both: messages delivered end to end per second, the consumed count over the time
from the first send to the last delivery (the reference: the topic's first record timestamp to
ConsumerPerformance's end time; brokerbench: from its history). CPU per message is read from the
processes (psutil): producer and consumer processes, and the broker's JVM over the same time;
brokerbench's orchestrator (this process, with the sampler) too. Reference and brokerbench
alternate ``BROKERBENCH_BENCH_ROUNDS`` times (default 3); medians are the headline, every round
and the load average before it are printed.

    BROKERBENCH_BENCHMARKS=1 .venv/bin/python -m pytest tests/benchmarks/test_kafka_throughput.py \\
        --benchmark-only -s
"""

import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc  # type: ignore[import-untyped]
import pytest
from confluent_kafka import Consumer, TopicPartition
from pytest_benchmark.fixture import BenchmarkFixture

from harness.history.store import load
from harness.load.throughput import ThroughputConfig
from harness.settings import Settings
from tests.benchmarks.kafka_runs import (
    CpuSampler,
    broker_pid,
    create_topic,
    delete_topics,
    evaluate_run,
    finished_output,
    kafka_tool,
    own_children,
    producer_rate,
    run,
)
from tests.conftest import RequireService

pytestmark = [pytest.mark.broker, pytest.mark.benchmark]

TARGET_RATIO = 0.5
MESSAGE_SIZE = 200
PARTITIONS = 6
REFERENCE_RECORDS = int(os.environ.get("BROKERBENCH_BENCH_RECORDS", "2000000"))
VARIANTS = os.environ.get("BROKERBENCH_BENCH_VARIANTS", "1x1,2x2").split(",")
ROUNDS = int(os.environ.get("BROKERBENCH_BENCH_ROUNDS", "3"))
LOAD_SECONDS, LOAD_RATE = 8.0, 1_000_000.0
CONSUMER_JOIN_SECONDS = 4.0
"""ConsumerPerformance is started first and given this long to join its group."""
PRODUCER, CONSUMER, BROKER, ORCHESTRATOR = "producer", "consumer", "broker", "orchestrator"

Figures = dict[str, float]


def first_record_ms(settings: Settings, topic: str) -> int:
    """The earliest CreateTime (ms) among the first records of every partition."""
    consumer = Consumer(
        {"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka}", "group.id": "bb-bench-probe"}
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        firsts: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(firsts) < PARTITIONS and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                partition = message.partition()
                assert partition is not None
                if partition not in firsts:
                    firsts[partition] = message.timestamp()[1]
                    consumer.pause([TopicPartition(topic, partition)])
        return min(firsts.values())
    finally:
        consumer.close()


def consumer_end_ms(output: str) -> int:
    """ConsumerPerformance's end.time (second field of its summary line; the JVM runs in UTC)."""
    lines = [line for line in output.splitlines() if line[:2] == "20" and "," in line]
    assert lines, f"no summary line in ConsumerPerformance's output: {output[-500:]}"
    end = lines[-1].split(",")[1].strip()
    parsed = datetime.strptime(end, "%Y-%m-%d %H:%M:%S:%f").replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def reference(settings: Settings) -> Figures:
    topic = create_topic(settings, PARTITIONS)
    bootstrap = f"127.0.0.1:{settings.ports.kafka}"
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        with CpuSampler(
            lambda: {
                **{role: [process.pid] for role, process in processes.items()},
                BROKER: [broker_pid()],
            }
        ) as cpu:
            processes[CONSUMER] = kafka_tool(
                "ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
                "--num-records", str(REFERENCE_RECORDS), "--timeout", "60000",
                "--group", f"bb-bench-{topic}",
            )  # fmt: skip
            time.sleep(CONSUMER_JOIN_SECONDS)
            processes[PRODUCER] = kafka_tool(
                "ProducerPerformance", "--topic", topic,
                "--num-records", str(REFERENCE_RECORDS), "--record-size", str(MESSAGE_SIZE),
                "--throughput", "-1",
                "--command-property", f"bootstrap.servers={bootstrap}", "acks=all",
            )  # fmt: skip
            produced = finished_output(processes[PRODUCER], timeout=300)
            consumed = finished_output(processes[CONSUMER], timeout=300)
        seconds = (consumer_end_ms(consumed) - first_record_ms(settings, topic)) / 1000
    finally:
        delete_topics(settings, topic)
    used = cpu.seconds(since_start=frozenset({BROKER}))
    return {
        "msgs_per_s": REFERENCE_RECORDS / seconds,
        "producer_msgs_per_s": producer_rate(produced),
        "messages": REFERENCE_RECORDS,
        **{f"{role}_us_per_msg": used[role] / REFERENCE_RECORDS * 1e6 for role in used},
    }


def harness(settings: Settings, variant: str, run_dir: Path) -> Figures:
    producers, processes = map(int, variant.split("x"))
    config = ThroughputConfig(
        rate=LOAD_RATE,
        duration=LOAD_SECONDS,
        warmup=1.0,
        message_size=MESSAGE_SIZE,
        partitions=PARTITIONS,
        producers=producers,
        processes=processes,
        consumers=1,
    )
    roles = {PRODUCER: "harness.load.producer_process", CONSUMER: "harness.load.consumer_process"}

    def pids() -> dict[str, list[int]]:
        found = own_children(*roles.values())
        return {role: found[marker] for role, marker in roles.items()} | {BROKER: [broker_pid()]}

    orchestrator_start = time.process_time()
    with CpuSampler(pids) as cpu:
        outcome = run(settings, config, run_dir, proxy="none")
    orchestrator = time.process_time() - orchestrator_start
    result = evaluate_run(settings, config, run_dir, outcome)
    assert result["valid"], [c for c in result["checks"] if c["valid"] is not True]
    history = load(run_dir)
    sent, received = history.sends.num_rows, history.receives.num_rows
    first = pc.min(history.sends["invoke_ns"]).as_py()
    last = pc.max(history.receives["receive_ns"]).as_py()
    used = cpu.seconds(since_start=frozenset({BROKER}))
    return {
        "msgs_per_s": received / ((last - first) / 1e9),
        "producer_msgs_per_s": float(result["figures"]["throughput"]["sent"]["mean_msgs_per_s"]),
        "messages": received,
        f"{PRODUCER}_us_per_msg": used[PRODUCER] / sent * 1e6,
        f"{CONSUMER}_us_per_msg": used[CONSUMER] / received * 1e6,
        f"{BROKER}_us_per_msg": used[BROKER] / received * 1e6,
        f"{ORCHESTRATOR}_us_per_msg": orchestrator / received * 1e6,
        "wall_seconds": (outcome.drain_end_ns - outcome.start_ns) / 1e9,
    }


def test_bench_kafka_throughput(
    benchmark: BenchmarkFixture,
    settings: Settings,
    require_service: RequireService,
    tmp_path: Path,
) -> None:
    require_service("kafka")
    rounds: list[dict[str, Figures]] = []

    def measure() -> None:
        for number in range(ROUNDS):
            figures: dict[str, Figures] = {}
            for name in ["reference", *VARIANTS]:
                load_average = os.getloadavg()[0]
                if name == "reference":
                    figures[name] = reference(settings)
                else:
                    figures[name] = harness(settings, name, tmp_path / f"r{number}-{name}")
                figures[name]["load_average"] = load_average
                print(f"\nround {number} {name}: " + _shown(figures[name]))
            rounds.append(figures)

    benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    medians = {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
        for name in rounds[0]
    }
    best = max(VARIANTS, key=lambda name: medians[name]["msgs_per_s"])
    ratio = medians[best]["msgs_per_s"] / medians["reference"]["msgs_per_s"]
    benchmark.extra_info.update(
        rounds=rounds, medians=medians, best_variant=best, ratio=round(ratio, 3)
    )
    print(f"\nmedians over {ROUNDS} alternated rounds:")
    for name, figures in medians.items():
        print(f"  {name}: {_shown(figures)}")
    print(f"best {best}: {ratio:.2f}x the Kafka tools (target >= {TARGET_RATIO}x)")


def _shown(figures: Figures) -> str:
    return ", ".join(
        f"{key} {value:,.1f}" if value < 1000 else f"{key} {value:,.0f}"
        for key, value in figures.items()
    )
