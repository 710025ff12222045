"""The schema-evolution scenarios (chaos/scenarios/schema-*.yaml) run by `brokerbench run`
against the REAL schema registry (Apicurio, started through the stack in a home of its own on
a free port) and the shared local Kafka: one suite, the three scenarios and a baseline, short
runs (40 msg/s for 6 s). They fault the application, never the shared brokers: not `alone`."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.settings import Ports, Settings
from harness.setup import artifacts
from harness.stack.manager import Stack
from tests.conftest import missing_services
from tests.flows.runs import check, invalid_checks, result_of
from tests.memory_double import free_port, home
from tests.stack.cli import isolated_home

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

ROOT = Path(__file__).parents[2]
RATE, DURATION = 40, 10
"""Long enough after the roll (at 2 s) for producers to write v2 even when the registry, on a
busy 2-core machine, takes seconds to answer (6 s once left none: CI, 3 test workers)."""
SUITE = {
    "name": "schemas",
    "brokers": ["kafka"],
    "scenarios": [
        "baseline",
        "schema-roll-compatible",
        "schema-roll-incompatible",
        "schema-bypass",
    ],
    "workloads": [
        {
            "name": "w",
            "params": {
                "rate": RATE,
                "duration": DURATION,
                "warmup": 0,
                "consumers": 2,
                "partitions": 2,
                "keys": 8,
                "payload_schema": "avro",
                "drain_timeout": 30,
            },
        }
    ],
}


@pytest.fixture(scope="module")
def runs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if "kafka" in missing_services():
        pytest.skip(missing_services()["kafka"])
    if not artifacts.schema_registry_server().installed:
        pytest.skip("the schema registry is not built: run `brokerbench setup`")
    root = tmp_path_factory.mktemp("schema-scenarios")
    registry_home = isolated_home(root / "registry-home", "registry")
    registry = Stack(Settings(ports=Ports(registry=free_port())), ["registry"])
    with home(registry_home):
        registry.up()
    try:
        suite = root / "schemas.yaml"
        suite.write_text(yaml.safe_dump(SUITE))
        env = os.environ | {"BROKERBENCH_PORT_REGISTRY": str(registry.settings.ports.registry)}
        completed = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(suite), "-o", str(root / "runs"),
             "--metrics-port", "0", "--no-broker-warmup"],
            capture_output=True, text=True, timeout=280, check=False, env=env, cwd=ROOT,
        )  # fmt: skip
    finally:
        with home(registry_home):
            registry.down()
    assert completed.returncode in (0, 1), completed.stdout[-3000:] + completed.stderr[-3000:]
    found = [result_of(p.parent) for p in (root / "runs").rglob("result.json")]
    return {result["scenario"]["name"]: result for result in found}


def _undecodable(result: dict[str, Any]) -> dict[str, Any]:
    return check(result, "undecodable")


def test_a_compatible_roll_keeps_every_check_valid_and_both_readers_decode_both(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["schema-roll-compatible"]
    assert invalid_checks(result) == []
    verdict = _undecodable(result)
    counts = verdict["counts"]
    assert verdict["valid"] is True
    assert counts["rolled"] == 1
    assert counts["sent_v1"] > 0 and counts.get("sent_v2", 0) > 0, counts
    assert counts["undecodable"] == counts["dead_lettered"] == 0
    for reader in ("v1", "v2"):  # consumer-0 reads with v1, consumer-1 with v2
        for written in ("v1", "v2"):
            assert counts[f"decoded_{reader}_reader_of_{written}"] > 0, counts
    decoded = counts["decoded_v1_reader"] + counts["decoded_v2_reader"]
    assert (
        decoded == counts["sent_v1"] + counts["sent_v2"] == check(result, "lost")["counts"]["acked"]
    )


def test_an_incompatible_roll_is_refused_with_its_time_and_producers_keep_v1(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["schema-roll-incompatible"]
    assert invalid_checks(result) == []
    verdict = _undecodable(result)
    counts = verdict["counts"]
    assert (counts["refused"], counts.get("rolled", 0), counts.get("sent_v2", 0)) == (1, 0, 0)
    (refusal,) = [e for e in verdict["examples"] if e["kind"] == "refused"]
    assert refusal["compatibility"] == "BACKWARD"
    assert "STRING not compatible with writer type: LONG" in refusal["reason"]
    (fault,) = result["scenario"]["faults"]
    assert fault["start_ns"] <= refusal["time_ns"] <= fault["end_ns"]
    assert counts["decoded_v1_reader"] + counts["decoded_v2_reader"] == counts["sent_v1"]
    assert counts["undecodable"] == 0


def test_a_producer_bypassing_the_registry_is_undecodable_and_dead_lettered(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["schema-bypass"]
    verdict = _undecodable(result)
    counts = verdict["counts"]
    assert verdict["valid"] is True, verdict
    assert counts["sent_bypass"] > 0
    assert counts["undecodable"] == counts["undecodable_not_wire_format"] == counts["sent_bypass"]
    assert counts["dead_lettered"] == counts["undecodable"]
    assert counts["undecodable_not_dead_lettered"] == counts["dead_lettered_decodable"] == 0
    example = next(e for e in verdict["examples"] if e["kind"] == "undecodable")
    assert example["reason"] == "not-wire-format" and example["offset"] >= 0
    (fault,) = result["scenario"]["faults"]
    assert fault["start_ns"] <= example["time_ns"]
    # The undecodable messages were delivered (nacked): nothing lost, every other check valid.
    assert invalid_checks(result) == []
    assert check(result, "lost")["counts"]["lost"] == 0


def test_a_baseline_with_schema_bodies_decodes_everything(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["baseline"]
    assert invalid_checks(result) == []
    counts = _undecodable(result)["counts"]
    assert counts["sent_v1"] == counts["decoded_v1_reader"] + counts["decoded_v2_reader"] > 0
    assert counts["undecodable"] == 0
