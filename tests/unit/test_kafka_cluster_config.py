"""The Kafka cluster's settings and how the stack, the targets and the proxies follow them (no
broker, no namespace: harness/stack/kafka_cluster.py's behaviour is in
tests/stack/test_kafka_cluster.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness.drivers.targets import _local_endpoint
from harness.errors import UserError
from harness.settings import Settings, load_settings
from harness.stack import cluster_network
from harness.stack.kafka_cluster import KafkaNode
from harness.stack.manager import Stack, proxy_specs

CLUSTER = Settings.model_validate({"stack": {"kafka": {"nodes": 3, "subnet": "10.214.7.0/24"}}})


def write_config(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "brokerbench.yaml"
    config.write_text(body, encoding="utf-8")
    return config


def test_one_node_stays_the_default() -> None:
    stack = Stack(Settings())
    assert "kafka" in [service.name for service in stack.startable]
    assert not any(isinstance(service, KafkaNode) for service in stack.startable)


def test_a_cluster_takes_the_single_nodes_place_and_kafka_names_every_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    names = [service.name for service in Stack(CLUSTER).startable]
    assert names[:4] == ["toxiproxy", "kafka-1", "kafka-2", "kafka-3"]
    assert "kafka" not in names
    assert [s.name for s in Stack(CLUSTER, ["kafka"]).startable] == [
        "kafka-1",
        "kafka-2",
        "kafka-3",
    ]
    assert Stack(CLUSTER).service("kafka").name == "kafka-1"


def test_nodes_have_their_own_addresses_and_the_target_bootstraps_at_all_of_them() -> None:
    cluster = CLUSTER.stack.kafka
    assert [cluster.node_address(n) for n in (1, 2, 3)] == [
        "10.214.7.11",
        "10.214.7.12",
        "10.214.7.13",
    ]
    assert cluster.bridge_address() == "10.214.7.1"
    endpoint = _local_endpoint("kafka", CLUSTER, via_proxy=False)
    assert endpoint == {"bootstrap_servers": "10.214.7.11:9092,10.214.7.12:9092,10.214.7.13:9092"}
    with pytest.raises(UserError, match="has no toxiproxy proxy: use proxy: none"):
        _local_endpoint("kafka", CLUSTER, via_proxy=True)
    assert "kafka" not in [spec.name for spec in proxy_specs(CLUSTER)]
    assert "kafka" in [spec.name for spec in proxy_specs(Settings())]


def test_node_properties_name_every_voter_and_replicate_internal_topics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROKERBENCH_HOME", str(tmp_path))
    properties = KafkaNode(CLUSTER, 2).properties()
    assert "node.id=2\n" in properties
    assert (
        "controller.quorum.voters=1@10.214.7.11:9093,2@10.214.7.12:9093,3@10.214.7.13:9093\n"
        in properties
    )
    assert "advertised.listeners=PLAINTEXT://10.214.7.12:9092\n" in properties
    assert "offsets.topic.replication.factor=3\n" in properties
    assert "transaction.state.log.min.isr=2\n" in properties


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("stack: {kafka: {nodes: 6}}", "less than or equal to 5"),
        ("stack: {kafka: {nodes: 0}}", "greater than or equal to 1"),
        ("stack: {kafka: {nodes: 3, subnet: 8.8.8.0/24}}", "not a private network"),
        ("stack: {kafka: {nodes: 3, subnet: 10.1.1.0/29}}", "too small"),
        ("stack: {kafka: {nodes: 3, node: 2}}", "node"),
    ],
)
def test_bad_cluster_settings_name_the_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str, problem: str
) -> None:
    monkeypatch.setenv("BROKERBENCH_CONFIG", str(write_config(tmp_path, body + "\n")))
    with pytest.raises(UserError, match=problem) as raised:
        load_settings()
    assert "brokerbench.yaml:1" in str(raised.value)


def test_names_are_short_enough_for_interfaces_and_differ_between_homes(tmp_path: Path) -> None:
    one, other = cluster_network.prefix_of(tmp_path / "a"), cluster_network.prefix_of(tmp_path)
    assert one != other
    assert len(f"{one}br") <= 15
    assert len(f"{one}v5") <= 15


def test_up_without_root_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The real command line, in a process that believes it is not root."""
    config = write_config(tmp_path, "stack: {kafka: {nodes: 3, subnet: 10.214.7.0/24}}\n")
    script = (
        "import os, sys; os.geteuid = lambda: 1000; "
        "sys.argv = ['brokerbench', 'up', '--only', 'kafka', '--provider', 'local']; "
        "from harness.cli import main; main()"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "BROKERBENCH_HOME": str(tmp_path / "home"),
            "BROKERBENCH_CONFIG": str(config),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert "needs root" in lines[0]
    assert "stack.kafka.nodes: 1" in lines[0]
