"""The broker warm-up on a second stack (its own home, ports shifted by 4000): it runs before
a broker's first run and not before its second, again after a restart (behind the suite's back,
and by a crash fault), its scratch queue is deleted and never reaches a run, and it can be
turned off."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.drivers.sqs import SqsDriver
from harness.drivers.targets import open_driver
from harness.run.broker_warmup import DESTINATION_PREFIX, WarmupProgress
from harness.run.single import Progress
from harness.run.suite_runner import PlannedRun, run_suite
from harness.settings import Ports, load_settings
from harness.stack.manager import Stack
from tests.conftest import missing_services
from tests.stack.cli import brokerbench, environment, isolated_home

pytestmark = pytest.mark.broker

SHIFT = 4000
"""Apart from tests/stack's 2000, so that both can run at once; below Linux's ephemeral ports
(32768 and up: see tests/stack/cli.py), like every port of the tests' second stacks."""
PORTS = {
    f"BROKERBENCH_PORT_{name.upper()}": str(port + SHIFT)
    for name, port in Ports().model_dump().items()
}


def suite_file(folder: Path, **extra: Any) -> Path:
    suite = {
        "name": "warm",
        "brokers": ["elasticmq"],
        "proxy": "all",
        "broker_warmup": {"min_messages": 100, "max_seconds": 10},
        # A crash of ElasticMQ (in memory) loses what it held: no drain can finish, so do not
        # wait the default 60 s for one.
        "workloads": [
            {
                "name": "w",
                "params": {"rate": 50, "duration": 6, "warmup": 0, "keys": 4, "drain_timeout": 8},
            }
        ],
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def second_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """ElasticMQ and toxiproxy in a home of their own; the environment that reaches them."""
    missing = {name: why for name, why in missing_services().items() if name != "kafka"}
    if missing.get("elasticmq") or missing.get("toxiproxy"):
        pytest.skip("; ".join(missing.values()))
    home = isolated_home(tmp_path_factory.mktemp("warmup") / "home", "elasticmq", "toxiproxy")
    env = environment(home) | PORTS
    started = brokerbench("up", "--only", "toxiproxy,elasticmq", env=env)
    try:
        assert started.returncode == 0, started.stderr
        yield env
    finally:
        stopped = brokerbench("down", env=env)
        assert stopped.returncode == 0, stopped.stderr


def warmup_queues(driver: SqsDriver) -> set[str]:
    urls = driver.client.list_queues(QueueNamePrefix=DESTINATION_PREFIX).get("QueueUrls", [])
    return {url.rsplit("/", 1)[1] for url in urls}


def test_a_broker_is_warmed_first_and_after_each_restart_never_inside_a_run(
    second_stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BROKERBENCH_HOME", *PORTS):
        monkeypatch.setenv(name, second_stack[name])
    settings = load_settings()
    observer = open_driver("elasticmq", settings)
    assert isinstance(observer, SqsDriver)
    suite = suite_file(tmp_path, repeats=2, scenarios=["baseline", "broker-crash"])
    warmups: list[tuple[str, int, str]] = []
    used: set[str] = set()
    during_runs: dict[Path, set[str]] = {}

    def on_warmup(planned: PlannedRun, reason: str, progress: WarmupProgress) -> None:
        assert planned.scenario is not None
        if progress.seconds == 0:
            warmups.append((planned.scenario.name, planned.repeat, reason))
        used.update(warmup_queues(observer))

    def on_progress(planned: PlannedRun, state: Progress) -> None:
        if state.phase == "load" and planned.run_dir not in during_runs:
            during_runs[planned.run_dir] = warmup_queues(observer)

    def on_result(planned: PlannedRun, result: dict[str, Any]) -> None:
        assert planned.scenario is not None
        if (planned.scenario.name, planned.repeat) == ("baseline", 0):
            elasticmq = Stack(settings, ["elasticmq"])  # restarted behind the suite's back
            elasticmq.down()
            elasticmq.up()

    try:
        run_suite(
            suite,
            settings,
            tmp_path / "runs",
            on_progress=on_progress,
            on_result=on_result,
            on_warmup=on_warmup,
        )
        left = warmup_queues(observer)
    finally:
        observer.close()

    assert warmups == [
        ("baseline", 0, "first run"),
        ("baseline", 1, "broker restarted"),  # seen by its pid file only
        ("broker-crash", 1, "broker restarted"),  # after r0's crash
    ]
    results = {
        (r["scenario"]["name"], r["repeat"]): r
        for r in (json.loads(p.read_text()) for p in tmp_path.glob("runs/**/result.json"))
    }
    phases = {key: result["phases"]["broker_warmup"] for key, result in results.items()}
    assert phases[("broker-crash", 0)] is None
    assert [phases[key]["reason"] for key in (("baseline", 0), ("baseline", 1))] == [
        "first run",
        "broker restarted",
    ]
    for key in (("baseline", 0), ("baseline", 1), ("broker-crash", 1)):
        assert phases[key]["messages"] >= 100
        assert 3 <= phases[key]["seconds"] <= 10
        assert len(phases[key]["e2e_p50_ms"]) == phases[key]["seconds"]
    # The scratch queue existed during each warm-up, was gone before each run, and is gone.
    assert used
    assert all(name.startswith(DESTINATION_PREFIX) for name in used)
    assert len(during_runs) == 4
    assert set().union(*during_runs.values()) == set()
    assert left == set()
    # No warm-up message reached a run: each baseline run received exactly what it sent.
    for key in (("baseline", 0), ("baseline", 1)):
        counts = results[key]["counts"]
        assert counts["received"] == counts["ok"] == counts["sent"] > 0
        phantom = next(c for c in results[key]["checks"] if c["name"] == "phantom")
        assert phantom["valid"] is True
    assert not [p for p in (tmp_path / "runs").rglob("*") if DESTINATION_PREFIX in p.name]


def test_the_warm_up_can_be_turned_off_by_flag_or_by_the_suite(
    second_stack: dict[str, str], tmp_path: Path
) -> None:
    for name, suite, flags in (
        ("flag", suite_file(tmp_path / "flag"), ["--no-broker-warmup"]),
        ("suite", suite_file(tmp_path / "suite", broker_warmup=False), []),
    ):
        output = tmp_path / name / "runs"
        completed = brokerbench(
            "run", str(suite), "-o", str(output), "--metrics-port", "0", *flags, env=second_stack
        )
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
        [result] = [json.loads(p.read_text()) for p in output.rglob("result.json")]
        assert result["phases"]["broker_warmup"] is None
        assert "warming up" not in completed.stdout


def test_a_warm_up_against_an_unreachable_broker_fails_the_run_naming_the_fix(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path / "empty-home") | {
        name: str(int(port) + 1000) for name, port in PORTS.items()
    }
    suite = suite_file(tmp_path)
    completed = brokerbench("run", str(suite), "-o", str(tmp_path / "runs"), env=env)
    # The run could not execute: recorded as failed (exit 3), the suite would go on.
    assert completed.returncode == 3, (completed.returncode, completed.stderr)
    assert "Traceback" not in completed.stderr
    reason = f"127.0.0.1:{env['BROKERBENCH_PORT_ELASTICMQ']} is unreachable: start it with"
    assert completed.stderr.strip().splitlines()[-1].startswith("failed: ")
    assert reason in completed.stderr.strip().splitlines()[-1]
    [result] = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("result.json")]
    assert result["valid"] is None and reason in result["error"]
