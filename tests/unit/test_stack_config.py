"""The proxy layout that keeps Kafka clients on toxiproxy (see docs/architecture.md)."""

from harness.settings import Ports, Settings
from harness.stack.manager import proxy_specs
from harness.stack.services import Kafka


def properties(settings: Settings) -> dict[str, str]:
    lines = Kafka(settings).properties().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_kafka_advertises_the_proxy_port_on_its_proxied_listener() -> None:
    ports = Ports(kafka_proxy=31000, kafka_proxied_listener=31001)
    kafka = properties(Settings(ports=ports))
    assert "TOXI://127.0.0.1:31000" in kafka["advertised.listeners"].split(",")
    assert "TOXI://127.0.0.1:31001" in kafka["listeners"].split(",")
    assert kafka["inter.broker.listener.name"] == "PLAINTEXT"
    assert "CONTROLLER" not in kafka["advertised.listeners"]


def test_the_kafka_proxy_forwards_to_the_proxied_listener_only() -> None:
    settings = Settings()
    specs = {spec.name: spec for spec in proxy_specs(settings)}
    assert specs["kafka"].listen == f"127.0.0.1:{settings.ports.kafka_proxy}"
    assert specs["kafka"].upstream == f"127.0.0.1:{settings.ports.kafka_proxied_listener}"
    assert set(specs) == {"kafka", "elasticmq", "moto", "pubsub"}
    assert all(spec.listen.startswith("127.0.0.1:") for spec in specs.values())


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    from harness.stack.services import _kafka_cluster_id

    ids = [_kafka_cluster_id() for _ in range(2000)]
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert len(set(ids)) == len(ids)
    assert all(len(cluster_id) == 22 for cluster_id in ids)
