"""What each container of the stack runs: image, command, environment, ports, files, alias.

Pure data derived from ``Settings`` and the local services (harness/stack/services.py), so the
local stack, the testcontainers provider (harness/stack/containers.py) and compose/ share one
table of ports, listeners and proxies; tests/unit/test_container_specs.py compares these specs
with compose/docker-compose.yml and compose/toxiproxy.json. Nothing here needs Docker.

Every port is the same number inside the container and on 127.0.0.1, as in the compose file:
the brokers advertise host addresses (Kafka's ``PLAINTEXT`` and ``TOXI`` listeners, ElasticMQ's
queue URLs), so drivers and targets work unchanged, whichever provider started the stack.
"""

import hashlib
from dataclasses import dataclass, field

from harness import paths
from harness.models import LOOPBACK
from harness.settings import Settings
from harness.setup.artifacts import ELASTICMQ_VERSION, KAFKA_VERSION, TOXIPROXY_VERSION
from harness.stack.manager import proxy_specs
from harness.stack.services import ElasticMq, Kafka, Service, all_services
from harness.stack.toxiproxy import ProxySpec

ANY_ADDRESS = "0.0.0.0"
"""Inside a container a service binds every interface; the host publishes it on 127.0.0.1."""

MOTO_IMAGE_VERSION = "5.2.3"
IMAGES = {
    "toxiproxy": f"ghcr.io/shopify/toxiproxy:{TOXIPROXY_VERSION}",
    "kafka": f"apache/kafka:{KAFKA_VERSION}",
    "elasticmq": f"softwaremill/elasticmq:{ELASTICMQ_VERSION}",
    "moto": f"motoserver/moto:{MOTO_IMAGE_VERSION}",
    # Floating tag: Google deletes versioned tags of this image after a year.
    "pubsub": "gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators",
}
"""The image of each service: the same versions as the local stack's runtimes."""

KAFKA_CLUSTER_ID = "d64FHGwSQ7q04SBHk8yTIw"
"""Fixed, so a restarted container stays in the same cluster (the image formats storage)."""
KAFKA_LOG_DIRS = "/var/lib/kafka/data"
ELASTICMQ_CONFIG_PATH = "/opt/elasticmq.conf"
"""Where the softwaremill/elasticmq image reads its configuration."""

# Kafka properties whose value differs in the container: bind addresses, paths and the quorum
# (the image formats storage without --standalone, so the voters are given statically).
KAFKA_CONTAINER_SPECIFIC = (
    "listeners",
    "advertised.listeners",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
)


def stack_id() -> str:
    """A short id of this home, so two homes on one engine never share names."""
    return hashlib.sha256(str(paths.home()).encode()).hexdigest()[:10]


def container_name(service: str) -> str:
    return f"brokerbench-{stack_id()}-{service}"


def network_name() -> str:
    return f"brokerbench-{stack_id()}"


@dataclass(frozen=True)
class ContainerSpec:
    """One container: ``service`` is also its hostname and alias on the stack's network."""

    service: str
    image: str
    command: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    """Published ports by their ``Ports`` setting: the same number inside and on 127.0.0.1."""
    files: dict[str, str] = field(default_factory=dict)
    """Files copied into the container before it starts: path -> text."""

    @property
    def network_aliases(self) -> tuple[str, ...]:
        return (self.service,)


def kafka_environment_name(key: str) -> str:
    """The apache/kafka image's rule: '_' -> '__', '-' -> '___', '.' -> '_', then KAFKA_."""
    escaped = key.replace("_", "__").replace("-", "___").replace(".", "_")
    return "KAFKA_" + escaped.upper()


def _kafka(service: Kafka) -> ContainerSpec:
    p = service.settings.ports
    shared = {
        key: value
        for key, value in (line.split("=", 1) for line in service.properties().splitlines())
        if key not in KAFKA_CONTAINER_SPECIFIC
    }
    environment = {"CLUSTER_ID": KAFKA_CLUSTER_ID}
    environment |= {kafka_environment_name(key): value for key, value in shared.items()}
    environment |= {
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@{service.name}:{p.kafka_controller}",
        "KAFKA_LISTENERS": (
            f"PLAINTEXT://{ANY_ADDRESS}:{p.kafka},CONTROLLER://{ANY_ADDRESS}:{p.kafka_controller},"
            f"TOXI://{ANY_ADDRESS}:{p.kafka_proxied_listener}"
        ),
        # PLAINTEXT and TOXI advertise host addresses (TOXI: toxiproxy's published port, so a
        # client that bootstraps through the proxy stays on it); CONTROLLER the container name.
        "KAFKA_ADVERTISED_LISTENERS": (
            f"PLAINTEXT://{LOOPBACK}:{p.kafka},CONTROLLER://{service.name}:{p.kafka_controller},"
            f"TOXI://{LOOPBACK}:{p.kafka_proxy}"
        ),
        "KAFKA_LOG_DIRS": KAFKA_LOG_DIRS,
        # Not a property: the image passes it to the JVM (the local stack's heap).
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m",
    }
    return ContainerSpec(service.name, IMAGES[service.name], None, environment, service.ports())


def elasticmq_config(settings: Settings) -> str:
    """The local stack's ElasticMQ config, except that the server binds every interface."""
    port = settings.ports.elasticmq
    return (
        'include classpath("application.conf")\n'
        f'node-address {{ protocol = http, host = "{LOOPBACK}", port = {port}, '
        'context-path = "" }\n'
        f'rest-sqs {{ enabled = true, bind-port = {port}, bind-hostname = "{ANY_ADDRESS}", '
        "sqs-limits = strict }\n"
        "rest-stats { enabled = false }\n"
        "aws { region = us-east-1, accountId = 000000000000 }\n"
    )


def _spec(service: Service) -> ContainerSpec:
    settings, name = service.settings, service.name
    p = settings.ports
    java_heap = {"JAVA_TOOL_OPTIONS": "-Xmx384m"}
    if isinstance(service, Kafka):
        return _kafka(service)
    if isinstance(service, ElasticMq):
        files = {ELASTICMQ_CONFIG_PATH: elasticmq_config(settings)}
        return ContainerSpec(name, IMAGES[name], None, java_heap, service.ports(), files)
    commands = {
        # The image's entrypoint is `moto_server -H 0.0.0.0`; the command adds the port.
        "moto": ("-p", str(p.moto)),
        "pubsub": (
            "gcloud",
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port={ANY_ADDRESS}:{p.pubsub}",
            f"--project={settings.pubsub_project}",
        ),
        # The image's entrypoint is /toxiproxy; proxies are created through its API after start.
        "toxiproxy": ("-host", ANY_ADDRESS, "-port", str(p.toxiproxy)),
    }
    environment = java_heap if name == "pubsub" else {}
    return ContainerSpec(name, IMAGES[name], commands[name], environment, service.ports())


def container_specs(settings: Settings) -> list[ContainerSpec]:
    """One container per local service, in the local stack's start order."""
    return [_spec(service) for service in all_services(settings)]


def container_proxy_specs(settings: Settings) -> list[ProxySpec]:
    """The local proxies, with toxiproxy listening on every interface of its container and each
    upstream addressed by the broker's alias on the stack's network."""
    specs = []
    for local in proxy_specs(settings):
        listen_port = local.listen.rpartition(":")[2]
        upstream_port = local.upstream.rpartition(":")[2]
        specs.append(
            ProxySpec(
                local.name,
                f"{ANY_ADDRESS}:{listen_port}",
                f"{local.name}:{upstream_port}",
                local.enabled,
            )
        )
    return specs
