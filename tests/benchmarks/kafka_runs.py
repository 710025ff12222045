"""Shared by the Kafka benchmarks: one evaluated brokerbench run on the local Kafka, Kafka's own
performance tools, and the CPU time of the processes involved, read from the processes."""

import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from harness.history.store import compact
from harness.load.throughput import ThroughputConfig
from harness.run.figures import Window
from harness.run.result import LAG_FILE, evaluate
from harness.run.single import RunOutcome, RunRequest, execute
from harness.settings import Settings
from harness.setup import artifacts
from harness.setup.prerequisites import JAVA
from harness.suite import ProxyPath

NS_PER_S = 1_000_000_000


def run_and_evaluate(
    settings: Settings, config: ThroughputConfig, run_dir: Path, *, proxy: ProxyPath
) -> tuple[RunOutcome, dict[str, Any]]:
    """One run on the local Kafka, evaluated as ``finish_run`` does; its topic is deleted."""
    outcome = run(settings, config, run_dir, proxy=proxy)
    return outcome, evaluate_run(settings, config, run_dir, outcome)


def run(
    settings: Settings, config: ThroughputConfig, run_dir: Path, *, proxy: ProxyPath
) -> RunOutcome:
    return execute(
        RunRequest("bench", "bench", "kafka", 0, config, settings, proxy, run_dir),
        lambda _: None,
    )


def evaluate_run(
    settings: Settings, config: ThroughputConfig, run_dir: Path, outcome: RunOutcome
) -> dict[str, Any]:
    try:
        pq.write_table(outcome.lag.table(), run_dir / LAG_FILE)
        compact(run_dir)
        ordering = outcome.driver.capabilities.ordering(config.ordered)
        window = Window(outcome.warmup_end_ns, outcome.end_ns)
        return evaluate(run_dir, ordering, window, config.message_size, True).document()
    finally:
        delete_topics(settings, f"{outcome.run_id:016x}")


def delete_topics(settings: Settings, containing: str) -> None:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka}"})
    topics = [name for name in admin.list_topics(timeout=10).topics if containing in name]
    if not topics:
        return
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        future.result()


def create_topic(settings: Settings, partitions: int) -> str:
    topic = f"bb-bench-reference-{secrets.token_hex(6)}"
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{settings.ports.kafka}"})
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result()
    return topic


def kafka_tool(main_class: str, *args: str) -> subprocess.Popen[str]:
    """Start one of Kafka's tools (``org.apache.kafka.tools.*``) from the cached jars."""
    lib = artifacts.require(artifacts.kafka())
    return subprocess.Popen(
        [JAVA.require(), "-Xmx512m", "-cp", f"{lib}/*", f"org.apache.kafka.tools.{main_class}",
         *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def broker_pid(marker: str = "kafka.Kafka") -> int:
    """The local broker's JVM (its command line names ``marker``)."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        if marker in (process.info["cmdline"] or []):
            return int(process.info["pid"])
    raise RuntimeError(f"no running process with {marker} on its command line")


class CpuSampler:
    """CPU seconds (user + system) of processes by role, sampled every ``interval`` from the
    processes themselves (psutil, i.e. /proc). Processes come and go: each one's last sample
    counts, so a process's final ``interval`` of CPU may be missed; processes that live across
    the whole measurement (a broker) count as the difference from their first sample."""

    def __init__(self, roles: Callable[[], dict[str, list[int]]], interval: float = 0.1) -> None:
        self._roles = roles
        self._interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._role_of: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        for role, pids in self._roles().items():
            for pid in pids:
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                used = times.user + times.system
                self._first.setdefault(pid, used)
                self._last[pid] = used
                self._role_of[pid] = role

    def seconds(self, since_start: frozenset[str] = frozenset()) -> dict[str, float]:
        """CPU seconds per role; roles in ``since_start`` count from their first sample."""
        totals: dict[str, float] = {}
        for pid, used in self._last.items():
            role = self._role_of[pid]
            spent = used - self._first[pid] if role in since_start else used
            totals[role] = totals.get(role, 0.0) + spent
        return totals


def own_children(*markers: str) -> dict[str, list[int]]:
    """This process's descendants whose command line mentions each marker, by marker."""
    found: dict[str, list[int]] = {marker: [] for marker in markers}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for marker in markers:
            if marker in line:
                found[marker].append(child.pid)
    return found


_PRODUCER_SUMMARY = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec")


def finished_output(process: subprocess.Popen[str], timeout: float) -> str:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited {process.returncode}: {out[-800:]}")
    return out


def producer_rate(output: str) -> float:
    summaries = [m for line in output.splitlines() if (m := _PRODUCER_SUMMARY.match(line))]
    assert summaries, f"no summary line in ProducerPerformance's output: {output[-500:]}"
    return float(summaries[-1][2])


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
