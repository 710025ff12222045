"""``up``, ``down`` and ``status`` of the local stack.

``up`` is idempotent: a service already healthy is left alone, one whose process died is
started again. A failed or interrupted ``up`` stops what it started itself, so it never leaves
orphans. ``down`` stops exactly the process groups named in the pid files. ``up`` and ``down``
hold the home's stack lock (``harness/stack/lock.py``): a second one waits for the first.
"""

import errno
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import psutil

from harness.errors import UserError
from harness.models import LOOPBACK
from harness.settings import Settings
from harness.stack import cluster_network, processes
from harness.stack.kafka_cluster import KafkaNode, configured_nodes, nodes_in_state
from harness.stack.lock import stack_lock
from harness.stack.services import Service, Toxiproxy, all_services, opt_in_services
from harness.stack.toxiproxy import Proxy, ProxySpec

State = Literal["healthy", "unhealthy", "stopped", "crashed"]
BROKERS = ("kafka", "elasticmq", "moto", "pubsub")
KAFKA = "kafka"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    pid: int | None
    ports: dict[str, int]
    version: str | None
    log: str
    detail: str | None = None
    test_double: bool = False
    """brokerbench's in-memory test double, not a real broker."""
    address: str | None = None
    """Where it listens when that is not 127.0.0.1 (a Kafka cluster node's own address)."""
    namespace: str | None = None
    """The network namespace it runs in (a Kafka cluster node's), else None."""


def proxy_specs(settings: Settings) -> list[ProxySpec]:
    """One proxy per broker; Kafka's goes to the listener that advertises the proxy port (a
    Kafka cluster has none: its nodes are not on 127.0.0.1)."""
    p = settings.ports
    pairs = {
        "kafka": (p.kafka_proxy, p.kafka_proxied_listener),
        "elasticmq": (p.elasticmq_proxy, p.elasticmq),
        "moto": (p.moto_proxy, p.moto),
        "pubsub": (p.pubsub_proxy, p.pubsub),
    }
    if settings.stack.kafka.is_cluster:
        del pairs["kafka"]
    return [
        ProxySpec(name, f"{LOOPBACK}:{listen}", f"{LOOPBACK}:{upstream}")
        for name, (listen, upstream) in pairs.items()
    ]


def require_known_services(only: Collection[str] | None, known: list[str]) -> None:
    """UserError naming the choices when ``only`` names a service that does not exist."""
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise UserError(f"unknown service {unknown[0]!r}: choose from {', '.join(known)}")


def require_free_ports(service: str, ports: Mapping[str, int]) -> None:
    """UserError naming the fix when one of ``service``'s ports (settings field -> port) is
    taken."""
    for field, port in ports.items():
        if not _port_is_free(port):
            raise UserError(
                f"port {port} ({service}) is already in use{_holder_of(port)}: stop "
                f"that process or choose another port with ports.{field} in "
                f"brokerbench.yaml or BROKERBENCH_PORT_{field.upper()}"
            )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _holder_of(port: int) -> str:
    """' by <name> (pid N)' when the OS tells us who listens on ``port``, else ''."""
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                return f" by {psutil.Process(connection.pid).name()} (pid {connection.pid})"
    except (psutil.Error, OSError):
        pass
    return ""


def _started(service: Service) -> bool:
    """A pid file is there: started and not stopped by ``down`` (alive or crashed)."""
    return processes.recorded(service.directory) is not None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _last_log_line(service: Service) -> str:
    log = service.directory / "service.log"
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:240] if lines else "empty log"


def known_services(settings: Settings) -> list[Service]:
    """The stack's services, then the opt-in ones (the memory test double). With a Kafka
    cluster (``stack.kafka.nodes`` > 1) its nodes take the single ``kafka``'s place."""
    services = all_services(settings)
    nodes = configured_nodes(settings)
    if nodes:
        at = next(i for i, service in enumerate(services) if service.name == KAFKA)
        services[at : at + 1] = nodes
    return [*services, *opt_in_services(settings)]


def _other_kafka_services(settings: Settings) -> list[Service]:
    """The Kafka services the settings do not ask for now (the single node while a cluster is
    configured, nodes of an earlier cluster): ``down`` and ``status`` include them while they
    are started."""
    configured = {service.name for service in known_services(settings)}
    single = [s for s in all_services(settings) if s.name == KAFKA]
    return [s for s in [*single, *nodes_in_state(settings)] if s.name not in configured]


def _expand_kafka(only: Collection[str] | None, settings: Settings) -> Collection[str] | None:
    """``kafka`` in ``--only`` names every node of a Kafka cluster."""
    nodes = [node.name for node in configured_nodes(settings)]
    if only is None or KAFKA not in only or not nodes:
        return only
    return [name for name in only if name != KAFKA] + nodes


def _stop(services: list[Service]) -> list[Path]:
    """``processes.stop_all`` by groups of the same stop grace, shortest first (a Kafka
    cluster's nodes are given less time than the other services); the folders whose process
    was running."""
    stopped: list[Path] = []
    graces = sorted({service.stop_grace_seconds for service in services})
    for grace in graces:
        group = [s.directory for s in services if s.stop_grace_seconds == grace]
        stopped += processes.stop_all(group, grace)
    return stopped


def _release(services: list[Service]) -> None:
    """Each stopped service's ``release``, all of them even when one fails (the first error is
    raised after)."""
    failure: BaseException | None = None
    for service in services:
        try:
            service.release()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class Stack:
    """The local stack, or the subset named in ``only``. Without ``only``: every service but
    the opt-in ones, which join only while started (so ``down`` and ``status`` see them; ``up``
    still never starts them unless named)."""

    def __init__(self, settings: Settings, only: Collection[str] | None = None) -> None:
        services = known_services(settings)
        only = _expand_kafka(only, settings)
        require_known_services(only, [service.name for service in services])
        self.settings = settings
        self.whole = only is None
        others = [s for s in _other_kafka_services(settings) if _started(s)]
        if only is None:
            self.services = [s for s in services if not s.opt_in or _started(s)] + others
            self.startable = [s for s in services if not s.opt_in]
        else:
            self.services = [s for s in services if s.name in only]
            self.startable = list(self.services)
            if any(s.name.startswith(KAFKA) for s in self.services):
                self.services += others

    def service(self, name: str) -> Service:
        """The service called ``name``; with a Kafka cluster, ``kafka`` is its first node (the
        broker the warm-up policy, the saturation sampler and the process faults watch)."""
        for service in known_services(self.settings):
            if service.name == name:
                return service
        nodes = configured_nodes(self.settings)
        if name == KAFKA and nodes:
            return nodes[0]
        names = ", ".join(s.name for s in known_services(self.settings))
        raise UserError(f"unknown service {name!r}: choose from {names}")

    def up(self, report: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
        with stack_lock(report):
            return self._up(report)

    def _up(self, report: Callable[[str], None]) -> list[ServiceStatus]:
        to_start: list[Service] = []
        for service in self.startable:
            record = processes.recorded(service.directory)
            if record is not None and processes.is_alive(record):
                continue
            if record is not None:
                report(f"{service.name}: its process is gone (crashed or killed); restarting")
                processes.stop(service.directory)
            to_start.append(service)
        commands = {service.name: service.command() for service in to_start}
        self._check_ports_free(to_start)
        started: list[Service] = []
        try:
            for service in to_start:
                service.prepare()
                processes.start(service.directory, commands[service.name])
                started.append(service)
                report(f"{service.name}: started")
            for service in self.startable:
                self._wait_ready(service)
                report(f"{service.name}: ready")
                if isinstance(service, Toxiproxy):
                    service.client().populate(proxy_specs(self.settings))
        except BaseException:
            _stop(started)
            _release(to_start)
            raise
        return self.status()

    def _check_ports_free(self, services: list[Service]) -> None:
        for service in services:
            require_free_ports(service.name, service.loopback_ports())

    def _wait_ready(self, service: Service) -> None:
        record = processes.recorded(service.directory)
        deadline = time.monotonic() + service.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if record is not None and not processes.is_alive(record):
                code = processes.exit_code(record)
                how = f"exit {code}" if code is not None else "process gone"
                processes.stop(service.directory)
                raise UserError(
                    f"{service.name} stopped during start-up ({how}): {_last_log_line(service)} "
                    f"(log: {service.directory / 'service.log'})"
                )
            try:
                service.probe()
            except Exception as exc:
                last_error = _first_line(exc)
                time.sleep(0.25)
                continue
            return
        raise UserError(
            f"{service.name} did not answer within {service.startup_timeout:.0f} s "
            f"({last_error}); see {service.directory / 'service.log'}"
        )

    def down(self, report: Callable[[str], None] = lambda _: None) -> None:
        with stack_lock(report):
            stopped = _stop(self.services)
            _release(self.services)
            if self.whole:  # also what a killed `up` made before any node had a pid file
                cluster_network.remove_all()
        for service in self.services:
            if service.directory in stopped:
                report(f"{service.name}: stopped")

    def status(self) -> list[ServiceStatus]:
        return [self._status_of(service) for service in self.services]

    def _status_of(self, service: Service) -> ServiceStatus:
        status = self._probed_status_of(service)
        if isinstance(service, KafkaNode):
            status = replace(status, address=service.address, namespace=service.namespace)
        if not service.test_double:
            return status
        label = "a test double (in-memory broker for brokerbench's own tests), not a real broker"
        detail = f"{status.detail}; {label}" if status.detail else label
        return replace(status, test_double=True, detail=detail)

    def _probed_status_of(self, service: Service) -> ServiceStatus:
        record = processes.recorded(service.directory)
        log = str(service.directory / "service.log")
        if record is None:
            return ServiceStatus(service.name, "stopped", None, service.ports(), None, log)
        if not processes.is_alive(record):
            return ServiceStatus(
                service.name,
                "crashed",
                record.pid,
                service.ports(),
                None,
                log,
                f"process {record.pid} is gone; `brokerbench up` restarts it",
            )
        try:
            service.probe()
            version = service.version()
        except Exception as exc:
            return ServiceStatus(
                service.name, "unhealthy", record.pid, service.ports(), None, log, _first_line(exc)
            )
        return ServiceStatus(service.name, "healthy", record.pid, service.ports(), version, log)

    def proxies(self) -> dict[str, Proxy]:
        toxiproxy = Toxiproxy(self.settings)
        record = processes.recorded(toxiproxy.directory)
        if record is None or not processes.is_alive(record):
            return {}
        return toxiproxy.client().proxies()
