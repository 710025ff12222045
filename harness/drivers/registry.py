"""Drivers are found by the ``brokerbench.drivers`` entry point group, so a user's own package
can add a broker without touching brokerbench."""

from importlib.metadata import entry_points
from typing import cast

from harness.drivers.base import Driver
from harness.errors import UserError

GROUP = "brokerbench.drivers"


def driver_names() -> list[str]:
    return sorted(entry.name for entry in entry_points(group=GROUP))


def driver_class(name: str) -> type[Driver]:
    """The registered driver class; UserError naming the fix if unknown or not installed."""
    matches = [entry for entry in entry_points(group=GROUP) if entry.name == name]
    if not matches:
        raise UserError(
            f"unknown driver {name!r}: installed drivers are {', '.join(driver_names())}"
        )
    try:
        loaded = matches[0].load()
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise UserError(
            f"the {name} driver needs {missing}: pip install 'brokerbench[{name}]'"
        ) from exc
    return cast(type[Driver], loaded)
