"""When a flow counts as caught up: handled >= published on every topic, nothing left in an
outbox, and every running service idle for a while (counts alone can be fooled)."""

from typing import Any

from harness.load.progress_line import ProgressLine
from harness.run.quiescence import QUIET_SECONDS, ServiceTotals


def line(**fields: Any) -> ProgressLine:
    return ProgressLine(kind="progress", **fields)


def but(last: ProgressLine, **changes: Any) -> ProgressLine:
    return last.model_copy(update=changes)


ENTRY = line(handled={"clicks": 90}, published={"out": 5}, idle_seconds=3.0)
DOWNSTREAM = line(handled={"out": 5}, unpublished=0, idle_seconds=3.0)
DEAD_LETTERS = line(handled={"clicks": 10}, idle_seconds=3.0)


def test_a_flow_that_handled_everything_and_went_quiet_is_quiescent() -> None:
    lines = [ENTRY, DOWNSTREAM, DEAD_LETTERS]
    totals = ServiceTotals.of(lines, lines)
    assert totals.handled == {"clicks": 100, "out": 5}
    assert totals.quiescent("clicks", 100)
    assert not totals.quiescent("clicks", 101)


def test_a_service_still_busy_keeps_the_flow_from_quiescing() -> None:
    busy = but(DEAD_LETTERS, idle_seconds=QUIET_SECONDS / 4)  # a poison pill still retried
    lines = [ENTRY, DOWNSTREAM, busy]
    assert not ServiceTotals.of(lines, lines).quiescent("clicks", 100)


def test_a_killed_service_counts_for_what_it_handled_not_for_being_idle() -> None:
    killed = but(ENTRY, idle_seconds=0.0)
    replacement = line(handled={"clicks": 0}, idle_seconds=3.0)
    lines = [killed, replacement, DOWNSTREAM, DEAD_LETTERS]
    running = [replacement, DOWNSTREAM, DEAD_LETTERS]
    assert ServiceTotals.of(lines, running).quiescent("clicks", 100)


def test_an_unpublished_outbox_row_keeps_the_flow_from_quiescing() -> None:
    lines = [ENTRY, but(DOWNSTREAM, unpublished=1), DEAD_LETTERS]
    assert not ServiceTotals.of(lines, lines).quiescent("clicks", 100)


def test_services_publishing_to_the_entry_topic_add_to_what_it_must_handle() -> None:
    """The saga's replies land in the Order service's inbox, the entry topic: 100 sent by the
    producers plus 40 replies must all be handled, and only 100 count as entry deliveries."""
    inbox = line(handled={"orders": 130}, published={"orders": 40}, idle_seconds=3.0)
    totals = ServiceTotals.of([inbox], [inbox])
    assert not totals.quiescent("orders", 100)
    assert totals.entry_handled("orders") == 90
    caught_up = but(inbox, handled={"orders": 140})
    totals = ServiceTotals.of([caught_up], [caught_up])
    assert totals.quiescent("orders", 100)
    assert totals.entry_handled("orders") == 100


def test_a_fan_out_drains_only_when_every_subscriber_caught_up() -> None:
    """The first subscriber counts under the topic, the others under ``<topic>/<group>``:
    the drain waits for the slowest."""
    first = line(handled={"clicks": 100}, idle_seconds=3.0)
    behind = line(handled={"clicks/archive": 60}, idle_seconds=3.0)
    assert not ServiceTotals.of([first, behind], [first, behind]).quiescent("clicks", 100)
    caught_up = but(behind, handled={"clicks/archive": 100})
    assert ServiceTotals.of([first, caught_up], [first, caught_up]).quiescent("clicks", 100)
