"""``check_all``: every log-level checker over one run's history."""

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.duplicates import NAME as DUPLICATES
from harness.checkers.duplicates import check_duplicates, failed_acks_of
from harness.checkers.fates import (
    check_failed_but_delivered,
    check_phantoms,
    check_unknown_outcomes,
)
from harness.checkers.index import HistoryIndex
from harness.checkers.lag import check_lag_recovery
from harness.checkers.lost import check_lost
from harness.checkers.ordering import NAME as ORDERING
from harness.checkers.ordering import check_ordering
from harness.checkers.subscribers import check_subscribers, merge, subscriber_slices
from harness.checkers.undecodable import check_undecodable
from harness.checkers.verdict import Verdict
from harness.drivers.base import OrderingScope


def check_all(  # noqa: PLR0917 - the positional order is the documented API
    sends: pa.Table,
    receives: pa.Table,
    events: pa.Table,
    ordering: OrderingScope,
    lag: pa.Table | None = None,
    lag_recovery_seconds: float = 30,
    *,
    exactly_once: bool = False,
) -> list[Verdict]:
    """Run every checker on one history; the verdicts come in a fixed order: lost,
    unknown-outcome, failed-but-delivered, phantom, duplicates, ordering, lag-recovery;
    undecodable for a run whose bodies went through a schema registry; and, for a fan-out
    (``subscribers.py``), subscribers. Duplicates and ordering judge each subscriber's
    deliveries apart.

    ``ordering`` is the scope the broker promised for this destination
    (``Capabilities.ordering(ordered)``); ``exactly_once`` makes any repeated delivery not
    asked for by a nack invalid; at-least-once allows (and counts) every duplicate.
    """
    history = HistoryIndex(sends, receives)
    undecodable = check_undecodable(events)  # only for runs with schema bodies
    failed_acks = failed_acks_of(events)
    slices = subscriber_slices(history)
    if len(slices) == 1:
        duplicates = check_duplicates(history, exactly_once=exactly_once, failed_acks=failed_acks)
        in_order = check_ordering(history, ordering)
    else:  # a fan-out: each subscriber's deliveries are judged apart, then merged
        duplicates = merge(
            DUPLICATES,
            (
                (name, check_duplicates(part, exactly_once=exactly_once, failed_acks=0))
                for name, part in slices
            ),
        )
        duplicates.counts["failed_acks"] = failed_acks
        in_order = merge(
            ORDERING, ((name, check_ordering(part, ordering)) for name, part in slices)
        )
    verdicts = [
        check_lost(history),
        check_unknown_outcomes(history),
        check_failed_but_delivered(history),
        check_phantoms(history),
        duplicates,
        in_order,
        check_lag_recovery(lag, events, lag_recovery_seconds),
        *([] if undecodable is None else [undecodable]),
    ]
    per_subscriber = check_subscribers(history, events)
    return verdicts if per_subscriber is None else [*verdicts, per_subscriber]


def all_valid(verdicts: list[Verdict]) -> bool | None:
    """False if any verdict is invalid, else None if any is unknown, else True (Jepsen's
    composition of validity)."""
    if any(verdict.valid is False for verdict in verdicts):
        return False
    if any(verdict.valid is None for verdict in verdicts):
        return None
    return True
