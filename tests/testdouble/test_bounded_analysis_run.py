"""A real run's history (``brokerbench run`` against the memory TEST DOUBLE broker, which loses,
duplicates and reorders a few messages) evaluated range by range gives the result the
whole-history evaluation gives: the bounded-memory path (harness/analysis/) on a history the
harness itself recorded and compacted. Tests the harness, never a broker."""

import json
from pathlib import Path

import pytest

from harness.analysis import evaluation
from harness.drivers.base import OrderingScope
from harness.drivers.memory.knobs import Knobs
from harness.run.figures import Window
from harness.run.result import evaluate
from tests.memory_double import MemoryStack, targets_file

pytestmark = pytest.mark.test_double

SUITE = """
name: bounded
brokers: [memory-mixed]
proxy: none
workloads:
  - name: keyed
    kind: throughput
    params: {rate: 200, duration: 2.5, warmup: 0.5, producers: 2, consumers: 2,
             partitions: 3, keys: 8, ordered: true, drain_timeout: 3}
"""


def test_a_recorded_run_evaluates_the_same_range_by_range(
    memory_stack: MemoryStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    knobs = Knobs(lose=0.03, duplicate=0.03, reorder=0.03, seed=5)
    config = targets_file(tmp_path / "brokerbench.yaml", {"memory-mixed": knobs})
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    completed = memory_stack.brokerbench(
        "run", str(suite), "-o", str(tmp_path / "runs"), "--metrics-port", "0", config=config
    )
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    (result_file,) = (tmp_path / "runs").glob("bounded-*/*/*/*/r0/result.json")
    result = json.loads(result_file.read_text())
    run_dir = result_file.parent
    found = {}
    for above in (1 << 62, 0):
        monkeypatch.setattr(evaluation, "BOUNDED_ABOVE_MESSAGES", above)
        monkeypatch.setattr(evaluation, "MESSAGES_PER_RANGE", 40)  # several ranges
        evaluated = evaluate(
            run_dir,
            OrderingScope(result["ordering_scope"]),
            Window(result["phases"]["warmup_end_ns"], result["phases"]["end_ns"]),
            result["workload"]["params"]["message_size"],
            broker_lag=result["capabilities"]["lag_probe"] != "derived",
        )
        found[above] = evaluated.model_dump(mode="json")
        if not above:  # the bounded path really was taken
            assert evaluation.applies(run_dir, has_flow_checks=False, has_scenario=False)
    whole, ranged = found[1 << 62], found[0]
    assert whole["counts"]["sent"] > 10 * 40
    for document in (whole, ranged):
        for check in document["checks"]:
            check["examples"] = [e for e in check["examples"] if e["kind"] != "rebalance"]
    assert ranged == whole
    invalid = {check["name"] for check in whole["checks"] if check["valid"] is False}
    assert {"lost", "ordering"} <= invalid
    assert next(c for c in whole["checks"] if c["name"] == "duplicates")["counts"]["redelivery"]
