"""When a flow has caught up: its service processes' progress lines, summed."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServiceTotals:
    handled: dict[str, int] = field(default_factory=dict)
    """Events handled (acked for the first time, or dead-lettered) per topic."""
    published: dict[str, int] = field(default_factory=dict)
    """Events the services published (acknowledged by the broker) per topic."""
    unpublished: int = 0
    """Events still in the services' outboxes."""

    @classmethod
    def of(cls, progress_lines: Iterable[Mapping[str, Any]]) -> "ServiceTotals":
        totals = cls()
        for last in progress_lines:
            for topic, count in last.get("handled", {}).items():
                totals.handled[topic] = totals.handled.get(topic, 0) + int(count)
            for topic, count in last.get("published", {}).items():
                totals.published[topic] = totals.published.get(topic, 0) + int(count)
            totals.unpublished += int(last.get("unpublished", 0))
        return totals

    def quiescent(self, entry_topic: str, entry_ok: int) -> bool:
        """Each topic's events were handled (or dead-lettered) as often as published (the
        entry topic's ``entry_ok`` times), and no outbox holds an event yet to publish."""
        return (
            self.unpublished == 0
            and self.handled.get(entry_topic, 0) >= entry_ok
            and all(self.handled.get(topic, 0) >= count for topic, count in self.published.items())
        )
