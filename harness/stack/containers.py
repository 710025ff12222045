"""The stack in containers, started through testcontainers (``brokerbench up --provider
containers`` and the pytest plugin).

The containers run the specs of harness/stack/container_specs.py on one Docker network, where
toxiproxy reaches each broker by its alias. Ports are published on 127.0.0.1 under the same
numbers as the local stack, and readiness is the local stack's protocol probe, run from the
host. Containers carry labels naming this home, so ``down`` and ``status`` from another
process find them again; a CLI ``up`` disables testcontainers' reaper (Ryuk), which would
otherwise remove them when the command exits.
"""

import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

import docker
from docker.errors import DockerException
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from harness import paths
from harness.errors import UserError
from harness.models import LOOPBACK
from harness.settings import Settings
from harness.stack.container_specs import (
    ContainerSpec,
    container_name,
    container_proxy_specs,
    container_specs,
    network_name,
)
from harness.stack.lock import stack_lock
from harness.stack.manager import ServiceStatus, require_free_ports, require_known_services
from harness.stack.provider_record import ProviderName, forget_provider, record_provider
from harness.stack.services import Service, Toxiproxy, all_services
from harness.stack.toxiproxy import Proxy

LABEL_HOME = "brokerbench.home"
LABEL_SERVICE = "brokerbench.service"
STARTUP_TIMEOUT = 180.0
"""Seconds from a container's start to its first protocol answer (images are pulled before)."""
ALIVE = ("created", "running", "restarting")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _last_log_line(container: Any) -> str:
    try:
        lines = container.logs(tail=20).decode(errors="replace").splitlines()
    except DockerException:
        return "no log"
    lines = [line for line in lines if line.strip()]
    return lines[-1][:240] if lines else "empty log"


class ServiceContainer(DockerContainer):
    """One service's container on the stack's network, its ports published on 127.0.0.1."""

    def __init__(
        self,
        spec: ContainerSpec,
        network: Network,
        labels: dict[str, str],
        docker_client_kw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            spec.image,
            docker_client_kw=docker_client_kw,
            env=dict(spec.environment),
            name=container_name(spec.service),
            network=network,
            network_aliases=list(spec.network_aliases),
        )
        if spec.command is not None:
            self.with_command(list(spec.command))
        self.with_kwargs(hostname=spec.service, labels=labels)
        for path, text in spec.files.items():
            self.with_copy_into_container(text.encode(), path)
        self.spec = spec
        self.published = sorted(spec.ports.values())

    def _configure(self) -> None:
        # with_bind_ports publishes on every host interface; docker-py also takes
        # (host_ip, port), which keeps the stack on loopback like the local one.
        ports: dict[str, Any] = self.ports
        for port in self.published:
            ports[f"{port}/tcp"] = (LOOPBACK, port)


def await_service(service: Service, container: Any, timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait until ``service`` answers its protocol from the host; UserError if its container
    stops or it stays silent for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while True:
        container.reload()
        if container.status not in ALIVE:
            code = container.attrs.get("State", {}).get("ExitCode")
            raise UserError(
                f"{service.name} container stopped during start-up ({container.status}, exit "
                f"{code}): {_last_log_line(container)} (see `docker logs {container.name}`)"
            )
        try:
            service.probe()
        except Exception as exc:
            last_error = _first_line(exc)
        else:
            return
        if time.monotonic() > deadline:
            raise UserError(
                f"{service.name} did not answer within {timeout:.0f} s ({last_error}); "
                f"see `docker logs {container.name}`"
            )
        time.sleep(0.5)


class ProtocolProbe(WaitStrategy):
    """A testcontainers wait strategy: ready when the service answers its own protocol (the
    local stack's probe); fails at once when the container stops."""

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.with_startup_timeout(int(STARTUP_TIMEOUT))

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        await_service(self.service, container.get_wrapped_container(), self._startup_timeout)


class ContainerProvider:
    """The stack (or the services in ``only``) as containers on a Docker engine."""

    name: ProviderName = "containers"

    def __init__(
        self, settings: Settings, only: Collection[str] | None = None, *, reap_on_exit: bool = False
    ) -> None:
        if settings.stack.kafka.is_cluster:
            raise UserError(
                "a Kafka cluster (stack.kafka.nodes > 1) runs only as local processes: "
                "use --provider local"
            )
        specs = container_specs(settings)
        require_known_services(only, [spec.service for spec in specs])
        self.settings = settings
        self.specs = [spec for spec in specs if only is None or spec.service in only]
        self.services = {service.name: service for service in all_services(settings)}
        self.whole_stack = only is None
        self.reap_on_exit = reap_on_exit
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The Docker client, connected on first use."""
        if self._client is None:
            self._client = docker.from_env()
        return self._client

    def _labels(self, service: str) -> dict[str, str]:
        return {LABEL_HOME: str(paths.home()), LABEL_SERVICE: service}

    def _existing(self) -> dict[str, Any]:
        """This home's containers by service, running or not."""
        found = self.client.containers.list(
            all=True, filters={"label": f"{LABEL_HOME}={paths.home()}"}
        )
        return {container.labels.get(LABEL_SERVICE): container for container in found}

    def _network(self) -> Network:
        network = Network(docker_network_kw={"labels": {LABEL_HOME: str(paths.home())}})
        network.name = network_name()  # fixed, so a later `up` joins the same network
        existing = self.client.networks.list(names=[network.name])
        if not any(found.name == network.name for found in existing):
            network.create()
        return network

    def is_running(self) -> bool:
        existing = self._existing()
        return any(
            spec.service in existing and existing[spec.service].status == "running"
            for spec in self.specs
        )

    def up(self, report: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
        with stack_lock(report):
            return self._up(report)

    def _up(self, report: Callable[[str], None]) -> list[ServiceStatus]:
        if not self.reap_on_exit:
            testcontainers_config.ryuk_disabled = True
        existing = self._existing()
        to_start: list[ContainerSpec] = []
        for spec in self.specs:
            container = existing.get(spec.service)
            if container is not None and container.status == "running":
                continue
            if container is not None:
                report(f"{spec.service}: its container is {container.status}; recreating it")
                container.remove(force=True)
            to_start.append(spec)
        self._check_ports_free(to_start)
        started: list[ServiceContainer] = []
        try:
            network = self._network() if to_start else None
            for spec in to_start:
                assert network is not None
                report(f"{spec.service}: starting {spec.image} (pulled if missing)")
                container = ServiceContainer(spec, network, self._labels(spec.service))
                started.append(container)
                container.start()
                report(f"{spec.service}: started")
            ours = {container.spec.service: container for container in started}
            for spec in self.specs:
                service = self.services[spec.service]
                if spec.service in ours:
                    ProtocolProbe(service).wait_until_ready(ours[spec.service])
                else:
                    await_service(service, existing[spec.service])
                report(f"{spec.service}: ready")
                if isinstance(service, Toxiproxy):
                    service.client().populate(container_proxy_specs(self.settings))
        except BaseException:
            with contextlib.suppress(DockerException):
                for container in started:
                    container.stop()
                self._remove_network_if_unused()
            raise
        record_provider(self.name)
        return self.status()

    def _check_ports_free(self, specs: list[ContainerSpec]) -> None:
        for spec in specs:
            require_free_ports(spec.service, spec.ports)

    def down(self, report: Callable[[str], None] = lambda _: None) -> None:
        with stack_lock(report):
            self._down(report)

    def _down(self, report: Callable[[str], None]) -> None:
        existing = self._existing()
        for spec in self.specs:
            container = existing.get(spec.service)
            if container is not None:
                container.remove(force=True, v=True)
                report(f"{spec.service}: stopped")
        self._remove_network_if_unused()
        if self.whole_stack:
            forget_provider()

    def _remove_network_if_unused(self) -> None:
        if self._existing():
            return
        for network in self.client.networks.list(filters={"label": f"{LABEL_HOME}={paths.home()}"}):
            network.remove()

    def status(self) -> list[ServiceStatus]:
        existing = self._existing()
        return [self._status_of(spec, existing.get(spec.service)) for spec in self.specs]

    def _status_of(self, spec: ContainerSpec, container: Any) -> ServiceStatus:
        service = self.services[spec.service]
        ports, log = service.ports(), f"docker logs {container_name(spec.service)}"
        if container is None:
            return ServiceStatus(spec.service, "stopped", None, ports, None, log)
        state = container.attrs.get("State", {})
        if container.status != "running":
            detail = (
                f"container {container.name} is {container.status} (exit "
                f"{state.get('ExitCode')}); `brokerbench up` recreates it"
            )
            return ServiceStatus(spec.service, "crashed", None, ports, None, log, detail)
        pid = state.get("Pid") or None
        try:
            service.probe()
        except Exception as exc:
            return ServiceStatus(spec.service, "unhealthy", pid, ports, None, log, _first_line(exc))
        version = spec.image.rpartition(":")[2]
        return ServiceStatus(spec.service, "healthy", pid, ports, version, log)

    def proxies(self) -> dict[str, Proxy]:
        toxiproxy = self._existing().get("toxiproxy")
        if toxiproxy is None or toxiproxy.status != "running":
            return {}
        return Toxiproxy(self.settings).client().proxies()
