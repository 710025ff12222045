"""Flows are workloads: found by kind under the ``brokerbench.workloads`` entry point group."""

from importlib.metadata import entry_points

from harness.flows.api import Flow

WORKLOAD_GROUP = "brokerbench.workloads"


def flow_class(kind: str) -> type[Flow]:
    for entry in entry_points(group=WORKLOAD_GROUP, name=kind):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Flow):
            return loaded
    raise LookupError(f"no flow named {kind!r} under {WORKLOAD_GROUP}")
