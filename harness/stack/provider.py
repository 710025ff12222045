"""Stack providers: who runs the stack's services, local processes or containers.

Both providers start the same services on the same 127.0.0.1 ports (``Settings.ports``) and
check them with the same protocol probes, so drivers, targets and toxiproxy work unchanged.
``auto`` (the default) reuses a stack already running in this home, else chooses containers
when a Docker engine answers and local processes when none does. The provider that started
the stack is recorded in the state dir (harness/stack/provider_record.py), so ``down`` and
``status`` find it again.
"""

import os
from collections.abc import Callable, Collection
from typing import Literal, Protocol, get_args

from harness import paths
from harness.errors import UserError
from harness.settings import Settings
from harness.stack import processes
from harness.stack.manager import ServiceStatus, Stack
from harness.stack.provider_record import (
    ProviderName,
    current_provider,
    forget_provider,
    record_provider,
    recorded_provider,
)
from harness.stack.services import opt_in_services
from harness.stack.toxiproxy import Proxy

Choice = Literal["auto", "local", "containers"]
CHOICES: tuple[str, ...] = get_args(Choice)
ENGINE_PROBE_TIMEOUT = 3
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class StackProvider(Protocol):
    """The stack's lifecycle, whoever runs it (see harness/stack/manager.py for the states)."""

    name: ProviderName

    def up(self, report: Callable[[str], None] = ...) -> list[ServiceStatus]: ...

    def down(self, report: Callable[[str], None] = ...) -> None: ...

    def status(self) -> list[ServiceStatus]: ...

    def proxies(self) -> dict[str, Proxy]: ...

    def is_running(self) -> bool:
        """True when any of its services runs (healthy or not)."""
        ...


class LocalProvider:
    """The local processes of harness/stack/manager.py ``Stack``."""

    name: ProviderName = "local"

    def __init__(self, settings: Settings, only: Collection[str] | None = None) -> None:
        self.stack = Stack(settings, only)
        self.whole_stack = only is None

    def up(self, report: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
        statuses = self.stack.up(report)
        record_provider(self.name)
        return statuses

    def down(self, report: Callable[[str], None] = lambda _: None) -> None:
        self.stack.down(report)
        if self.whole_stack:
            forget_provider()

    def status(self) -> list[ServiceStatus]:
        return self.stack.status()

    def proxies(self) -> dict[str, Proxy]:
        return self.stack.proxies()

    def is_running(self) -> bool:
        for service in self.stack.services:
            record = processes.recorded(service.directory)
            if record is not None and processes.is_alive(record):
                return True
        return False


def engine_problem() -> str | None:
    """None when a Docker engine answers a ping, else why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the Docker client library is not installed: pip install 'brokerbench[containers]'"
    try:
        client = docker.from_env(timeout=ENGINE_PROBE_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        where = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        return f"no Docker engine answers at {where}"
    return None


def _local_only(settings: Settings) -> set[str]:
    """The opt-in services (the memory test double, the schema registry): local processes
    only, no container."""
    return {service.name for service in opt_in_services(settings)}


def _why_local(name: str) -> str:
    if name == "memory":
        return "memory is brokerbench's in-memory test double"
    return f"{name} is the schema registry `brokerbench setup` builds here"


def _make(
    name: ProviderName, settings: Settings, only: Collection[str] | None, reap_on_exit: bool
) -> StackProvider:
    if name == "local":
        return LocalProvider(settings, only)
    local_only = sorted(_local_only(settings) & set(only or ()))
    if local_only:
        raise UserError(
            f"{_why_local(local_only[0])} and runs as a local process only: use --provider local"
        )
    problem = engine_problem()
    if problem is not None:
        raise UserError(
            f"the containers provider needs a Docker engine, but {problem}: start Docker "
            "(or set DOCKER_HOST), or use --provider local"
        )
    try:
        from harness.stack.containers import ContainerProvider
    except ImportError as exc:
        raise UserError(
            f"the containers provider needs testcontainers ({exc.name} is missing): "
            "pip install 'brokerbench[containers]'"
        ) from exc
    return ContainerProvider(settings, only, reap_on_exit=reap_on_exit)


def choose(settings: Settings) -> tuple[ProviderName, str]:
    """What ``auto`` means here, and why: a running stack of this home first, then local
    processes for a Kafka cluster, then a Docker engine, then local processes."""
    problem = engine_problem()
    if recorded_provider() == "containers" and problem is None:
        from harness.stack.containers import ContainerProvider

        if ContainerProvider(settings).is_running():
            return "containers", "a containers stack is already running in this home"
    if LocalProvider(settings).is_running():
        return "local", "a local stack is already running in this home"
    if settings.stack.kafka.is_cluster:
        return "local", "a Kafka cluster (stack.kafka.nodes > 1) runs as local processes"
    if problem is None:
        return "containers", "a Docker engine answers"
    return "local", problem


def open_provider(
    settings: Settings,
    only: Collection[str] | None = None,
    choice: Choice = "auto",
    *,
    reap_on_exit: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> StackProvider:
    """The provider for ``up``, its choice explained through ``report``. ``reap_on_exit`` lets
    testcontainers' reaper remove the containers when this process ends (for test sessions; a
    CLI ``up`` must outlive the command)."""
    if choice not in CHOICES:
        raise UserError(f"unknown provider {choice!r}: choose from {', '.join(CHOICES)}")
    name: ProviderName
    if choice == "auto" and only and set(only) <= _local_only(settings):
        name, reason = "local", f"{', '.join(sorted(only))}: local processes only"
    else:
        name, reason = choose(settings) if choice == "auto" else (choice, "")
    recorded = recorded_provider()
    if recorded is not None and recorded != name:
        running = _make(recorded, settings, None, False) if _usable(recorded) else None
        if running is not None and running.is_running():
            raise UserError(
                f"a {recorded} stack is running in {paths.home()}: stop it with "
                f"`brokerbench down` first, or use --provider {recorded}"
            )
    provider = _make(name, settings, only, reap_on_exit)
    report(f"provider: {name} (auto: {reason})" if reason else f"provider: {name}")
    return provider


def _usable(name: ProviderName) -> bool:
    return name == "local" or engine_problem() is None


def existing_provider(
    settings: Settings, only: Collection[str] | None = None, choice: Choice | None = None
) -> StackProvider:
    """The provider for ``down`` and ``status``: the one named, else the one that started the
    stack in this home (local when none is recorded)."""
    if choice is not None and choice not in CHOICES:
        raise UserError(f"unknown provider {choice!r}: choose from {', '.join(CHOICES)}")
    name: ProviderName = current_provider()
    if choice is not None and choice != "auto":
        name = choice
    return _make(name, settings, only, False)
