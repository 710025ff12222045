"""Watching one run's load processes: their progress lines folded into ``Progress`` (and the
live metrics), the waits of the run's phases with their deadlines (ready, producers done,
drain until quiescent), and failing fast when a consuming process dies unexpectedly."""

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import NamedTuple

from harness.collectors.lag import LagSampler
from harness.collectors.live import LiveMetrics
from harness.errors import RunFailedError
from harness.load.progress_line import ProgressLine
from harness.run.children import Child, Children, Role
from harness.run.load_slots import LoadSlots
from harness.run.quiescence import ServiceTotals

READY_SECONDS = 60.0
"""How long the load processes may take to start and connect."""
POLL_SECONDS = 0.2


@dataclass
class Progress:
    """What the run reports while it goes (for a progress bar)."""

    phase: str = "starting"
    sent: int = 0
    failed: int = 0
    received: int = 0
    """Deliveries on every topic (a flow's services count what they handled downstream too)."""
    expected: int = 0
    entry_received: int = 0
    """Deliveries of the messages the producers sent (a flow: its entry topic): the bar's
    measure against ``expected``."""


class Sends(NamedTuple):
    sent: int
    """Completed, ok or failed."""
    failed: int


class LiveFeed:
    """Feeds the run's Prometheus metrics from the progress lines (deltas since last time)."""

    def __init__(self, metrics: LiveMetrics, message_size: int, lag: LagSampler) -> None:
        self.metrics = metrics
        self.message_size = message_size
        self.lag = lag
        self._seen = Progress()
        self._ticks: dict[str, int] = {}

    def update(self, state: Progress, consuming: dict[str, ProgressLine]) -> None:
        ok, seen_ok = state.sent - state.failed, self._seen.sent - self._seen.failed
        self.metrics.record_send("ok", self.message_size, max(0, ok - seen_ok))
        self.metrics.record_send(
            "fail", self.message_size, max(0, state.failed - self._seen.failed)
        )
        self.metrics.record_receive(count=max(0, state.received - self._seen.received))
        self._seen = Progress(sent=state.sent, failed=state.failed, received=state.received)
        for label, last in consuming.items():
            if last.tick > self._ticks.get(label, 0):
                self._ticks[label] = last.tick
                for e2e_ms in last.e2e_ms:
                    self.metrics.record_receive(e2e_ms / 1000, count=0)
        if self.lag.samples:
            self.metrics.set_backlog(self.lag.samples[-1].backlog)


class Monitor:
    """Folds the children's progress lines into ``state`` and the live metrics, reports it,
    and fails fast when a consuming process dies (unless the nemesis killed it: ``slots``).

    ``sends``: where the sends are counted; default the producer processes' lines (the flow
    locustfile's producers are Locust users in its own process: Locust's statistics)."""

    def __init__(
        self,
        children: Children,
        state: Progress,
        report: Callable[[Progress], None],
        live: LiveFeed,
        *,
        entry_topic: str | None = None,
        slots: LoadSlots | None = None,
        sends: Callable[[], Sends] | None = None,
    ) -> None:
        self.children = children
        self.state = state
        self.report = report
        self.live = live
        self.entry_topic = entry_topic
        self.services = ServiceTotals()
        self.slots = slots
        self.sends = sends or self._producer_sends

    def _producer_sends(self) -> Sends:
        lines = [child.last for child in self.children.of(Role.PRODUCER)]
        return Sends(sum(line.sent for line in lines), sum(line.failed for line in lines))

    def _received(self, child: Child) -> int:
        """A consumer killed by the nemesis counts what its history shard holds (its last
        progress line may be older)."""
        killed = self.slots.final_received if self.slots else {}
        return killed.get(child.label, child.last.received)

    def refresh(self) -> None:
        consuming = self.children.consuming()
        self.state.sent, self.state.failed = self.sends()
        self.state.received = sum(self._received(child) for child in consuming)
        running = [child.last for child in consuming if not child.exited]
        self.services = ServiceTotals.of([child.last for child in consuming], running)
        self.state.received += sum(self.services.handled.values())
        self.state.entry_received = (
            self.services.entry_handled(self.entry_topic)
            if self.entry_topic is not None
            else self.state.received
        )
        self.live.update(self.state, {child.label: child.last for child in consuming})
        self.report(self.state)

    def quiescent(self) -> bool:
        """Everything acknowledged was consumed: plain consumers received every ok send; for
        a flow, each topic's events were handled (or dead-lettered) as often as published, and
        no service holds events it has yet to publish (its outbox)."""
        entry_ok = self.state.sent - self.state.failed
        if self.entry_topic is None:
            return self.state.received >= entry_ok
        return self.services.quiescent(self.entry_topic, entry_ok)

    def said(self, labels: list[str], kind: str) -> bool:
        return all(
            self.children.children[label].last.kind in (kind, "progress") for label in labels
        )

    def started(self, labels: list[str], producers: list[str]) -> bool:
        """Every one of ``labels`` said ready; raises if a producer died before that."""
        for label in producers:
            if self.children.children[label].exited:
                raise RunFailedError(self.children.failure(label))
        return self.said(labels, "ready")

    def exited(self, labels: list[str]) -> bool:
        return all(self.children.children[label].exited for label in labels)

    def _check_consumers(self) -> None:
        """A consuming process that exited, unless the nemesis killed it, fails the run."""
        for child in self.children.consuming():
            if child.exited and (self.slots is None or child.label not in self.slots.killed):
                raise RunFailedError(self.children.failure(child.label))

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, settle_seconds: float = 0.0
    ) -> bool:
        """Wait until ``condition`` has held for ``settle_seconds``; False on timeout."""
        deadline = time.monotonic() + timeout
        held_since: float | None = None
        while time.monotonic() < deadline:
            self.refresh()
            self.children.check()
            self._check_consumers()
            if condition():
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since >= settle_seconds:
                    return True
            else:
                held_since = None
            time.sleep(POLL_SECONDS)
        return False

    # --- the run's phases ------------------------------------------------------------------

    def wait_ready(self, target: str, ready: list[str], producers: list[str]) -> None:
        """Every one of ``ready`` connected and said so, within ``READY_SECONDS``."""
        if not self.wait_for(lambda: self.started(ready, producers), READY_SECONDS):
            late = [label for label in ready if not self.said([label], "ready")]
            raise RunFailedError(f"{target}: {', '.join(late)} not ready within 60 s")

    def wait_producers_done(
        self, target: str, producers: list[str], bound: float, *, crashed: Collection[str]
    ) -> None:
        """Every producer process exited within ``bound`` seconds, each with code 0 unless
        the nemesis ``crashed`` it."""
        if not self.wait_for(lambda: self.exited(producers), bound):
            logs = self.children.run_dir / "logs"
            raise RunFailedError(
                f"{target}: producer processes still running {bound:.0f} s after the "
                f"schedule started, though they stop at its end (logs: {logs})"
            )
        for label in producers:
            if label not in crashed and self.children.children[label].process.returncode != 0:
                raise RunFailedError(self.children.failure(label))

    def drain(self, timeout: float) -> bool:
        """Wait until the run is quiescent and stays so for a second (a flow's quiescence holds
        its services idle for ``QUIET_SECONDS`` already: no second on top); False on timeout."""
        settle = 0.0 if self.entry_topic is not None else 1.0
        return self.wait_for(self.quiescent, timeout, settle_seconds=settle)
