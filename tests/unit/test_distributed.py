"""Runs across machines, without a network or a broker: the clock-offset estimator (a fake
clock), placement, the suite's ``distribution:`` block and its refusals, the returned files'
names, re-clocking shards, and ``PlacedChildren`` on a fake cluster (an in-memory stand-in for
the master agent: what it is sent is recorded, what the workers say is injected)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
import yaml

from harness.distributed import messages as m
from harness.distributed.clock import ClockOffset, ClockSample, estimate, measure
from harness.distributed.placed_children import PlacedChildren
from harness.distributed.placement import (
    DEFAULT_MASTER_PORT,
    MASTER,
    Distribution,
    Placement,
    parse_bind,
)
from harness.distributed.returned_files import returned_name
from harness.distributed.shard_offsets import correct_shards
from harness.errors import RunFailedError, UserError
from harness.history.schema import RECEIVES, SENDS
from harness.history.shards import read_shard
from harness.load.plan import ConsumerPlan, DestinationPlan, ProducerPlan, RunShared, StepPlan
from harness.load.progress_line import ProgressLine
from harness.run.children import Role
from harness.run.suite_runner import plan_suite
from harness.settings import Settings

# --- the clock ---------------------------------------------------------------------------------


class FakeNetwork:
    """A master clock and a worker clock ``offset`` ahead; each round trip takes the next of
    ``delays`` (there, back) in ns. No sleeping: the clocks are numbers."""

    def __init__(self, offset: int, delays: list[tuple[int, int]]) -> None:
        self.master = 1_000_000_000_000
        self.offset = offset
        self.delays = iter(delays)
        self.reads = 0

    def now(self) -> int:
        self.reads += 1
        return self.master

    def round_trip(self) -> int:
        there, back = next(self.delays)
        self.master += there
        worker = self.master + self.offset
        self.master += back
        return worker


def test_symmetric_round_trips_give_the_offset_exactly() -> None:
    network = FakeNetwork(offset=-7_000_000, delays=[(150_000, 150_000)] * 8)
    estimated = measure(network.round_trip, network.now, rounds=8)
    assert estimated == ClockOffset(offset_ns=-7_000_000, uncertainty_ns=150_000, samples=8)
    assert network.reads == 16


def test_the_smallest_round_trip_is_kept_and_bounds_the_error() -> None:
    delays = [(900_000, 100_000), (40_000, 10_000), (5_000_000, 200_000), (300_000, 300_000)]
    network = FakeNetwork(offset=2_500_000, delays=delays)
    estimated = measure(network.round_trip, network.now, rounds=4)
    # the 50 us round trip, split 40/10: the estimate is off by 15 us, within its 25 us
    assert estimated.uncertainty_ns == 25_000
    assert estimated.offset_ns == 2_500_000 + 15_000
    assert abs(estimated.offset_ns - network.offset) <= estimated.uncertainty_ns


def test_no_usable_round_trip_is_an_error() -> None:
    with pytest.raises(ValueError, match="no usable round trip"):
        estimate([ClockSample(t_send=10, t_worker=5, t_recv=9)])


# --- placement ---------------------------------------------------------------------------------


def test_producers_and_consumers_go_round_robin_to_their_side() -> None:
    placement = Placement(Distribution(workers=2, producers="workers"), ["w1", "w2"])
    producers = [placement.place(producer=True) for _ in range(3)]
    consumers = [placement.place(producer=False) for _ in range(2)]
    assert producers == ["w1", "w2", "w1"]
    assert consumers == [MASTER, MASTER]
    both = Placement(Distribution(workers=2, consumers="workers"), ["w1", "w2"])
    assert [both.place(producer=False) for _ in range(3)] == ["w1", "w2", "w1"]


def test_master_bind_addresses() -> None:
    assert parse_bind("10.0.0.5:6000") == ("10.0.0.5", 6000)
    assert parse_bind("0.0.0.0") == ("0.0.0.0", DEFAULT_MASTER_PORT)
    assert parse_bind(":6001") == ("127.0.0.1", 6001)
    with pytest.raises(UserError, match="HOST:PORT"):
        parse_bind("host:http")


# --- the suite's block and its refusals ------------------------------------------------------


def write_suite(path: Path, **extra: Any) -> Path:
    suite = {
        "name": "spread",
        "brokers": ["kafka"],
        "workloads": [{"name": "w", "params": {"rate": 10, "duration": 30}}],
    } | extra
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def test_a_distribution_block_is_read(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "s.yaml", distribution={"workers": 2})
    suite, _ = plan_suite(path, Settings(), tmp_path / "runs")
    assert suite.distribution == Distribution(workers=2, producers="workers", consumers="master")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"distribution": {"workers": 0}}, "distribution.workers"),
        ({"distribution": {"workers": 1, "producer": "workers"}}, "producer"),
        ({"distribution": {"workers": 1, "consumers": "elsewhere"}}, "distribution.consumers"),
        (
            {"distribution": {"workers": 1}, "scenarios": ["consumer-kill"]},
            r"use scenarios: \[baseline\]",
        ),
        (
            {
                "distribution": {"workers": 1},
                "workloads": [
                    {"name": "t", "kind": "tracker", "params": {"rate": 5, "duration": 9}}
                ],
            },
            "only the throughput workload",
        ),
    ],
)
def test_what_a_distribution_cannot_do_is_one_line(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    path = write_suite(tmp_path / "s.yaml", **extra)
    with pytest.raises(UserError, match=message) as refused:
        plan_suite(path, Settings(), tmp_path / "runs")
    assert "\n" not in str(refused.value)
    assert refused.value.exit_code == 2


def test_a_target_with_secrets_is_refused_with_remote_workers(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"targets": {"cloud": {"driver": "kafka", "settings": {
            "bootstrap_servers": "broker.example:9092", "sasl.password": "hunter2"}}}}
    )  # fmt: skip
    path = write_suite(tmp_path / "s.yaml", brokers=["cloud"], distribution={"workers": 1})
    with pytest.raises(UserError, match="needs secrets, which are never sent") as refused:
        plan_suite(path, settings, tmp_path / "runs")
    assert "hunter2" not in str(refused.value)
    local = write_suite(
        tmp_path / "l.yaml",
        brokers=["cloud"],
        distribution={"workers": 1, "producers": "master", "consumers": "master"},
    )
    plan_suite(local, settings, tmp_path / "runs")  # nothing leaves the master: allowed


# --- returned files and their clocks ---------------------------------------------------------


def test_returned_files_keep_their_table_first_and_gain_the_worker() -> None:
    assert str(returned_name("w1", "history/shards/sends-producer-0.arrow")) == (
        "history/shards/sends-w1.producer-0.arrow"
    )
    assert str(returned_name("w1", "logs/producer-0.log")) == "logs/w1.producer-0.log"
    for path in ("../../etc/passwd", "history/shards/../x.arrow", "plans/p.json"):
        with pytest.raises(ValueError, match="not a shard or a log"):
            returned_name("w1", path)


def write_shard(path: Path, schema: pa.Schema, rows: dict[str, list[Any]]) -> Path:
    batch = pa.RecordBatch.from_pydict(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_stream(sink, schema)
        writer.write_batch(batch)
        writer.close()
    return path


def column(path: Path, name: str) -> list[Any]:
    return [value for batch in read_shard(path) for value in batch.column(name).to_pylist()]


def test_shards_are_put_on_the_masters_clock(tmp_path: Path) -> None:
    sends = write_shard(tmp_path / "sends-w1.producer-0.arrow", SENDS, {
        "producer_id": [0], "key_id": [1], "seq": [0], "intended_ns": [5_000],
        "invoke_ns": [5_100], "complete_ns": [None], "outcome": [0], "partition": [0],
        "offset": [0],
    })  # fmt: skip
    receives_rows = {
        "consumer_id": [0, 0], "producer_id": [0, 1], "key_id": [1, 1], "seq": [0, 0],
        "intended_ns": [5_000, 9_000], "receive_ns": [7_000, 9_500], "partition": [0, 0],
        "offset": [0, 1], "message_id": [None, None], "delivery_attempt": [1, 1],
        "disposition": [0, 0], "scope": [None, None], "subscriber": [None, None],
    }  # fmt: skip
    on_master = write_shard(tmp_path / "receives-consumer-0.arrow", RECEIVES, receives_rows)
    on_w2 = write_shard(tmp_path / "receives-w2.consumer-1.arrow", RECEIVES, receives_rows)
    rewritten = correct_shards(
        {sends: "w1", on_master: MASTER, on_w2: "w2"},
        {"w1": 1_000, "w2": -300},
        {0: "w1", 1: MASTER},
    )
    assert rewritten == 3
    assert column(sends, "intended_ns") == [4_000]
    assert column(sends, "invoke_ns") == [4_100]
    assert column(sends, "complete_ns") == [None]
    # intended_ns by the producer's machine, receive_ns by the consumer's
    assert column(on_master, "intended_ns") == [4_000, 9_000]
    assert column(on_master, "receive_ns") == [7_000, 9_500]
    assert column(on_w2, "receive_ns") == [7_300, 9_800]
    assert read_shard(on_w2)[0].schema.metadata == RECEIVES.metadata


# --- PlacedChildren on a fake cluster ----------------------------------------------------------


class FakeWorker:
    def __init__(self, name: str) -> None:
        self.name, self.host = name, f"10.0.0.{name[-1]}"


class FakeCluster:
    """Stands in for ``Cluster`` (the master agent): records what is sent, hands out fixed
    clock offsets, and lets the test inject the workers' messages."""

    def __init__(self, workers: int, distribution: Distribution) -> None:
        self.workers = [FakeWorker(f"w{index + 1}") for index in range(workers)]
        self.distribution = distribution
        self.lost: dict[str, str] = {}
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.collected: list[str] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def clock(self, worker: str) -> ClockOffset:
        return ClockOffset(offset_ns=1_000 * int(worker[-1]), uncertainty_ns=400_000, samples=8)

    def send(self, worker: str, kind: str, data: dict[str, Any]) -> None:
        self.sent.append((worker, kind, data))
        if kind == m.STOP:  # the worker stops them and reports each exit
            for label in data["labels"]:
                self.say(worker, m.EXIT, {"run": data["run"], "label": label, "code": 0,
                                          "failure": ""})  # fmt: skip

    def collect(self, worker: str, run: str, run_dir: Path, timeout: float) -> list[str]:
        self.collected.append(worker)
        return []

    def say(self, worker: str, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener({"ev": "msg", "worker": worker, "type": kind, "data": data})

    def lose(self, worker: str) -> None:
        for listener in list(self.listeners):
            listener({"ev": "lost", "worker": worker, "why": "its heartbeats stopped"})


def shared(tmp_path: Path) -> RunShared:
    return RunShared(run_dir=str(tmp_path), run_id=7, target="kafka", settings=Settings(),
                     destination=DestinationPlan(name="t"))  # fmt: skip


def producer_plan(tmp_path: Path, index: int) -> ProducerPlan:
    return ProducerPlan(run=shared(tmp_path), process_index=index, first_producer=index,
                        producers=1, total_producers=2, steps=[StepPlan(rate=1, seconds=1)],
                        message_size=100, keys=1)  # fmt: skip


def test_placed_children_start_tell_and_stop_on_workers(tmp_path: Path) -> None:
    cluster = FakeCluster(2, Distribution(workers=2, producers="workers", consumers="workers"))
    seen: list[tuple[str, ProgressLine]] = []
    with PlacedChildren(tmp_path, cluster) as children:  # type: ignore[arg-type]
        children.listeners.append(lambda child, line: seen.append((child.label, line)))
        for index in range(2):
            children.start(f"producer-{index}", Role.PRODUCER, "harness.load.producer_process",
                           producer_plan(tmp_path, index), stdin=True)  # fmt: skip
        children.start("consumer-0", Role.CONSUMER, "harness.load.consumer_process",
                       ConsumerPlan(run=shared(tmp_path), consumer_id=0))  # fmt: skip
        starts = [(worker, data["label"]) for worker, kind, data in cluster.sent
                  if kind == m.START]  # fmt: skip
        assert starts == [("w1", "producer-0"), ("w2", "producer-1"), ("w1", "consumer-0")]
        children.tell("producer-1", "start 5000000")
        assert cluster.sent[-1][2]["line"] == "start 5002000"  # on w2's clock
        run = children.run
        cluster.say("w1", m.LINE, {"run": run, "label": "consumer-0",
                                   "line": '{"kind": "ready", "received": 3}'})  # fmt: skip
        assert children.children["consumer-0"].last.received == 3
        assert seen == [("consumer-0", ProgressLine(kind="ready", received=3))]
        cluster.say("w2", m.EXIT, {"run": run, "label": "producer-1", "code": 0, "failure": ""})
        assert children.children["producer-1"].exited
        assert children.children["producer-0"].machine == "w1"
    assert sorted(cluster.collected) == ["w1", "w2"]
    assert all(child.exited for child in children.children.values())
    record = json.loads((tmp_path / "distribution.json").read_text())
    assert [w["name"] for w in record["workers"]] == ["w1", "w2"]
    assert record["workers"][0]["producers"] == ["producer-0"]
    assert record["workers"][0]["consumers"] == ["consumer-0"]
    assert record["e2e_uncertainty_ns"] == 800_000  # w2's producer, w1's consumer
    assert record["clock_uncertain"] is False


def test_a_lost_worker_fails_the_run_naming_it(tmp_path: Path) -> None:
    cluster = FakeCluster(2, Distribution(workers=2))
    with PlacedChildren(tmp_path, cluster) as children:  # type: ignore[arg-type]
        children.start("producer-0", Role.PRODUCER, "harness.load.producer_process",
                       producer_plan(tmp_path, 0), stdin=True)  # fmt: skip
        children.check()
        cluster.lose("w1")
        assert children.children["producer-0"].exited
        assert "worker w1 (10.0.0.1) lost" in children.failure("producer-0")
        with pytest.raises(RunFailedError, match=r"worker w1 \(10.0.0.1\) lost mid-run: its "
                           r"heartbeats stopped \(it ran producer-0\)"):  # fmt: skip
            children.check()
    assert cluster.collected == []  # nothing to ask a lost worker for
    record = json.loads((tmp_path / "distribution.json").read_text())
    assert record["lost"] == {"w1": "its heartbeats stopped"}


def test_a_run_without_its_workers_fails(tmp_path: Path) -> None:
    cluster = FakeCluster(1, Distribution(workers=2))
    cluster.lost = {"w2": "it quit"}
    with pytest.raises(RunFailedError, match=r"1 of 2 workers left \(lost: w2 \(it quit\)\)"):
        PlacedChildren(tmp_path, cluster)  # type: ignore[arg-type]
