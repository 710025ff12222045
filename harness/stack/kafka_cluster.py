"""A KRaft cluster of Kafka nodes for the local stack (``stack: {kafka: {nodes: 3}}``).

Each node is a combined broker+controller JVM in its own network namespace
(harness/stack/cluster_network.py), listening on its own address of the cluster's subnet:
clients in the root namespace connect to every node directly, and replication and the
controller quorum cross the bridge, where a rule in one namespace cuts a node off. The nodes
are services ``kafka-1`` .. ``kafka-N`` (state ``state/kafka-N``); ``kafka`` names them all
in ``--only``. The cluster has no toxiproxy proxy: faults between clients and brokers stay
the single node's.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness import paths
from harness.atomic import write_text_atomically
from harness.errors import UserError
from harness.settings import KafkaStack, Settings
from harness.setup import artifacts
from harness.stack import cluster_network
from harness.stack.services import (
    _KAFKA_LOG4J,
    PROBE_TIMEOUT,
    Service,
    _kafka_cluster_id,
    kafka_java,
)

NODE_NAME = re.compile(r"kafka-(\d+)")
FORMAT_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
"""The storage tool runs for two seconds: the quick compiler and collector halve that."""


def node_name(node: int) -> str:
    return f"kafka-{node}"


def layout_file() -> Path:
    """The cluster's id and shape, written when its storage is first formatted."""
    return paths.state_dir() / "kafka-cluster.json"


def _layout(cluster: KafkaStack) -> dict[str, str | int]:
    return {"nodes": cluster.nodes, "subnet": str(cluster.subnet)}


def cluster_id(cluster: KafkaStack, report_reset: bool = True) -> str:
    """The cluster id every node is formatted with. A cluster formatted with another shape
    (node count, subnet) is wiped: its nodes' storage would name other voters."""
    path = layout_file()
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("layout") == _layout(cluster):
        return str(recorded["cluster_id"])
    for directory in paths.state_dir().glob("kafka-*"):
        if NODE_NAME.fullmatch(directory.name):
            shutil.rmtree(directory / "data", ignore_errors=True)
    fresh = _kafka_cluster_id()
    document = {"cluster_id": fresh, "layout": _layout(cluster)}
    write_text_atomically(path, json.dumps(document))
    return fresh


class KafkaNode(Service):
    """Node ``node`` (1-based) of the local Kafka cluster."""

    port_fields = ()
    startup_timeout = 120.0
    stop_grace_seconds = 8.0
    """Nodes that lose their quorum while stopping (the last ones of a ``down``) were seen to
    hang in the metadata quorum's shutdown, after their broker had shut down cleanly (logs
    flushed), until the SIGKILL: 8 s rather than 15 spares ``down`` the difference."""

    def __init__(self, settings: Settings, node: int) -> None:
        super().__init__(settings)
        self.node = node
        self.name = node_name(node)

    @property
    def cluster(self) -> KafkaStack:
        return self.settings.stack.kafka

    @property
    def address(self) -> str:
        return self.cluster.node_address(self.node)

    @property
    def namespace(self) -> str:
        return cluster_network.namespace(self.node)

    def ports(self) -> dict[str, int]:
        p = self.settings.ports
        return {"kafka": p.kafka, "kafka_controller": p.kafka_controller}

    def loopback_ports(self) -> dict[str, int]:
        return {}  # it binds its own address in its own namespace: nothing to clash with

    def properties(self) -> str:
        p, cluster = self.settings.ports, self.cluster
        voters = ",".join(
            f"{n}@{cluster.node_address(n)}:{p.kafka_controller}"
            for n in range(1, cluster.nodes + 1)
        )
        replicas = str(min(3, cluster.nodes))
        min_isr = str(min(2, cluster.nodes))
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"PLAINTEXT://{self.address}:{p.kafka},CONTROLLER://{self.address}:"
                f"{p.kafka_controller}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.address}:{p.kafka}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # Small nodes: three share two cores and a few hundred MB of heap each.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def prepare(self) -> None:
        """The node's namespace and configs; the first node to be prepared formats the
        storage of every node not yet formatted, all at once (the storage tool is a JVM that
        runs for seconds: one after another, they held up the cluster's start)."""
        cluster_network.ensure_node(self.cluster, self.node)
        format_storage(configured_nodes(self.settings) or [self])

    def write_configs(self) -> None:
        (self.directory / "server.properties").write_text(self.properties(), encoding="utf-8")
        (self.directory / "log4j2.properties").write_text(_KAFKA_LOG4J, encoding="utf-8")

    def is_formatted(self) -> bool:
        return (self.directory / "data" / "meta.properties").exists()

    def format_command(self, identity: str) -> list[str]:
        lib = artifacts.require(artifacts.kafka())
        config = str(self.directory / "server.properties")
        return [
            *kafka_java(self.directory, lib, *FORMAT_JVM_OPTIONS),
            *("kafka.tools.StorageTool", "format", "-t", identity, "-c", config),
        ]

    def command(self) -> list[str]:
        cluster_network.require_namespaces()
        lib = artifacts.require(artifacts.kafka())
        heap = f"{self.cluster.heap_mb}m"
        return [
            *cluster_network.exec_prefix(self.node),
            *kafka_java(self.directory, lib, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC"),
            "kafka.Kafka",
            str(self.directory / "server.properties"),
        ]

    def probe(self) -> None:
        """Ready when the node answers a metadata request and is itself among the cluster's
        live (registered, unfenced) brokers."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": f"{self.address}:{self.settings.ports.kafka}", "log_level": 0}
        )
        metadata = admin.list_topics(timeout=PROBE_TIMEOUT)
        if self.node not in metadata.brokers:
            raise RuntimeError(f"node {self.node} is not among the cluster's live brokers yet")

    def version(self) -> str:
        return artifacts.KAFKA_VERSION

    def release(self) -> None:
        """Remove the node's namespace once its process is stopped; the bridge goes with the
        last node."""
        cluster_network.remove_node(self.node)
        if not any(ns.startswith(f"{cluster_network.prefix()}kafka") for ns in _namespaces()):
            cluster_network.remove_all()


def format_storage(nodes: list[KafkaNode]) -> None:
    """Write every node's configs, and format the storage of those not yet formatted, in
    parallel; UserError naming the first node that failed."""
    if not nodes:
        return
    identity = cluster_id(nodes[0].cluster)
    for node in nodes:
        node.write_configs()
    running: list[tuple[KafkaNode, subprocess.Popen[str]]] = []
    failures = []
    try:
        for node in nodes:
            if not node.is_formatted():
                shutil.rmtree(node.directory / "data", ignore_errors=True)  # a half-made one
                running.append((node, subprocess.Popen(node.format_command(identity), **_CAPTURE)))
        for node, process in running:
            output, _ = process.communicate()
            if process.returncode != 0:
                last = output.strip().splitlines()[-1:]
                failures.append(f"formatting {node.name}'s storage failed: {' '.join(last)}")
    finally:  # interrupted (Ctrl-C): no storage tool outlives the start
        for _, process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    if failures:
        raise UserError(failures[0])


_CAPTURE: dict[str, Any] = {
    "stdout": subprocess.PIPE,
    "stderr": subprocess.STDOUT,
    "stdin": subprocess.DEVNULL,
    "text": True,
}


def _namespaces() -> list[str]:
    return cluster_network.namespaces() if shutil.which("ip") else []


def configured_nodes(settings: Settings) -> list[KafkaNode]:
    """The nodes the settings ask for (none when Kafka is one node)."""
    cluster = settings.stack.kafka
    if not cluster.is_cluster:
        return []
    return [KafkaNode(settings, node) for node in range(1, cluster.nodes + 1)]


def nodes_in_state(settings: Settings) -> list[KafkaNode]:
    """Every node with a folder in this home's state (also those of an earlier, larger
    cluster), so that ``down`` finds them whatever the settings say now."""
    found = set()
    if paths.state_dir().is_dir():
        for directory in paths.state_dir().iterdir():
            match = NODE_NAME.fullmatch(directory.name)
            if match and directory.is_dir():
                found.add(int(match.group(1)))
    return [KafkaNode(settings, node) for node in sorted(found)]
