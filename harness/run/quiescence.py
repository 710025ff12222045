"""When a flow has caught up: its service processes' progress lines, summed."""

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.load.progress_line import ProgressLine

QUIET_SECONDS = 2.0


@dataclass
class ServiceTotals:
    handled: dict[str, int] = field(default_factory=dict)
    """Events handled (acked for the first time, or dead-lettered) per topic; on a fan-out
    topic the first subscriber counts under the topic, each other one under
    ``<topic>/<group>`` (``harness.flows.plan.handled_key``)."""
    published: dict[str, int] = field(default_factory=dict)
    """Events the services published (acknowledged by the broker) per topic."""
    unpublished: int = 0
    """Events still in the services' outboxes."""
    quiet_seconds: float = 0.0
    """How long every running service has polled nothing."""

    @classmethod
    def of(
        cls,
        progress_lines: Iterable[ProgressLine],
        running: Iterable[ProgressLine] = (),
    ) -> "ServiceTotals":
        """Totals over every service process's last line (killed ones included: what they
        handled stays handled); ``running``: the lines of those still running."""
        quiet = [last.idle_seconds for last in running]
        totals = cls(quiet_seconds=min(quiet, default=0.0))
        for last in progress_lines:
            for topic, count in last.handled.items():
                totals.handled[topic] = totals.handled.get(topic, 0) + count
            for topic, count in last.published.items():
                totals.published[topic] = totals.published.get(topic, 0) + count
            totals.unpublished += last.unpublished
        return totals

    def entry_handled(self, entry_topic: str) -> int:
        """Of the entry topic's handled events, those the producers sent: services may publish
        to the entry topic too (the saga's replies go to the Order service's inbox)."""
        return max(0, self.handled.get(entry_topic, 0) - self.published.get(entry_topic, 0))

    def quiescent(self, entry_topic: str, entry_ok: int) -> bool:
        """Each topic's events were handled (or dead-lettered) as often as published (by the
        services, plus the producers' ``entry_ok`` on the entry topic), no outbox holds an event
        yet to publish, and every service has been idle for ``QUIET_SECONDS``. The counts alone
        can be fooled: a replacement for a killed service handles again what its predecessor
        had handled but not committed, while a poison pill may still be on its way to the dead
        letters."""
        needed = dict(self.published)
        needed[entry_topic] = needed.get(entry_topic, 0) + entry_ok
        return (
            self.quiet_seconds >= QUIET_SECONDS
            and self.unpublished == 0
            and all(self.handled.get(topic, 0) >= count for topic, count in needed.items())
            and all(  # every further subscriber of a fan-out topic got them all too
                count >= needed.get(key.split("/", 1)[0], 0)
                for key, count in self.handled.items()
                if "/" in key
            )
        )
