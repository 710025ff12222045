"""A soak in miniature on the real Kafka (docs/soak.md): the history shards rotate into several
parts per process and the compacted history is still complete; the live metrics answer from the
start to the end of the run; result.json holds each process's resident memory, with growth not
judged in a run this short."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.history.shards import PART_BYTES_ENV
from harness.history.store import load
from harness.stack.manager import Stack
from tests.flows.runs import analyze_copy
from tests.memory_double import free_port

pytestmark = pytest.mark.broker

SUITE = Path(__file__).with_name("soak-short-suite.yaml")
PART = re.compile(r"(?P<table>sends|receives|events)-(?P<label>.+)\+(?P<part>\d+)\.arrow")


@dataclass
class Watched:
    """What the test saw while the run went on."""

    scrapes: list[tuple[float, float]] = field(default_factory=list)
    """(sent, received) of each live metrics page that answered."""
    parts: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    """(table, process label) -> the shard parts seen."""
    resident: set[str] = field(default_factory=set)
    """Processes whose resident memory the live metrics showed."""


RESIDENT = re.compile(r'brokerbench_process_resident_bytes\{.*process="(?P<process>[^"]+)".*\} \d')


def scrape(port: int, watched: Watched) -> None:
    """Note the live metrics page's (messages sent, messages received) and the processes whose
    memory it shows; nothing when it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
            text = page.read().decode()
    except OSError:
        return

    def total(name: str) -> float:
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(f"{name}_total")
        )

    watched.scrapes.append(
        (total("brokerbench_messages_sent"), total("brokerbench_messages_received"))
    )
    watched.resident.update(found["process"] for found in RESIDENT.finditer(text))


@pytest.fixture(scope="module")
def soak(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Watched]:
    output = tmp_path_factory.mktemp("soak")
    port = free_port()
    watched = Watched()
    with (output / "brokerbench.log").open("w") as log:
        harness = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(SUITE), "-o", str(output / "runs"),
             "--metrics-port", str(port), "--no-broker-warmup"],
            env={**os.environ, PART_BYTES_ENV: "1", "COLUMNS": "200"},  # a part per batch
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 300  # a bound for a stuck run, not a measurement
        while harness.poll() is None and time.monotonic() < deadline:
            scrape(port, watched)
            for path in (output / "runs").glob("*/*/*/*/r0/history/shards/*.arrow"):
                if found := PART.fullmatch(path.name):
                    watched.parts[found["table"], found["label"]].add(int(found["part"]))
            time.sleep(0.5)
        if harness.poll() is None:
            harness.kill()
        harness.wait()
    printed = (output / "brokerbench.log").read_text()
    assert harness.returncode == 0, printed[-3000:]
    (result,) = (output / "runs").glob("soak-short-*/kafka/soak-2000/baseline/r0/result.json")
    return result.parent, watched


def result_of(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return loaded


def test_every_load_process_rotated_its_shards_and_the_history_is_complete(
    soak: tuple[Path, Watched],
) -> None:
    run_dir, watched = soak
    result = result_of(run_dir)
    producers = {label for table, label in watched.parts if label.startswith("producer")}
    consumers = {label for table, label in watched.parts if label.startswith("consumer")}
    assert len(producers) == 2 and len(consumers) == 2, sorted(watched.parts)
    for label in producers:
        assert len(watched.parts["sends", label]) >= 2, (label, watched.parts["sends", label])
    for label in consumers:
        assert len(watched.parts["receives", label]) >= 2, (label, watched.parts["receives", label])
    for parts in watched.parts.values():
        assert parts == set(range(len(parts)))  # numbered from 0, none skipped

    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    assert not (run_dir / "history" / "shards").exists()  # every part compacted and removed
    history = load(run_dir)
    counts = result["counts"]
    assert counts["sent"] == counts["ok"] == 2000 * 12
    assert history.sends.num_rows == counts["sent"]
    assert history.receives.num_rows == counts["received"] >= counts["ok"]


def test_the_live_metrics_answer_from_the_start_to_the_end_of_the_run(
    soak: tuple[Path, Watched],
) -> None:
    run_dir, watched = soak
    sent = result_of(run_dir)["counts"]["sent"]
    assert len(watched.scrapes) >= 2, watched.scrapes
    (first_sent, first_received), (last_sent, last_received) = (
        watched.scrapes[0],
        watched.scrapes[-1],
    )
    assert first_sent < 0.5 * sent  # scraped early in the run
    assert last_sent >= 0.9 * sent  # and still answering once the producers were done
    assert last_received > first_received
    assert {"orchestrator", "broker:kafka", "producer-0", "consumer-0"} <= watched.resident


def test_result_json_holds_each_processes_memory_with_growth_not_judged(
    soak: tuple[Path, Watched], tmp_path: Path
) -> None:
    run_dir, _ = soak
    memory = result_of(run_dir)["saturation"]["memory"]
    processes = memory["processes"]
    roles = {subject: entry["role"] for subject, entry in processes.items()}
    assert roles.pop("orchestrator") == "orchestrator"
    assert roles.pop("broker:kafka") == "broker"  # the broker's memory, apart from the harness's
    assert sorted(roles.values()) == ["consumer", "consumer", "producer", "producer"]
    for subject, entry in processes.items():
        assert 1_000_000 < entry["rss_end_bytes"] <= entry["rss_peak_bytes"], subject
        assert entry["samples"] >= 5, subject
        assert entry["rss_first_minute_bytes"] is None, subject
        assert entry["growth_percent"] is None, subject
        assert entry["growth_not_judged"].startswith("sampled for "), subject
    assert memory["harness_growth_percent_max"] is None and memory["harness_grew"] is None
    assert memory["roles"]["producer"]["processes"] == 2

    before, after, _ = analyze_copy(run_dir, tmp_path / "run")
    assert after["saturation"]["memory"] == before["saturation"]["memory"]
