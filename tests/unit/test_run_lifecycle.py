"""A run folder's state (``run-state.json``) and what becomes of a run that fails, without
brokers: the state machine, the failed result, which errors end the suite, and what
``report`` and ``gate`` make of failed, interrupted and missing runs."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psutil
import pytest

from harness.errors import BrokerUnreachableError, RunFailedError, UserError
from harness.run.lifecycle import RunRecordedAsFailedError, run_lifecycle
from harness.run.result_model import RESULT_FILE, RunResult, write_result
from harness.run.run_state import STATE_FILE, RunState, mark_running, read_state
from harness.run.suite_plan import PLAN_FILE, PlannedEntry, SuitePlan, write_plan
from tests.stack import cli

KNOWN: dict[str, Any] = {
    "schema": "brokerbench.result/1", "run_id": "00000000000000ff", "suite": "s",
    "broker": "kafka", "repeat": 0, "scenario": {"name": "baseline"},
    "workload": {"name": "w", "kind": "throughput", "params": {"message_size": 100}},
}  # fmt: skip


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def rewrite_state(run_dir: Path, **changes: Any) -> None:
    path = run_dir / STATE_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_running_whose_harness_is_gone_reads_as_interrupted(tmp_path: Path) -> None:
    mark_running(tmp_path, KNOWN)
    record = read_state(tmp_path)
    assert record is not None and record.effective is RunState.RUNNING  # this process
    rewrite_state(tmp_path, pid=dead_pid())
    record = read_state(tmp_path)
    assert record is not None and record.effective is RunState.INTERRUPTED
    assert "stopped without recording an end" in record.reason
    # A live process with the recorded pid but another start time: the pid was reused.
    since_boot = psutil.Process().create_time() - psutil.boot_time()
    rewrite_state(tmp_path, pid=os.getpid(), pid_since_boot=since_boot - 60)
    record = read_state(tmp_path)
    assert record is not None and record.effective is RunState.INTERRUPTED
    # The same in a file from before boot-relative start times: the wall-clock one decides.
    started = psutil.Process().create_time()
    rewrite_state(tmp_path, pid=os.getpid(), pid_started=started - 60, pid_since_boot=None)
    record = read_state(tmp_path)
    assert record is not None and record.effective is RunState.INTERRUPTED


def test_a_run_that_ends_well_is_complete(tmp_path: Path) -> None:
    with run_lifecycle(tmp_path, KNOWN):
        record = read_state(tmp_path)
        assert record is not None and record.state is RunState.RUNNING
    record = read_state(tmp_path)
    assert record is not None and record.state is RunState.COMPLETE and record.ended_at


@pytest.mark.parametrize(
    "error",
    [RunFailedError("consumer-0 exited with code 1"), BrokerUnreachableError("gone"),
     RuntimeError("toxiproxy said no")],
)  # fmt: skip
def test_a_run_that_cannot_execute_writes_a_failed_result(tmp_path: Path, error: Exception) -> None:
    with pytest.raises(RunRecordedAsFailedError), run_lifecycle(tmp_path, KNOWN):
        raise error
    record = read_state(tmp_path)
    assert record is not None and record.state is RunState.FAILED
    result = json.loads((tmp_path / RESULT_FILE).read_text())
    assert result["valid"] is None and result["checks"] == []
    assert str(error) in result["error"] and result["error"] == record.error
    assert result["broker"] == "kafka" and result["workload"]["name"] == "w"
    assert "Traceback" in (tmp_path / "logs" / "harness-error.log").read_text()


def test_a_failed_run_keeps_its_secrets_out_of_every_file_it_writes(tmp_path: Path) -> None:
    password = "pa55-in-the-url"
    params = {"message_size": 100, "database": f"postgresql+psycopg://u:{password}@127.0.0.1/db"}
    known = KNOWN | {"workload": KNOWN["workload"] | {"params": params}}
    with pytest.raises(RunRecordedAsFailedError), run_lifecycle(tmp_path, known):
        raise RunFailedError(f"could not connect to postgresql+psycopg://u:{password}@127.0.0.1")
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {p.name for p in written} >= {STATE_FILE, RESULT_FILE, "harness-error.log"}
    assert not [p for p in written if password in p.read_text()]


def test_a_user_error_found_at_run_time_is_recorded_and_ends_the_suite(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs FIFO"), run_lifecycle(tmp_path, KNOWN):
        raise UserError("elasticmq: exactly-once on SQS needs FIFO queues")
    record = read_state(tmp_path)
    assert record is not None and record.state is RunState.FAILED


def test_ctrl_c_leaves_an_interrupted_run(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), run_lifecycle(tmp_path, KNOWN):
        raise KeyboardInterrupt
    record = read_state(tmp_path)
    assert record is not None and record.state is RunState.INTERRUPTED
    assert not (tmp_path / RESULT_FILE).exists()


def test_nan_figures_are_written_as_null(tmp_path: Path) -> None:
    stats = {"p50": float("nan"), "p99": float("inf"), "max": 3.0}
    result = RunResult.model_validate(KNOWN | {"figures": {"latency": {"e2e": {"stats": stats}}}})
    text = (write_result(tmp_path, result)).read_text()
    written = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))
    assert written["figures"]["latency"]["e2e"]["stats"] == {"p50": None, "p99": None, "max": 3}


# --- report and gate on unfinished runs --------------------------------------------------------


def result_document(repeat: int, p50: float, **extra: Any) -> dict[str, Any]:
    return KNOWN | {
        "repeat": repeat, "valid": True, "environment": {"host": "a", "cpus": 2},
        "figures": {
            "throughput": {"sent": {"mean_msgs_per_s": 100.0}},
            "latency": {"e2e": {"stats": {"p50": p50, "p99": p50}},
                        "publish": {"stats": {"p50": 1.0}}},
        },
        "checks": [{"name": "lost", "valid": True, "counts": {}, "examples": [], "notes": ""}],
        **extra,
    }  # fmt: skip


def write_suite(root: Path, documents: dict[int, dict[str, Any] | None]) -> Path:
    """A suite folder planned with one run per key of ``documents``: its result.json and a
    complete state, or (None) a state left ``running`` by a harness that is gone."""
    entries = []
    for repeat, document in documents.items():
        run_dir = root / "kafka" / "w" / "baseline" / f"r{repeat}"
        entries.append(
            PlannedEntry(broker="kafka", workload="w", scenario="baseline", repeat=repeat,
                         run_dir=run_dir.relative_to(root).as_posix())
        )  # fmt: skip
        mark_running(run_dir, KNOWN | {"repeat": repeat})
        if document is None:
            rewrite_state(run_dir, pid=dead_pid())
        else:
            (run_dir / RESULT_FILE).write_text(json.dumps(document))
            rewrite_state(run_dir, state="complete")
    write_plan(root, SuitePlan(suite="s", runs=entries))
    return root


def brokerbench(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.brokerbench(*args, env={**os.environ, "COLUMNS": "200"}, timeout=120)


def test_report_lists_an_interrupted_run_and_never_says_pass(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", {0: result_document(0, 5.0), 1: None})
    (suite / "kafka" / "w" / "baseline" / "r2").mkdir()  # planned below, never started
    plan = json.loads((suite / PLAN_FILE).read_text())
    plan["runs"].append(plan["runs"][0] | {"repeat": 2, "run_dir": "kafka/w/baseline/r2"})
    (suite / PLAN_FILE).write_text(json.dumps(plan))
    completed = brokerbench(
        "report", str(suite), "--md", str(tmp_path / "r.md"), "--junit", str(tmp_path / "r.xml")
    )
    assert completed.returncode == 0, completed.stderr
    assert "interrupted: kafka / w / baseline r1" in completed.stdout
    assert "missing: kafka / w / baseline r2: never started" in completed.stdout
    markdown = (tmp_path / "r.md").read_text()
    assert "overall: **⚠️ unknown**" in markdown, markdown
    assert "| ⏸️ incomplete<br>did not finish: r1 interrupted, r2 missing |" in markdown
    assert "### Runs that did not finish" in markdown
    suites = ElementTree.parse(tmp_path / "r.xml").getroot().findall("testsuite")
    errors = {s.get("name"): s.find("testcase/error") for s in suites if s.get("errors") == "1"}
    assert sorted(errors) == [f"kafka / w / baseline r{n} (did not finish)" for n in (1, 2)]


def test_report_of_a_complete_suite_still_passes(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", {0: result_document(0, 5.0)})
    completed = brokerbench("report", str(suite), "--md", str(tmp_path / "r.md"))
    assert completed.returncode == 0, completed.stderr
    assert "overall: **✅ pass**" in (tmp_path / "r.md").read_text()


def gate_exit(baseline: Path, current: Path) -> tuple[int, list[str], str]:
    """Exit code, stderr's lines, and the gate's table (stdout)."""
    completed = brokerbench("gate", "--baseline", str(baseline), "--current", str(current))
    return completed.returncode, completed.stderr.strip().splitlines(), completed.stdout


def test_gate_on_nan_latency_stats_cannot_decide(tmp_path: Path) -> None:
    baseline = write_suite(tmp_path / "b", {r: result_document(r, 5.0) for r in range(3)})
    nan = float("nan")
    current = write_suite(tmp_path / "c", {r: result_document(r, nan) for r in range(3)})
    assert "NaN" in (current / "kafka/w/baseline/r0" / RESULT_FILE).read_text()
    code, lines, _ = gate_exit(baseline, current)
    assert code == 2, lines
    assert lines[-1].startswith("gate: cannot decide: kafka / w / baseline: e2e p50: missing")
    assert not any("Traceback" in line for line in lines)


def test_gate_with_a_failed_current_run_cannot_decide(tmp_path: Path) -> None:
    baseline = write_suite(tmp_path / "b", {r: result_document(r, 5.0) for r in range(3)})
    documents: dict[int, dict[str, Any] | None] = {r: result_document(r, 5.0) for r in range(3)}
    documents[2] = KNOWN | {
        "repeat": 2, "valid": None, "error": "consumer-0 exited", "checks": [],
        "environment": {"host": "a", "cpus": 2},
    }  # fmt: skip
    current = write_suite(tmp_path / "c", documents)
    code, lines, table = gate_exit(baseline, current)
    assert code == 2, lines
    assert lines[-1].startswith("gate: cannot decide: kafka / w / baseline:"), lines
    assert "r2 failed, it could not execute: consumer-0 exited" in " ".join(table.split())


def test_a_gate_that_crashes_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli as harness_cli
    from reports import gate as gate_module

    def crash(*_: object, **__: object) -> None:
        raise ZeroDivisionError("float division by zero")

    baseline = write_suite(tmp_path / "b", {0: result_document(0, 5.0)})
    monkeypatch.setattr(gate_module, "run_gate", crash)
    argv = ["brokerbench", "gate", "--baseline", str(baseline), "--current", str(baseline)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        harness_cli.main()
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: gate: cannot decide: the gate crashed (ZeroDivisionError")


def test_gate_with_an_interrupted_current_run_cannot_decide(tmp_path: Path) -> None:
    baseline = write_suite(tmp_path / "b", {r: result_document(r, 5.0) for r in range(3)})
    documents: dict[int, dict[str, Any] | None] = {r: result_document(r, 5.0) for r in range(3)}
    documents[3] = None  # a fourth repeat, killed
    current = write_suite(tmp_path / "c", documents)
    code, lines, table = gate_exit(baseline, current)
    assert code == 2, lines
    assert lines[-1].startswith("gate: cannot decide: kafka / w / baseline: run:"), lines
    assert "r3 is interrupted" in " ".join(table.split())


def test_a_crash_outside_any_run_never_exits_with_a_verdicts_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli as harness_cli

    def crash(**_: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(harness_cli, "app", crash)
    with pytest.raises(SystemExit) as exited:
        harness_cli.main()
    assert exited.value.code == harness_cli.CRASHED == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and "ZeroDivisionError" in err[-2]
    assert err[-1].startswith("error: brokerbench crashed (a bug")
