"""When a broker needs a warm-up (``harness/run/broker_warmup.py``) before a run.

A broker is warmed before its first run in a suite, and again before the next run after it
was restarted: a fresh process has a fresh JVM. A restart is known two ways, either enough:

- the local service's pid file (pid and start time, ``harness/stack/processes.py``) differs
  from the one seen at the last warm-up: restarted behind the suite's back, or by a fault;
- the previous run's scenario had a fault that starts the broker's process again (``crash``,
  ``restart``: ``Fault.restarts_broker``), which also covers brokers without a pid file (the
  containers provider).

A ``pause`` (SIGSTOP / SIGCONT) keeps the process and its compiled code: no warm-up after it.
External targets have no pid file: they are warmed before their first run only.
"""

from collections.abc import Callable
from typing import Literal

from chaos.faults.base import BROKER
from chaos.faults.registry import fault_class
from chaos.scenario import Scenario
from harness.drivers.targets import is_local_broker
from harness.settings import Settings
from harness.stack import processes
from harness.stack.manager import Stack
from harness.stack.provider_record import current_provider

Reason = Literal["first run", "broker restarted"]
Identity = tuple[int, float] | None
"""A broker process's (pid, start time), or None where brokerbench cannot see it."""


def local_identity(target: str, settings: Settings) -> Identity:
    """The running local service's (pid, start time); None for an external target, a stack in
    containers, or a service that is not running."""
    if not is_local_broker(target, settings):
        return None
    if current_provider() != "local":
        return None
    record = processes.recorded(Stack(settings).service(target).directory)
    if record is None or not processes.is_alive(record):
        return None
    return (record.pid, record.started_at)


def restarted_by(scenario: Scenario | None, run_target: str) -> set[str]:
    """The brokers whose process ``scenario``'s faults start again, in a run on ``run_target``."""
    if scenario is None:
        return set()
    return {
        run_target if window.target == BROKER else window.target
        for window in scenario.windows()
        if fault_class(window.spec.action).restarts_broker
    }


class WarmupTracker:
    """Remembers, per broker target, what the last warm-up saw; says when to warm again."""

    def __init__(self, identify: Callable[[str], Identity]) -> None:
        self._identify = identify
        self._warmed: dict[str, Identity] = {}
        self._restarted: set[str] = set()

    def reason(self, target: str) -> Reason | None:
        """Why ``target`` needs a warm-up before its next run, or None if it does not."""
        if target not in self._warmed:
            return "first run"
        if target in self._restarted or self._identify(target) != self._warmed[target]:
            return "broker restarted"
        return None

    def warmed(self, target: str) -> None:
        """``target`` was just warmed."""
        self._warmed[target] = self._identify(target)
        self._restarted.discard(target)

    def ran(self, target: str, scenario: Scenario | None) -> None:
        """A run on ``target`` with ``scenario`` ended: note the brokers its faults restarted."""
        self._restarted |= restarted_by(scenario, target)
