"""Fault classes by action name, from the ``brokerbench.faults`` entry point group."""

from importlib.metadata import entry_points

from chaos.faults.base import Fault
from harness.errors import UserError

GROUP = "brokerbench.faults"


def fault_classes() -> dict[str, type[Fault]]:
    found: dict[str, type[Fault]] = {}
    for entry in entry_points(group=GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Fault):
            found[entry.name] = loaded
    return found


def fault_class(action: str) -> type[Fault]:
    classes = fault_classes()
    if action not in classes:
        raise UserError(
            f"unknown fault action {action!r}: choose from {', '.join(sorted(classes))}"
        )
    return classes[action]
