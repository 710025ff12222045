"""The fault protocol: one class per action, instantiated per scheduled fault window."""

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from chaos.context import NemesisContext
from chaos.heal import heal_entry
from chaos.state import Entry
from harness.drivers.targets import LOCAL_DRIVERS, is_local_broker
from harness.errors import UserError
from harness.models import FrozenModel

BROKER = "broker"
"""A fault ``target`` meaning the run's own broker."""


class NoParams(FrozenModel):
    """An action without parameters."""


class Fault(ABC):
    """One fault window: ``apply`` at its start, ``heal`` at its end (or whenever the run ends).

    Subclasses set ``action`` (the name in scenario files and in the entry point group),
    ``params_model`` (validates ``params:``; errors name the file and line) and
    ``default_target``; ``entries`` says what ``chaos heal`` must undo if the harness dies
    while the fault is active (written to the state file before ``apply``).
    """

    action: ClassVar[str]
    params_model: ClassVar[type[FrozenModel]] = NoParams
    default_target: ClassVar[str] = BROKER
    cluster_only: ClassVar[bool] = False
    """The fault acts on a node of the local Kafka cluster (``stack.kafka.nodes`` > 1): refused
    at plan time for every other broker (``harness/run/suite_runner.py``)."""
    restarts_broker: ClassVar[bool] = False
    """The fault starts its target broker's process again (a fresh JVM): the suite warms it
    before its next run (``harness/run/warmup_policy.py``)."""

    def __init__(
        self, fault_id: str, target: str, params: FrozenModel, context: NemesisContext
    ) -> None:
        self.fault_id = fault_id
        self.context = context
        self.target = context.target if target == BROKER else target
        self.params = params

    @property
    def non_durable(self) -> bool:
        """True if the fault wipes an in-memory broker's state (its losses are expected)."""
        return False

    def entries(self) -> list[Entry]:
        return []

    def check(self) -> None:
        """Raise UserError if the fault cannot act on this context (called before the run)."""
        return

    @abstractmethod
    def apply(self) -> None: ...

    def heal(self) -> None:
        for entry in self.entries():
            heal_entry(entry, self.context.settings)

    def detail(self) -> dict[str, Any]:
        """What the fault-start event records."""
        return {
            "id": self.fault_id,
            "action": self.action,
            "target": self.target,
            "params": self.params.model_dump(mode="json"),
            "non_durable": self.non_durable,
        }


def require_local_broker(fault: Fault) -> None:
    if not is_local_broker(fault.target, fault.context.settings):
        raise UserError(
            f"fault {fault.action!r} needs a broker of the local stack (one of "
            f"{', '.join(sorted(LOCAL_DRIVERS))}), not {fault.target!r}: external targets have "
            "no proxy and no process brokerbench controls"
        )
