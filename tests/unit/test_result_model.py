"""result.json through ``RunResult``: written as before, byte for byte, and read leniently
across versions (docs/result.md)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest
from pydantic import ValidationError

from harness.errors import UserError
from harness.run.result_model import (
    RESULT_FILE,
    SCHEMA,
    Environment,
    Lag,
    Phases,
    RunResult,
    Workload,
    read_result,
    write_result,
)

SAMPLE = Path(__file__).parent / "data" / "result-elasticmq-broker-crash.json"
"""A result written by a chaos run (a broker warm-up, a crash fault, saturation), its long
series and histograms cut short."""


def written(tmp_path: Path, document: dict[str, Any], name: str = "run") -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir(parents=True)
    path = run_dir / RESULT_FILE
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SAMPLE.read_text())
    return loaded


def test_a_result_read_and_written_again_keeps_its_bytes(tmp_path: Path) -> None:
    result = read_result(SAMPLE)
    write_result(tmp_path, result)
    assert (tmp_path / RESULT_FILE).read_text() == SAMPLE.read_text()
    assert RunResult.model_validate(sample()).document() == sample()  # the writer's validation


def test_the_sections_the_code_reads_are_typed() -> None:
    result = read_result(SAMPLE)
    assert result.schema_name == SCHEMA
    assert (result.broker, result.workload.name, result.scenario.name) == (
        "elasticmq",
        "w",
        "broker-crash",
    )
    e2e = result.figures.latency.e2e.stats
    assert e2e.p99_9 == sample()["figures"]["latency"]["e2e"]["stats"]["p99.9"]
    assert result.value("figures.latency.e2e.stats.p99.9") == e2e.p99_9
    assert result.number("figures.throughput.sent.mean_msgs_per_s") == pytest.approx(
        result.figures.throughput.sent.mean_msgs_per_s
    )
    assert result.value("figures.latency.e2e.stats.p42") is None
    assert result.value("phases") == sample()["phases"]
    assert result.value("checks") == sample()["checks"]
    assert result.value("figures.lag.samples") == sample()["figures"]["lag"]["samples"]
    assert result.value("environment.clients.boto3") == sample()["environment"]["clients"]["boto3"]
    assert result.phases.broker_warmup is not None
    assert result.phases.broker_warmup.reason == "broker restarted"
    assert [c.name for c in result.checks][:2] == ["lost", "unknown-outcome"]
    [crash] = result.scenario.faults
    assert (crash.action, crash.non_durable, crash.recovery.lag_seconds) == ("crash", True, 0.0)
    assert result.counts.not_sent == 0
    assert result.harness_bound is False
    assert result.environment.get("cpus") == result.environment.cpus == 2
    assert result.capabilities.lag_probe == "queue_attributes"


def test_an_older_result_reads_as_unknown_where_it_has_no_key(tmp_path: Path) -> None:
    older = sample()
    for key in ("saturation", "phases", "scenario", "semantics", "run_id"):
        del older[key]
    del older["counts"]["not_sent"]
    del older["environment"]["stack_provider"]
    del older["figures"]["series"]
    result = read_result(written(tmp_path, older))
    assert result.saturation is None
    assert result.harness_bound is None  # unknown, not bound
    assert result.harness_bound_reasons == []
    assert result.phases == Phases()
    assert result.phases.end_ns is None
    assert result.scenario.name == "baseline"
    assert result.scenario.faults == []
    assert result.counts.not_sent is None
    assert result.environment.stack_provider is None
    assert result.figures.series.t == []
    assert (result.semantics, result.run_id) == (None, "")
    assert result.document() == older  # nothing made up on the way back


def test_keys_from_a_newer_writer_are_kept(tmp_path: Path) -> None:
    newer = sample()
    newer["schema"] = f"{SCHEMA}.4"
    newer["a_section_added_later"] = {"x": 1}
    newer["environment"]["test_double"] = True
    newer["checks"][0]["added_later"] = [1]
    newer["scenario"]["faults"][0]["recovery"]["added_later"] = None
    result = read_result(written(tmp_path, newer))
    assert result.model_extra == {"a_section_added_later": {"x": 1}}
    assert result.environment.get("test_double") is True
    assert result.document() == newer
    write_result(tmp_path / "again", result)
    assert json.loads((tmp_path / "again" / RESULT_FILE).read_text()) == newer


def test_a_value_that_does_not_fit_reads_as_unknown_not_a_crash(tmp_path: Path) -> None:
    odd = sample()
    odd["phases"]["end_ns"] = "soon"
    odd["figures"]["latency"]["e2e"]["stats"]["p99"] = "fast"
    odd["figures"]["lag"]["samples"][1] = ["one", 2]
    odd["checks"].insert(1, {"valid": True, "counts": {}})  # no name
    odd["scenario"]["faults"][0]["errors"] = {"many": True}
    odd["saturation"]["harness_bound"] = {"value": 1, "reasons": ["kept"]}
    odd["environment"]["clients"]["boto3"] = 1.4
    result = read_result(written(tmp_path, odd))
    assert result.phases.end_ns is None
    assert result.phases.start_ns == odd["phases"]["start_ns"]
    assert result.figures.latency.e2e.stats.p99 is None
    assert result.figures.latency.e2e.stats.p50 == odd["figures"]["latency"]["e2e"]["stats"]["p50"]
    assert len(result.figures.lag.samples) == len(odd["figures"]["lag"]["samples"]) - 1
    assert [c.name for c in result.checks] == [c["name"] for c in sample()["checks"]]
    assert result.scenario.faults[0].errors is None
    assert result.scenario.faults[0].name == "crash"
    assert result.harness_bound is None
    assert result.harness_bound_reasons == ["kept"]
    assert "boto3" not in result.environment.clients
    unreadables: list[Any] = [[], "bound", {"harness_bound": "yes"}, {"summary": {"roles": 3}}]
    for unreadable in unreadables:
        odd["saturation"] = unreadable
        assert read_result(written(tmp_path, odd, f"s{len(str(unreadable))}")).harness_bound is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "brokerbench.result/2"}, r"schema 'brokerbench\.result/2' is not"),
        ({"schema": "brokerbench.result/10"}, r"schema 'brokerbench\.result/10' is not"),
        ({"schema": None}, r"schema None is not"),
        ({"broker": None}, r": broker: Input should be a valid string"),
        ({"workload": {"kind": "throughput"}}, r": workload\.name: Field required"),
    ],
)
def test_what_cannot_be_read_is_one_line_naming_the_file(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = written(tmp_path, {**sample(), **change})
    with pytest.raises(UserError, match=message) as raised:
        read_result(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert "\n" not in str(raised.value)


def test_a_file_that_is_not_a_result_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / RESULT_FILE
    for text in ("{", "[1, 2]", ""):
        path.write_text(text)
        with pytest.raises(UserError, match=rf"^{path}: ") as raised:
            read_result(path)
        assert "\n" not in str(raised.value)


def test_the_writers_are_held_to_the_types() -> None:
    with pytest.raises(ValidationError, match="end_ns"):
        Phases.model_validate({"end_ns": "soon"})
    with pytest.raises(ValidationError, match="harness_bound"):
        RunResult.model_validate({**sample(), "saturation": {"harness_bound": {"value": 1}}})


def test_a_result_built_from_its_parts_is_written_in_the_documented_order(tmp_path: Path) -> None:
    result = RunResult(
        schema_name=SCHEMA,
        run_id="00000000000000ff",
        suite="s",
        broker="kafka",
        repeat=1,
        workload=Workload(name="w", params={"rate": 10}),
        phases=Phases(start_ns=1, end_ns=2, broker_warmup=None),
        environment=Environment(host="h", cpus=2),
    )
    write_result(tmp_path, result)
    assert (tmp_path / RESULT_FILE).read_text() == (
        json.dumps(
            {
                "schema": SCHEMA,
                "run_id": "00000000000000ff",
                "suite": "s",
                "broker": "kafka",
                "repeat": 1,
                "workload": {"name": "w", "params": {"rate": 10}},
                "phases": {"start_ns": 1, "end_ns": 2, "broker_warmup": None},
                "environment": {"host": "h", "cpus": 2},
            },
            indent=2,
        )
        + "\n"
    )


def test_the_backlog_at_a_time_is_the_last_sample_before_it() -> None:
    lag = Lag(first_ns=10**9, samples=[(0.0, 5), (1.0, None), (2.0, 7), (3.0, 9)])
    assert lag.backlog_at(3 * 10**9) == 7
    assert lag.backlog_at(10**9) == 5
    assert lag.backlog_at(0) is None
    assert lag.backlog_at(None) is None
    assert Lag().backlog_at(10**9) is None


S = 10**9
START = 1_800_000_000 * S


def stored_run(run_dir: Path) -> None:
    """A run folder as a run leaves it, without a broker: a small history (a fault window
    included), the scenario followed and saturation samples."""
    from chaos.figures import SCENARIO_FILE
    from chaos.scenario import load_scenario
    from harness.checkers.columns import Disposition
    from harness.collectors.saturation import SATURATION_FILE, SATURATION_SCHEMA
    from harness.history.recorder import Recorder
    from harness.history.schema import EventKind, SendOutcome
    from harness.history.store import compact

    with Recorder(run_dir, "producer-0") as producer, Recorder(run_dir, "consumer-0") as consumer:
        for seq in range(40):
            intended = START + seq * S // 10
            token = producer.send_invoked(0, seq % 4, seq // 4, intended, intended + 1000)
            producer.send_completed(token, SendOutcome.OK, intended + 2_000_000, seq % 4, seq)
            consumer.received(
                consumer_id=0, producer_id=0, key_id=seq % 4, seq=seq // 4,
                intended_ns=intended, receive_ns=intended + 5_000_000,
                disposition=Disposition.ACKED, partition=seq % 4, offset=seq,
            )  # fmt: skip
    with Recorder(run_dir, "nemesis") as nemesis:
        nemesis.event(EventKind.WARMUP_END, "warmup", time_ns=START + S // 2)
        crash = {"action": "crash", "params": {}, "non_durable": False}
        nemesis.event(EventKind.FAULT_START, "crash", "kafka", crash, time_ns=START + S)
        nemesis.event(EventKind.FAULT_END, "crash", "kafka", time_ns=START + 2 * S)
    compact(run_dir)
    (run_dir / SCENARIO_FILE).write_text(load_scenario("broker-crash").model_dump_json())
    samples = [
        (START + i * S, S, subject, role, None, "cpu_percent", value)
        for i in range(1, 5)
        for subject, role, value in (("machine", "machine", 40.0), ("producer-0", "producer", 9))
    ]
    columns = {name: [row[i] for row in samples] for i, name in enumerate(SATURATION_SCHEMA.names)}
    pq.write_table(pa.table(columns, schema=SATURATION_SCHEMA), run_dir / SATURATION_FILE)


def test_the_evaluation_of_a_stored_history_is_written_through_the_model(tmp_path: Path) -> None:
    from harness.drivers.base import OrderingScope
    from harness.run.figures import Window
    from harness.run.result import evaluate

    stored_run(tmp_path)
    window = Window(START + S // 2, START + 4 * S)
    evaluation = evaluate(tmp_path, OrderingScope.PARTITION, window, 100, False)
    header = RunResult(
        schema_name=SCHEMA,
        run_id="00000000000000ff",
        broker="kafka",
        workload=Workload(name="w", params={"message_size": 100}),
    )
    result = header.evaluated(evaluation)
    write_result(tmp_path, result)
    document = json.loads((tmp_path / RESULT_FILE).read_text())
    assert list(document) == [
        "schema", "run_id", "broker", "workload",
        "counts", "figures", "valid", "checks", "scenario", "saturation",
    ]  # fmt: skip
    assert document["counts"]["sent"] == 40
    assert document["scenario"]["faults"][0]["name"] == "crash"
    assert document["saturation"]["harness_bound"]["value"] is False
    assert list(document["figures"]) == list(sample()["figures"])
    assert list(document["scenario"]["faults"][0]) == list(sample()["scenario"]["faults"][0])
    assert list(document["saturation"]) == list(sample()["saturation"])
    assert read_result(tmp_path / RESULT_FILE).document() == document
    assert result.figures.latency.e2e.stats.p50 == pytest.approx(5.0, rel=0.01)


def test_analyze_rewrites_what_the_history_says_and_keeps_the_rest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    stored_run(tmp_path)
    header = {
        "schema": SCHEMA, "run_id": "00000000000000ff", "broker": "kafka",
        "workload": {"name": "w", "kind": "throughput", "params": {"message_size": 100}},
        "phases": {"start_ns": START, "warmup_end_ns": START + S // 2, "end_ns": START + 4 * S},
        "ordering_scope": "partition", "capabilities": {"lag_probe": "derived"},
        "valid": None, "checks": [], "a_key_added_later": [1],
    }  # fmt: skip
    (tmp_path / RESULT_FILE).write_text(json.dumps(header))
    analyzed = CliRunner().invoke(app, ["analyze", "--write", str(tmp_path)])
    assert analyzed.exit_code == 0, analyzed.output
    assert "harness-bound: no" in analyzed.output
    document = json.loads((tmp_path / RESULT_FILE).read_text())
    assert list(document) == [
        "schema", "run_id", "broker", "workload", "phases", "ordering_scope", "capabilities",
        "counts", "figures", "valid", "checks", "scenario", "saturation", "a_key_added_later",
    ]  # fmt: skip
    assert {k: document[k] for k in ("phases", "capabilities", "a_key_added_later")} == {
        k: header[k] for k in ("phases", "capabilities", "a_key_added_later")
    }
    assert [c["name"] for c in document["checks"]][:2] == ["lost", "unknown-outcome"]
    assert document["counts"]["received"] == 40
    del header["ordering_scope"]
    (tmp_path / RESULT_FILE).write_text(json.dumps(header))
    refused = CliRunner().invoke(app, ["analyze", str(tmp_path)])
    assert isinstance(refused.exception, UserError)
    assert str(refused.exception).startswith(f"{tmp_path / RESULT_FILE}: lacks")


def test_results_are_read_without_pyarrow() -> None:
    code = (
        "import sys, harness.run.result_model, reports.load\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
