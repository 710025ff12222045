"""The services of the local stack: how each is configured, started and probed for readiness.

Readiness is always checked with the broker's own protocol (a Kafka metadata request, an SQS
ListQueues call, a Pub/Sub ListTopics call, toxiproxy's /version), never by an open port alone.
"""

import base64
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path

from harness import __version__, paths
from harness.errors import UserError
from harness.models import LOOPBACK
from harness.settings import Settings
from harness.setup import artifacts
from harness.setup.prerequisites import JAVA
from harness.stack import schema_registry
from harness.stack.toxiproxy import Client as ToxiproxyClient

PROBE_TIMEOUT = 2.0


class Service(ABC):
    """One locally started process."""

    name: str
    port_fields: tuple[str, ...]
    """The ``Ports`` settings this service binds."""
    startup_timeout: float = 30.0
    opt_in: bool = False
    """Started only when named (``up --only NAME``), never by a plain ``up``."""
    test_double: bool = False
    """brokerbench's own stand-in for a broker, for its tests: never a real broker."""
    stop_grace_seconds: float = 15.0
    """How long ``down`` waits after SIGTERM before it SIGKILLs the process group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def directory(self) -> Path:
        return paths.service_dir(self.name)

    def ports(self) -> dict[str, int]:
        """Every port the service binds, by the name of its setting."""
        return {field: getattr(self.settings.ports, field) for field in self.port_fields}

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that starts the service; raises UserError if something is missing."""

    def loopback_ports(self) -> dict[str, int]:
        """The ports it binds on 127.0.0.1 in the root namespace (checked free before a start)."""
        return self.ports()

    def prepare(self) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Write configs and initialise storage before the first start."""

    def release(self) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Remove what ``prepare`` made outside the state folder, once the process stopped."""

    @abstractmethod
    def probe(self) -> None:
        """Raise if the service does not answer its protocol."""

    @abstractmethod
    def version(self) -> str: ...


def kafka_java(directory: Path, lib: Path, *jvm_options: str) -> list[str]:
    """``java [options]`` with Kafka's jars and the log4j2 config in ``directory`` (a Kafka
    service's or a cluster node's), before the main class."""
    return [
        _java(),
        *jvm_options,
        f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
        "-cp",
        f"{lib}/*",
    ]


def _java() -> str:
    return JAVA.require()


class Kafka(Service):
    """Single-node Kafka in KRaft mode (broker and controller in one process).

    Three listeners: PLAINTEXT for direct clients, CONTROLLER for the quorum and TOXI, whose
    advertised address is toxiproxy's listen port, so a client that bootstraps through the
    proxy is told to keep using the proxy for every later connection.
    """

    name = "kafka"
    port_fields = ("kafka", "kafka_controller", "kafka_proxied_listener")
    startup_timeout = 90.0

    def properties(self) -> str:
        p = self.settings.ports
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{p.kafka_controller}",
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"PLAINTEXT://{LOOPBACK}:{p.kafka},CONTROLLER://{LOOPBACK}:{p.kafka_controller},"
                f"TOXI://{LOOPBACK}:{p.kafka_proxied_listener}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://{LOOPBACK}:{p.kafka},TOXI://{LOOPBACK}:{p.kafka_proxy}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,TOXI:PLAINTEXT"
            ),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.directory / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def prepare(self) -> None:
        lib = artifacts.require(artifacts.kafka())
        (self.directory / "server.properties").write_text(self.properties(), encoding="utf-8")
        (self.directory / "log4j2.properties").write_text(_KAFKA_LOG4J, encoding="utf-8")
        if (self.directory / "data" / "meta.properties").exists():
            return
        cluster_id = _kafka_cluster_id()
        completed = subprocess.run(
            [
                *self._java(lib),
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.directory / "server.properties"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            last = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
            raise UserError(f"formatting Kafka storage failed: {' '.join(last)}")

    def _java(self, lib: Path, *jvm_options: str) -> list[str]:
        return kafka_java(self.directory, lib, *jvm_options)

    def command(self) -> list[str]:
        lib = artifacts.require(artifacts.kafka())
        return [
            *self._java(lib, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC"),
            "kafka.Kafka",
            str(self.directory / "server.properties"),
        ]

    def probe(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": f"{LOOPBACK}:{self.settings.ports.kafka}", "log_level": 0}
        )
        admin.list_topics(timeout=PROBE_TIMEOUT)

    def version(self) -> str:
        return artifacts.KAFKA_VERSION


_KAFKA_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _probe_sqs(port: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sqs",
        endpoint_url=f"http://{LOOPBACK}:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(
            connect_timeout=PROBE_TIMEOUT, read_timeout=PROBE_TIMEOUT, retries={"max_attempts": 0}
        ),
    )
    client.list_queues()


class ElasticMq(Service):
    name = "elasticmq"
    port_fields = ("elasticmq",)

    def prepare(self) -> None:
        port = self.settings.ports.elasticmq
        (self.directory / "elasticmq.conf").write_text(
            'include classpath("application.conf")\n'
            f'node-address {{ protocol = http, host = "{LOOPBACK}", port = {port}, '
            'context-path = "" }\n'
            f'rest-sqs {{ enabled = true, bind-port = {port}, bind-hostname = "{LOOPBACK}", '
            "sqs-limits = strict }\n"
            "rest-stats { enabled = false }\n"
            "aws { region = us-east-1, accountId = 000000000000 }\n",
            encoding="utf-8",
        )

    def command(self) -> list[str]:
        lib = artifacts.require(artifacts.elasticmq())
        return [
            _java(),
            "-Xmx384m",
            f"-Dconfig.file={self.directory / 'elasticmq.conf'}",
            "-cp",
            f"{lib}/*",
            "org.elasticmq.server.Main",
        ]

    def probe(self) -> None:
        _probe_sqs(self.settings.ports.elasticmq)

    def version(self) -> str:
        return artifacts.ELASTICMQ_VERSION


class Moto(Service):
    """moto's server: a second, pure-Python SQS implementation (slow at depth; not for speed)."""

    name = "moto"
    port_fields = ("moto",)

    def command(self) -> list[str]:
        try:
            metadata.version("flask")
            metadata.version("moto")
        except metadata.PackageNotFoundError as exc:
            raise UserError(
                "moto's server is not installed: pip install 'brokerbench[sqs]'"
            ) from exc
        port = str(self.settings.ports.moto)
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", port]

    def probe(self) -> None:
        _probe_sqs(self.settings.ports.moto)

    def version(self) -> str:
        return metadata.version("moto")


class PubSubEmulator(Service):
    name = "pubsub"
    port_fields = ("pubsub",)

    def command(self) -> list[str]:
        jar = artifacts.require(artifacts.pubsub_emulator())
        port = self.settings.ports.pubsub
        return [_java(), "-Xmx384m", "-jar", str(jar), f"--host={LOOPBACK}", f"--port={port}"]

    def probe(self) -> None:
        from harness.drivers.pubsub import emulator_publisher

        publisher = emulator_publisher(f"{LOOPBACK}:{self.settings.ports.pubsub}")
        try:
            list(
                publisher.list_topics(
                    project=f"projects/{self.settings.pubsub_project}", timeout=PROBE_TIMEOUT
                )
            )
        finally:
            publisher.transport.close()

    def version(self) -> str:
        return artifacts.pubsub_emulator().version


class Toxiproxy(Service):
    name = "toxiproxy"
    port_fields = ("toxiproxy", "kafka_proxy", "elasticmq_proxy", "moto_proxy", "pubsub_proxy")

    def client(self) -> ToxiproxyClient:
        return ToxiproxyClient(LOOPBACK, self.settings.ports.toxiproxy, timeout=PROBE_TIMEOUT)

    def command(self) -> list[str]:
        binary = artifacts.require(artifacts.toxiproxy())
        return [str(binary), "-host", LOOPBACK, "-port", str(self.settings.ports.toxiproxy)]

    def probe(self) -> None:
        self.client().version()

    def version(self) -> str:
        return self.client().version()


class MemoryBroker(Service):
    """brokerbench's in-memory TEST DOUBLE broker (``harness.drivers.memory``): opt-in
    (``up --only memory``), no proxy, not in compose/ nor in the containers provider."""

    name = "memory"
    port_fields = ("memory",)
    opt_in = True
    test_double = True

    def command(self) -> list[str]:
        port = str(self.settings.ports.memory)
        return [sys.executable, "-m", "harness.drivers.memory.server", "--port", port]

    def probe(self) -> None:
        from harness.drivers.memory.driver import Connection

        connection = Connection(self.settings.ports.memory, PROBE_TIMEOUT)
        try:
            answer, _ = connection.request({"op": "ping"})
        finally:
            connection.close()
        if answer.get("broker") != "memory":
            raise RuntimeError(f"not the memory broker on port {self.settings.ports.memory}")

    def version(self) -> str:
        return f"brokerbench {__version__}"


class SchemaRegistry(Service):
    """Apicurio Registry (harness/stack/schema_registry.py): opt-in (``up --only registry``),
    in-memory storage, no proxy."""

    name = "registry"
    port_fields = ("registry",)
    startup_timeout = 120.0  # about 10 s alone; far more while brokers start on two cores
    opt_in = True

    def command(self) -> list[str]:
        jar = artifacts.require(artifacts.schema_registry_server())
        port = self.settings.ports.registry
        http = [f"-Dquarkus.http.port={port}", f"-Dquarkus.http.host={LOOPBACK}"]
        return [_java(), "-Xmx384m", *http, "-jar", str(jar)]

    def probe(self) -> None:
        schema_registry.probe(self.settings.ports.registry, PROBE_TIMEOUT)

    def version(self) -> str:
        return schema_registry.version(self.settings.ports.registry, PROBE_TIMEOUT)


def opt_in_services(settings: Settings) -> list[Service]:
    """Services ``up`` starts only when named with ``--only``."""
    return [MemoryBroker(settings), SchemaRegistry(settings)]


def all_services(settings: Settings) -> list[Service]:
    """The stack ``up`` starts, in start order: toxiproxy first, so proxies exist as soon as
    brokers answer (the opt-in services are apart: ``opt_in_services``)."""
    return [
        Toxiproxy(settings),
        Kafka(settings),
        ElasticMq(settings),
        Moto(settings),
        PubSubEmulator(settings),
    ]


def local_broker_version(name: str, settings: Settings) -> str | None:
    """The version of a local-stack broker (None for anything else, e.g. external targets)."""
    for service in all_services(settings):
        if service.name == name and not isinstance(service, Toxiproxy):
            return service.version()
    return None


def _kafka_cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of a UUID); like Kafka's own
    ``Uuid.randomUuid``, never one starting with "-", which the storage tool would read as an
    option (one fresh home in 64 failed to format)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
