"""Workloads by kind, from the ``brokerbench.workloads`` entry point group: the engine's raw
throughput (its config model) and the flows (``Flow`` classes). The engine reaches a workload only
through here, never by importing ``workloads``."""

from importlib.metadata import entry_points

from harness.errors import UserError
from harness.flows.api import Flow
from harness.load.throughput import ThroughputConfig

WORKLOAD_GROUP = "brokerbench.workloads"


def workload_kinds() -> list[str]:
    """Every registered workload kind, sorted."""
    return sorted({e.name for e in entry_points(group=WORKLOAD_GROUP)})


def flow_class(kind: str) -> type[Flow]:
    for entry in entry_points(group=WORKLOAD_GROUP, name=kind):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Flow):
            return loaded
    raise LookupError(f"no flow named {kind!r} under {WORKLOAD_GROUP}")


def workload_model(kind: str) -> type[ThroughputConfig]:
    """The config model of a workload kind: the raw-throughput config, or a flow's."""
    for entry in entry_points(group=WORKLOAD_GROUP, name=kind):
        loaded = entry.load()
        model: type[ThroughputConfig] = (
            loaded.config_model if isinstance(loaded, type) and issubclass(loaded, Flow) else loaded
        )
        return model
    raise UserError(unknown_kind(kind))


def unknown_kind(kind: str) -> str:
    return f"unknown workload kind {kind!r}: choose from {', '.join(workload_kinds())}"
