"""Node faults on the local Kafka cluster (``stack: {kafka: {nodes: 3}}``): cut nodes off from
each other, or kill, pause or restart one node, the node chosen when the fault starts.

``node`` picks it: ``leader`` (the broker leading the most partitions of the cluster's own
topics: the run's topic, in a run with one topic), ``follower`` (the lowest-numbered live node
that is not that leader), ``controller`` (the active controller: the leader of the metadata
quorum, read from the nodes' ``quorum-state`` files, newest epoch first) or a node number.

``isolate-node`` adds an nftables table inside the node's namespace that drops its traffic to
and from the other nodes (replication, the controller quorum), so clients in the root
namespace still reach it: the leader keeps taking writes it cannot replicate. ``kill-node``
SIGKILLs the node's JVM and starts it again at the fault's end. ``partition-nodes`` cuts along
a shape (``PartitionParams``): a minority from the majority, a bridge node that alone sees both
halves, or one direction only. ``pause-node`` SIGSTOPs the node (SIGCONT at the end),
``restart-node`` stops it gracefully and starts it again. Every one leaves state entries, so
``brokerbench chaos heal`` undoes them after the harness itself was killed (a table is deleted
from every node's namespace; a paused node continues; a stopped one is started again).
Flapping is a scenario's ``repeat`` / ``every`` of a cut. Other brokers are single processes:
these faults are refused for them, with the reason, before the run.
"""

import json
import os
import signal
from typing import Any, Literal

from chaos.faults.base import Fault, require_local_broker
from chaos.node_cut import cut_rules, fault_table, nft_in, remove_fault_table
from chaos.service_control import continue_service, pause_group, start_again
from chaos.state import Entry
from harness.errors import UserError
from harness.models import FrozenModel
from harness.stack import cluster_network, processes
from harness.stack.kafka_cluster import KafkaNode, configured_nodes

NodeChoice = Literal["leader", "follower", "controller"] | int


class NodeParams(FrozenModel):
    node: NodeChoice = "leader"


def active_controller(nodes: list[KafkaNode]) -> int:
    """The metadata quorum's leader, from the newest epoch any node has written."""
    newest: tuple[int, int] = (-1, -1)
    for node in nodes:
        path = node.directory / "data" / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        epoch, leader = int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1))
        if leader > 0 and epoch > newest[0]:
            newest = (epoch, leader)
    if newest[1] < 0:
        raise RuntimeError("no node knows the metadata quorum's leader")
    return newest[1]


def partition_leaders(nodes: list[KafkaNode]) -> tuple[dict[int, int], set[int]]:
    """Per node id, how many partitions of the cluster's own topics it leads; and the live
    brokers."""
    from confluent_kafka.admin import AdminClient

    servers = ",".join(f"{node.address}:{node.settings.ports.kafka}" for node in nodes)
    metadata = AdminClient({"bootstrap.servers": servers, "log_level": 0}).list_topics(timeout=10)
    led: dict[int, int] = {}
    for name, topic in metadata.topics.items():
        if name.startswith("__"):
            continue
        for partition in topic.partitions.values():
            if partition.leader >= 0:
                led[partition.leader] = led.get(partition.leader, 0) + 1
    return led, set(metadata.brokers)


class NodeFault(Fault):
    """A fault on one node of the local Kafka cluster, chosen on first use (at fault time)."""

    params_model = NodeParams
    cluster_only = True
    _node: KafkaNode | None = None

    @property
    def nodes(self) -> list[KafkaNode]:
        return configured_nodes(self.context.settings)

    def check(self) -> None:
        require_local_broker(self)
        if self.target != "kafka":
            raise UserError(
                f"fault {self.action!r} acts on a node of a Kafka cluster; {self.target!r} is a "
                "single process: use pause, crash or restart"
            )
        cluster = self.context.settings.stack.kafka
        if not cluster.is_cluster:
            raise UserError(
                f"fault {self.action!r} needs a Kafka cluster: set stack.kafka.nodes: 3 in "
                "brokerbench.yaml"
            )
        choice = self._params().node
        if isinstance(choice, int) and not 1 <= choice <= cluster.nodes:
            raise UserError(
                f"fault {self.action!r}: node {choice} is not one of 1..{cluster.nodes}"
            )

    def _params(self) -> NodeParams:
        assert isinstance(self.params, NodeParams)
        return self.params

    def node(self) -> KafkaNode:
        """The node this fault acts on, chosen once."""
        if self._node is None:
            self._node = self._choose()
        return self._node

    def _choose(self) -> KafkaNode:
        nodes = self.nodes
        by_id = {node.node: node for node in nodes}
        choice = self._params().node
        if isinstance(choice, int):
            return by_id[choice]
        if choice == "controller":
            return by_id[active_controller(nodes)]
        led, live = partition_leaders(nodes)
        if not led:
            raise RuntimeError("no topic of the cluster has a leader to choose")
        leader = max(sorted(led), key=lambda node_id: led[node_id])
        if choice == "leader":
            return by_id[leader]
        followers = sorted(node_id for node_id in live if node_id != leader)
        if not followers:
            raise RuntimeError("no live follower to choose")
        return by_id[followers[0]]

    def detail(self) -> dict[str, Any]:
        detail = dict(super().detail())
        if self._node is not None:
            detail["node"] = self._node.node
        return detail


Drops = tuple[list[str], list[str]]
"""(addresses whose packets a node drops on input, addresses it drops on output)."""


class CutFault(NodeFault):
    """A fault made of nftables tables in some nodes' namespaces (one table name, so a heal
    or ``chaos heal`` deletes it from every namespace at once)."""

    def check(self) -> None:
        super().check()
        hint = cluster_network.nft_missing_hint()
        if hint is not None:
            raise UserError(hint)

    @property
    def table(self) -> str:
        return fault_table(self.fault_id)

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "node-cut", "table": self.table}]

    def drops(self) -> dict[int, Drops]:
        """Per node id, what its namespace drops."""
        raise NotImplementedError

    def apply(self) -> None:
        by_id = {node.node: node for node in self.nodes}
        for node_id, (drop_from, drop_to) in sorted(self.drops().items()):
            if drop_from or drop_to:
                rules = cut_rules(self.table, drop_from, drop_to)
                nft_in(by_id[node_id].namespace, "-f", "-", rules=rules)

    def heal(self) -> None:
        remove_fault_table(self.table)


class IsolateNode(CutFault):
    """Cut the node off from the other nodes (both ways); clients still reach it."""

    action = "isolate-node"

    def drops(self) -> dict[int, Drops]:
        node = self.node()
        peers = [other.address for other in self.nodes if other.node != node.node]
        return {node.node: (peers, peers)}


Shape = Literal["split", "bridge", "one-way-in", "one-way-out"]


class PartitionParams(NodeParams):
    shape: Shape = "split"
    """``split``: a minority (the chosen node and the lowest-numbered others, up to fewer than
    half) cut off from the majority; ``bridge``: the other nodes in two halves that cannot
    reach each other, the chosen node reaching both; ``one-way-in``: the chosen node receives
    nothing from the others but still sends; ``one-way-out``: it sends nothing to them but
    still receives."""


class PartitionNodes(CutFault):
    """Partition the cluster's nodes into sides (``PartitionParams.shape``); clients in the
    root namespace still reach every node."""

    action = "partition-nodes"
    params_model = PartitionParams

    def sides(self) -> tuple[list[int], list[int]]:
        """The two sides that cannot reach each other (for ``bridge``: without the bridge; for
        the one-way shapes: the chosen node, the others)."""
        chosen = self.node().node
        others = sorted(node.node for node in self.nodes if node.node != chosen)
        shape = self._shape()
        if shape == "split":
            minority = [chosen, *others[: max(1, (len(self.nodes) - 1) // 2) - 1]]
            return sorted(minority), [n for n in others if n not in minority]
        if shape == "bridge":
            half = (len(others) + 1) // 2
            return others[:half], others[half:]
        return [chosen], others

    def _shape(self) -> Shape:
        assert isinstance(self.params, PartitionParams)
        return self.params.shape

    def drops(self) -> dict[int, Drops]:
        address = {node.node: node.address for node in self.nodes}
        one, other = self.sides()
        shape = self._shape()
        if shape == "one-way-in":
            return {one[0]: ([address[n] for n in other], [])}
        if shape == "one-way-out":
            return {one[0]: ([], [address[n] for n in other])}
        drops: dict[int, Drops] = {}
        for side, across in ((one, other), (other, one)):
            for node_id in side:
                peers = [address[n] for n in across]
                drops[node_id] = (peers, peers)
        return drops

    def detail(self) -> dict[str, Any]:
        detail = super().detail()
        if self._node is not None:
            detail["sides"] = [list(side) for side in self.sides()]
        return detail


class KillNode(NodeFault):
    """SIGKILL the node's JVM; start it again at the fault's end."""

    action = "kill-node"
    restarts_broker = True

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "stopped", "service": self.node().name}]

    def apply(self) -> None:
        group = _running_group(self.node())
        os.killpg(group, signal.SIGCONT)  # a paused group would not die before it continues
        os.killpg(group, signal.SIGKILL)

    def heal(self) -> None:
        start_again(self.context.settings, self.node().name)


class PauseNode(NodeFault):
    """SIGSTOP the node's JVM (connections stay open, nothing answers); SIGCONT at the end."""

    action = "pause-node"

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "paused", "service": self.node().name}]

    def apply(self) -> None:
        pause_group(_running_group(self.node()))

    def heal(self) -> None:
        continue_service(self.context.settings, self.node().name)


class RestartNode(NodeFault):
    """Stop the node gracefully (SIGTERM: a controlled shutdown moves its leaderships away);
    start it again at the end."""

    action = "restart-node"
    restarts_broker = True

    def entries(self) -> list[Entry]:
        return [{"id": self.fault_id, "kind": "stopped", "service": self.node().name}]

    def apply(self) -> None:
        _running_group(self.node())
        processes.stop(self.node().directory)

    def heal(self) -> None:
        start_again(self.context.settings, self.node().name)


def _running_group(node: KafkaNode) -> int:
    record = processes.recorded(node.directory)
    if record is None or not processes.is_alive(record):
        raise RuntimeError(f"{node.name} is not running")
    return record.pid
