"""`brokerbench run` end to end against the real brokers, then `analyze` and planted anomalies
in the real histories it wrote."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pytest

from harness.checkers import HistoryIndex, check_all, derive_backlog
from harness.drivers.base import OrderingScope
from harness.history.store import load
from harness.stack.manager import Stack
from tests.flows.runs import analyze_copy

pytestmark = pytest.mark.broker

SUITE = Path(__file__).with_name("suite.yaml")
BROKERS = ("kafka", "elasticmq", "pubsub")
PERCENTILES = {"p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99", "max", "mean"}


@pytest.fixture(scope="module")
def runs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    output = tmp_path_factory.mktemp("runs")
    completed = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(SUITE), "-o", str(output),
         "--metrics-port", "0", "--no-broker-warmup"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    found = {path.parts[-5]: path.parent for path in output.glob("e2e-*/*/*/*/r0/result.json")}
    assert sorted(found) == sorted(BROKERS)
    return found


def result_of(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return loaded


@pytest.mark.parametrize("broker", BROKERS)
def test_a_healthy_run_is_complete_and_valid(runs: dict[str, Path], broker: str) -> None:
    result = result_of(runs[broker])
    assert result["schema"] == "brokerbench.result/1"
    assert result["broker"] == broker
    assert result["proxy"] == "all"
    assert result["valid"] is True, [c for c in result["checks"] if c["valid"] is not True]
    counts = result["counts"]
    assert counts["sent"] == counts["ok"] == 300 * 4
    assert counts["not_sent"] == 0
    assert counts["received"] == counts["ok"]
    figures = result["figures"]
    assert figures["throughput"]["sent"]["mean_msgs_per_s"] > 0
    for kind in ("publish", "publish_corrected", "publish_delay", "e2e", "e2e_uncorrected"):
        assert set(figures["latency"][kind]["stats"]) == PERCENTILES
    assert figures["latency"]["e2e"]["count"] > 0
    lag = figures["lag"]
    assert lag["samples"]
    assert lag["source"] == ("derived" if broker == "pubsub" else "broker")
    assert result["environment"]["git_commit"]
    assert result["workload"]["params"]["rate"] == 300
    assert (runs[broker] / "history" / "sends.parquet").exists()
    assert not (runs[broker] / "history" / "shards").exists()


def test_analyze_recomputes_the_same_verdicts_without_brokers(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    before, after, _ = analyze_copy(runs["kafka"], tmp_path / "run")
    assert after["checks"] == before["checks"]
    assert after["counts"] == before["counts"]


# --- anomalies planted into a real history -----------------------------------------------------


def verdicts(
    sends: pa.Table, receives: pa.Table, events: pa.Table, *, exactly_once: bool = False
) -> dict[str, dict[str, Any]]:
    lag = derive_backlog(HistoryIndex(sends, receives))
    checked = check_all(
        sends, receives, events, OrderingScope.PARTITION, lag=lag, exactly_once=exactly_once
    )
    return {verdict.name: {"valid": verdict.valid, **verdict.counts} for verdict in checked}


def invalid(found: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, verdict in found.items() if verdict["valid"] is not True}


def kafka_history(runs: dict[str, Path]) -> tuple[pa.Table, pa.Table, pa.Table]:
    history = load(runs["kafka"])
    return history.sends, history.receives, history.events


def without(receives: pa.Table, victim: pa.Table) -> pa.Table:
    """``receives`` less the delivery at ``victim``'s partition and offset."""
    same = pc.and_(
        pc.equal(receives["partition"], victim["partition"][0]),
        pc.equal(receives["offset"], victim["offset"][0]),
    )
    return receives.filter(pc.invert(same))


def test_the_real_history_is_clean(runs: dict[str, Path]) -> None:
    assert invalid(verdicts(*kafka_history(runs))) == set()


def test_a_dropped_acked_message_is_a_lost_write(runs: dict[str, Path]) -> None:
    sends, receives, events = kafka_history(runs)
    victim = receives.sort_by([("partition", "ascending"), ("offset", "ascending")]).slice(5, 1)
    found = verdicts(sends, without(receives, victim), events)
    assert invalid(found) == {"lost"}
    assert (found["lost"]["lost"], found["lost"]["lost_write"]) == (1, 1)


def test_a_republished_message_is_a_duplicate_publish_only_exactly_once_fails(
    runs: dict[str, Path],
) -> None:
    sends, receives, events = kafka_history(runs)
    copy = receives.slice(10, 1)
    republished = copy.set_column(
        copy.schema.get_field_index("offset"),
        copy.schema.field("offset"),
        pa.array([10_000_000], pa.int64()),
    )
    twice = pa.concat_tables([receives, republished])
    found = verdicts(sends, twice, events)
    assert invalid(found) == set()  # at-least-once allows it, and counts it
    assert found["duplicates"]["duplicate_publish"] == 1
    assert found["duplicates"]["duplicate_publish_by_client"] == 1  # one send, two offsets
    assert invalid(verdicts(sends, twice, events, exactly_once=True)) == {"duplicates"}


def test_a_redelivered_message_is_counted_but_allowed(runs: dict[str, Path]) -> None:
    sends, receives, events = kafka_history(runs)
    found = verdicts(sends, pa.concat_tables([receives, receives.slice(10, 1)]), events)
    assert invalid(found) == set()
    assert found["duplicates"]["redelivery"] == 1


def test_a_key_consumed_out_of_order_is_a_reorder(runs: dict[str, Path]) -> None:
    sends, receives, events = kafka_history(runs)
    ordered = receives.sort_by([("receive_ns", "ascending")])
    first = ordered.slice(0, 1)
    stream = pc.and_(
        pc.and_(
            pc.equal(ordered["producer_id"], first["producer_id"][0]),
            pc.equal(ordered["key_id"], first["key_id"][0]),
        ),
        pc.equal(ordered["consumer_id"], first["consumer_id"][0]),
    )
    rows = pc.indices_nonzero(stream).to_pylist()[:2]
    times = ordered["receive_ns"].to_pylist()
    times[rows[0]], times[rows[1]] = times[rows[1]], times[rows[0]]
    swapped = ordered.set_column(
        ordered.schema.get_field_index("receive_ns"),
        ordered.schema.field("receive_ns"),
        pa.array(times, pa.int64()),
    )
    found = verdicts(sends, swapped, events)
    assert invalid(found) == {"ordering"}
    assert found["ordering"]["reorder"] == 1


def with_column(table: pa.Table, name: str, values: list[Any]) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(name)
    return table.set_column(index, field, pa.array(values, field.type))


def test_the_last_message_of_a_partition_never_read_is_unseen(runs: dict[str, Path]) -> None:
    sends, receives, events = kafka_history(runs)
    last = receives.sort_by([("partition", "ascending"), ("offset", "descending")]).slice(0, 1)
    found = verdicts(sends, without(receives, last), events)
    assert invalid(found) == {"lost"}
    assert found["lost"]["valid"] is None  # unseen: lost, or merely late
    assert (found["lost"]["unseen"], found["lost"]["lost_write"]) == (1, 0)


def test_sends_that_failed_or_ended_unknown_are_judged_by_their_fate(
    runs: dict[str, Path],
) -> None:
    sends, receives, events = kafka_history(runs)
    outcomes = sends["outcome"].to_pylist()
    outcomes[3], outcomes[4] = 1, 2  # fail, unknown; both were in fact delivered
    found = verdicts(with_column(sends, "outcome", outcomes), receives, events)
    assert invalid(found) == {"failed-but-delivered"}
    assert found["failed-but-delivered"]["failed_but_delivered"] == 1
    assert found["unknown-outcome"]["delivered"] == 1


def test_a_message_nobody_sent_is_a_phantom(runs: dict[str, Path]) -> None:
    sends, receives, events = kafka_history(runs)
    phantom = with_column(receives.slice(0, 1), "seq", [10**9])
    found = verdicts(sends, pa.concat_tables([receives, phantom]), events)
    assert "phantom" in invalid(found)
    assert found["phantom"]["phantom"] == 1
