"""Node faults (chaos/faults/node.py) without a cluster: what they refuse, at plan time and in
their own ``check``, and the nftables table an isolation writes. Their effect on a real cluster
is in tests/stack/test_kafka_cluster.py."""

from pathlib import Path

import pytest

from chaos.context import NemesisContext
from chaos.faults.node import (
    IsolateNode,
    KillNode,
    NodeParams,
    PartitionNodes,
    PartitionParams,
    active_controller,
)
from chaos.node_cut import cut_rules, fault_table
from harness.errors import UserError
from harness.run.suite_runner import plan_suite
from harness.settings import Settings
from harness.stack.kafka_cluster import KafkaNode

CLUSTER = Settings.model_validate({"stack": {"kafka": {"nodes": 3, "subnet": "10.214.7.0/24"}}})
WORKLOAD = """
workloads:
  - name: w
    params: {rate: 100, duration: 8, consumers: 2}
"""


def fault(cls: type[IsolateNode | KillNode], target: str, settings: Settings, node: object) -> None:
    params = NodeParams.model_validate({"node": node})
    cls("f1", target, params, NemesisContext(target=target, settings=settings)).check()


@pytest.mark.parametrize("cls", [IsolateNode, KillNode])
def test_node_faults_are_refused_without_a_cluster_with_the_reason(
    cls: type[IsolateNode | KillNode],
) -> None:
    with pytest.raises(UserError, match=r"needs a Kafka cluster: set stack.kafka.nodes: 3"):
        fault(cls, "kafka", Settings(), "leader")
    with pytest.raises(UserError, match=r"'elasticmq' is a single process"):
        fault(cls, "elasticmq", CLUSTER, "leader")
    with pytest.raises(UserError, match=r"node 4 is not one of 1..3"):
        fault(cls, "kafka", CLUSTER, 4)


def write_suite(tmp_path: Path, brokers: str) -> Path:
    (tmp_path / "cut.yaml").write_text(
        "name: cut\nfaults:\n  - {action: isolate-node, at: 1, duration: 2, params: {node: 3}}\n",
        encoding="utf-8",
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\nbrokers: [{brokers}]\nscenarios: [cut.yaml]\n" + WORKLOAD)
    return suite


def test_plan_refuses_node_faults_for_a_single_node_or_another_broker(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"suite.yaml:3: .*node faults \(isolate-node\).*nodes: 3"):
        plan_suite(write_suite(tmp_path, "kafka"), Settings(), tmp_path)
    with pytest.raises(UserError, match=r"'moto' is not the local Kafka cluster"):
        plan_suite(write_suite(tmp_path, "kafka, moto"), CLUSTER, tmp_path)
    _, runs = plan_suite(write_suite(tmp_path, "kafka"), CLUSTER, tmp_path)
    assert [run.scenario.name for run in runs if run.scenario] == ["cut"]


def test_the_cut_drops_both_ways_to_the_peers_only() -> None:
    table = fault_table("cut-0/1")
    assert table == "bb_fault_cut_0_1"
    rules = cut_rules(table, ["10.214.7.11", "10.214.7.12"])
    assert "ip saddr { 10.214.7.11, 10.214.7.12 } drop" in rules
    assert "ip daddr { 10.214.7.11, 10.214.7.12 } drop" in rules
    assert "10.214.7.13" not in rules


def test_the_active_controller_is_the_newest_epochs_leader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    nodes = [KafkaNode(CLUSTER, n) for n in (1, 2, 3)]
    # Node 3 was cut off while it led epoch 7; nodes 1 and 2 elected node 2 at epoch 8.
    for node, (leader, epoch) in zip(nodes, [(2, 8), (2, 8), (3, 7)], strict=True):
        folder = node.directory / "data" / "__cluster_metadata-0"
        folder.mkdir(parents=True)
        text = f'{{"leaderId":{leader},"leaderEpoch":{epoch},"votedId":-1}}'
        (folder / "quorum-state").write_text(text, encoding="utf-8")
    assert active_controller(nodes) == 2


FIVE = Settings.model_validate({"stack": {"kafka": {"nodes": 5, "subnet": "10.214.7.0/24"}}})


def partition(settings: Settings, node: int, shape: str) -> PartitionNodes:
    params = PartitionParams.model_validate({"node": node, "shape": shape})
    return PartitionNodes("p", "broker", params, NemesisContext(target="kafka", settings=settings))


def address(node: int) -> str:
    return f"10.214.7.{10 + node}"


@pytest.mark.parametrize(
    ("settings", "node", "shape", "sides"),
    [
        (CLUSTER, 2, "split", ([2], [1, 3])),
        (FIVE, 4, "split", ([1, 4], [2, 3, 5])),  # a minority of two: the node and node 1
        (CLUSTER, 2, "bridge", ([1], [3])),  # node 2 alone reaches both
        (FIVE, 3, "bridge", ([1, 2], [4, 5])),
        (CLUSTER, 3, "one-way-in", ([3], [1, 2])),
    ],
)
def test_partition_shapes_make_the_sides(
    settings: Settings, node: int, shape: str, sides: tuple[list[int], list[int]]
) -> None:
    assert partition(settings, node, shape).sides() == sides


def test_a_split_or_bridge_cuts_both_ways_between_the_sides_only() -> None:
    drops = partition(CLUSTER, 2, "bridge").drops()
    assert drops == {1: ([address(3)], [address(3)]), 3: ([address(1)], [address(1)])}
    split = partition(FIVE, 4, "split").drops()
    assert split[4] == ([address(2), address(3), address(5)],) * 2
    assert split[2] == ([address(1), address(4)],) * 2


def test_one_way_cuts_drop_one_direction_in_the_chosen_node_only() -> None:
    peers = [address(1), address(2)]
    assert partition(CLUSTER, 3, "one-way-in").drops() == {3: (peers, [])}
    assert partition(CLUSTER, 3, "one-way-out").drops() == {3: ([], peers)}
    rules = cut_rules("t", peers, [])
    assert "ip saddr { 10.214.7.11, 10.214.7.12 } drop" in rules
    assert "daddr" not in rules
