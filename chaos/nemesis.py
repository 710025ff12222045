"""The nemesis: applies a scenario's faults on schedule, on its own thread, records each
window as ``fault-start`` / ``fault-end`` events, and always heals.

```python
with Nemesis(scenario, NemesisContext(target="kafka", settings=settings,
                                      recorder=Recorder(run_dir, "nemesis"))) as nemesis:
    nemesis.start(schedule_start_ns)   # fault times are seconds after this
    ...                                # the load runs
    nemesis.stop()                     # heals what is active; raises if a fault failed
# leaving the block heals everything, whatever happened (error, Ctrl-C, SIGTERM)
```

Before a fault is applied its undo entries are written (atomically) to the state file, and
removed once it is healed, so ``brokerbench chaos heal`` can clean up after a killed harness.
"""

import threading
import time
from types import TracebackType
from typing import Self

from chaos import state
from chaos.context import NemesisContext
from chaos.faults.base import Fault
from chaos.faults.registry import fault_class
from chaos.scenario import FaultWindow, Scenario, fault_params
from harness.history.schema import EventKind

NS_PER_S = 1_000_000_000


class Nemesis:
    def __init__(self, scenario: Scenario, context: NemesisContext) -> None:
        self.scenario = scenario
        self.context = context
        self.windows: list[tuple[FaultWindow, Fault]] = [
            (
                window,
                fault_class(window.spec.action)(
                    window.fault_id, window.target, fault_params(window.spec), context
                ),
            )
            for window in scenario.windows()
        ]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._active: dict[str, Fault] = {}
        self.error: BaseException | None = None

    def check(self) -> None:
        """Raise UserError if a fault cannot act on this context (before any load starts)."""
        for _, fault in self.windows:
            fault.check()

    def __enter__(self) -> Self:
        self.check()
        return self

    def start(self, schedule_start_ns: int) -> None:
        """Apply the faults at their times after ``schedule_start_ns``, on a daemon thread."""
        if not self.windows:
            return
        self._thread = threading.Thread(
            target=self._run, args=(schedule_start_ns,), name="nemesis", daemon=True
        )
        self._thread.start()

    @property
    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def _run(self, start_ns: int) -> None:
        timeline: list[tuple[int, int, Fault]] = []
        for window, fault in self.windows:
            timeline.append((start_ns + round(window.start_s * NS_PER_S), 1, fault))
            timeline.append((start_ns + round(window.end_s * NS_PER_S), 0, fault))
        timeline.sort(key=lambda step: (step[0], step[1]))  # a heal before an apply at one time
        try:
            for when, apply, fault in timeline:
                if self._stop.wait(max(0.0, (when - time.time_ns()) / NS_PER_S)):
                    return
                if apply:
                    self._apply(fault)
                elif fault.fault_id in self.active:
                    self._heal(fault)
        except BaseException as exc:
            self.error = exc
        finally:
            self._heal_active()

    def _apply(self, fault: Fault) -> None:
        state.add_entries(fault.entries(), self.context.state_file)
        with self._lock:
            self._active[fault.fault_id] = fault
        started = time.time_ns()
        try:
            fault.apply()
        finally:
            self._event(EventKind.FAULT_START, fault, fault.detail(), started)

    def _heal(self, fault: Fault) -> None:
        detail: dict[str, object] = {"id": fault.fault_id, "action": fault.action}
        try:
            fault.heal()
        except BaseException as exc:
            detail["error"] = f"{type(exc).__name__}: {exc}"
            raise
        else:
            state.remove_entries(fault.fault_id, self.context.state_file)
        finally:
            with self._lock:
                self._active.pop(fault.fault_id, None)
            self._event(EventKind.FAULT_END, fault, detail, time.time_ns())

    def _heal_active(self) -> None:
        """Heal whatever is active, newest first; keep going past a failing heal."""
        for fault in reversed([f for _, f in self.windows if f.fault_id in self.active]):
            try:
                self._heal(fault)
            except BaseException as exc:
                self.error = self.error or exc

    def _event(self, kind: EventKind, fault: Fault, detail: dict[str, object], at: int) -> None:
        if self.context.recorder is not None:
            self.context.recorder.event(kind, fault.fault_id, fault.target, detail, time_ns=at)

    def stop(self) -> None:
        """Stop the schedule and heal what is active; raise the first fault error, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._heal_active()
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"nemesis: {error}") from error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except RuntimeError:
            if exc is None:
                raise
