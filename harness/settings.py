"""brokerbench's own settings: the local stack's ports and the user's external targets.

Read from ``brokerbench.yaml`` in the working directory (or the file named by
``$BROKERBENCH_CONFIG``); each port can also be set with ``BROKERBENCH_PORT_<NAME>``
(for example ``BROKERBENCH_PORT_KAFKA=29092``).
"""

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, model_validator

from harness import redaction
from harness.errors import UserError
from harness.models import FrozenModel, Port
from harness.yamlconfig import load_model, validate_part


class Ports(FrozenModel):
    """Every port the local stack binds on 127.0.0.1 (the compose file uses the same)."""

    kafka: Port = 9092
    kafka_controller: Port = 9093
    kafka_proxied_listener: Port = 9094
    elasticmq: Port = 9324
    moto: Port = 9330
    pubsub: Port = 8085
    toxiproxy: Port = 8474
    kafka_proxy: Port = 19092
    elasticmq_proxy: Port = 19324
    moto_proxy: Port = 19330
    pubsub_proxy: Port = 18085
    memory: Port = 9350
    """The in-memory test double broker (``up --only memory``; never started by default)."""
    registry: Port = 8081
    """The schema registry (``up --only registry``; never started by default)."""

    @model_validator(mode="after")
    def _distinct(self) -> "Ports":
        seen: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if port in seen:
                raise ValueError(f"ports.{name} and ports.{seen[port]} are both {port}")
            seen[port] = name
        return self


KAFKA_NODES_MAX = 5
FIRST_NODE_HOST = 11
"""Node ``i`` of a Kafka cluster is host ``FIRST_NODE_HOST + i - 1`` of the cluster's subnet."""


class KafkaStack(FrozenModel):
    """The local stack's Kafka: one node on 127.0.0.1 (the default), or a KRaft cluster of
    ``nodes`` combined broker+controller nodes, each in its own network namespace at its own
    address of ``subnet`` (harness/stack/kafka_cluster.py; needs root)."""

    nodes: Annotated[int, Field(ge=1, le=KAFKA_NODES_MAX)] = 1
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.214.14.0/24")
    """A private /24 (or larger) for the cluster's bridge (host 1) and nodes (hosts 11, 12,
    ...); it must not overlap a network this machine already uses."""
    heap_mb: Annotated[int, Field(ge=128, le=8192)] = 256
    """Each node's JVM heap (-Xms = -Xmx)."""

    @property
    def is_cluster(self) -> bool:
        return self.nodes > 1

    @model_validator(mode="after")
    def _subnet_holds_the_nodes(self) -> "KafkaStack":
        if not self.subnet.is_private:
            raise ValueError(f"subnet {self.subnet} is not a private network")
        if self.subnet.num_addresses < FIRST_NODE_HOST + KAFKA_NODES_MAX + 1:
            raise ValueError(f"subnet {self.subnet} is too small: use a /24 or larger")
        return self

    def node_address(self, node: int) -> str:
        """The address of node ``node`` (1-based) on the cluster's bridge."""
        return str(self.subnet.network_address + FIRST_NODE_HOST + node - 1)

    def bridge_address(self) -> str:
        """The root namespace's address on the bridge (the clients' side)."""
        return str(self.subnet.network_address + 1)

    def bootstrap_servers(self, port: int) -> str:
        """Every node's client listener, comma-separated."""
        return ",".join(f"{self.node_address(n)}:{port}" for n in range(1, self.nodes + 1))


class StackSettings(FrozenModel):
    """How the local stack runs its services (beyond their ports)."""

    kafka: KafkaStack = KafkaStack()


LOCAL_DRIVERS = {"kafka": "kafka", "elasticmq": "sqs", "moto": "sqs", "pubsub": "pubsub"}
"""The local stack's brokers (target name -> driver): the only targets faults may signal."""
TEST_DOUBLE = "memory"
"""The built-in target and the driver of brokerbench's in-memory test double broker."""
_SAFE_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _user_target_name(name: str) -> str:
    """A name of the user's own target: safe as a folder name (it names run folders) and not
    one of the built-in targets (a fault must never take a remote cluster for the local one)."""
    if not _SAFE_TARGET_NAME.fullmatch(name):
        raise ValueError(
            "a target name is 1 to 63 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit (it names run folders)"
        )
    if name in LOCAL_DRIVERS or name == TEST_DOUBLE:
        raise ValueError(
            f"{name!r} is a built-in target (the local stack's broker or the test double): "
            f"give your own target another name, e.g. {name + '-remote'!r}"
        )
    return name


UserTargetName = Annotated[str, AfterValidator(_user_target_name)]


class ExternalTarget(FrozenModel):
    """A broker the user runs elsewhere (a real cluster or a cloud account).

    ``driver`` names a registered driver; ``settings`` is validated by that driver's
    endpoint model (e.g. ``bootstrap_servers`` for kafka, ``region`` for sqs, ``project``
    for pubsub).
    """

    driver: str
    settings: dict[str, Any] = Field(default_factory=dict)


class Settings(FrozenModel):
    ports: Ports = Ports()
    stack: StackSettings = StackSettings()
    pubsub_project: str = "brokerbench"
    targets: dict[UserTargetName, ExternalTarget] = Field(default_factory=dict)

    def for_target(self, target: str) -> "Settings":
        """These settings with only ``target``'s own entry under ``targets``: what a load
        process of a run on ``target`` needs (the other targets' credentials stay out)."""
        kept = {name: value for name, value in self.targets.items() if name == target}
        return self.model_copy(update={"targets": kept})


def _config_path() -> Path | None:
    configured = os.environ.get("BROKERBENCH_CONFIG")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise UserError(f"BROKERBENCH_CONFIG={configured}: no such file")
        return path
    default = Path("brokerbench.yaml")
    return default if default.is_file() else None


def _port_overrides(ports: Ports) -> Ports:
    changes: dict[str, int] = {}
    for name in Ports.model_fields:
        variable = f"BROKERBENCH_PORT_{name.upper()}"
        value = os.environ.get(variable)
        if value is None:
            continue
        if not value.isdigit():
            raise UserError(f"{variable}={value}: a port must be a number from 1 to 65535")
        changes[name] = int(value)
    if not changes:
        return ports
    try:
        return Ports.model_validate(ports.model_dump() | changes)
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise UserError(f"BROKERBENCH_PORT_*: {problem}") from exc


def _validate_test_double_targets(path: Path, settings: Settings) -> None:
    """Targets of the ``memory`` test double are checked as the file is read (file:line errors
    for its knobs); other drivers' settings are checked when a run connects, since loading
    their drivers imports their client libraries."""
    from harness.drivers.memory.knobs import MemoryEndpoint

    for name, target in settings.targets.items():
        if target.driver == "memory":
            validate_part(path, ("targets", name, "settings"), target.settings, MemoryEndpoint)


def load_settings() -> Settings:
    """The settings in force: the config file if any, then environment overrides."""
    path = _config_path()
    settings = load_model(path, Settings) if path else Settings()
    if path:
        _validate_test_double_targets(path, settings)
    redaction.remember(redaction.secret_values(settings.model_dump(mode="json")))
    return settings.model_copy(update={"ports": _port_overrides(settings.ports)})
