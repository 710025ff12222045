"""The fault-aware verdict stage: the checkers' verdicts, adjusted for what a run's faults
explain.

The checkers judge a history as if nothing had been done to the broker or the harness on
purpose. Two faults make losses and phantoms that are expected, not anomalies; this stage
sets them apart, after the checkers and before result.json is written
(``harness/run/result.py`` ``evaluate`` calls ``adjust_for_faults`` explicitly; the per-fault
figures of ``chaos/figures.py`` call it on each window's messages). Only these verdicts change:

- ``lost``, when a fault is ``non_durable`` (``adjust_for_non_durable``);
- ``phantom``, when a ``producer-crash`` fault ran (``adjust_for_producer_crash``).

Each changes only a *failed* verdict: it is re-checked on the history without what the fault
explains, takes the re-check's ``valid`` and notes, and counts the difference under its own
name (``non_durable_lost``, ``unrecorded_sends``); a re-check left with nothing to judge (the
fault explains all the checker saw) passes. Every other verdict passes unchanged. Pure
functions: no I/O, no clock.

``faults`` are the per-fault figures of ``chaos.figures.fault_figures`` (result.json
``scenario.faults``); this stage reads their ``start_ns``, ``end_ns``, ``action`` and
``non_durable``.
"""

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.checkers import HistoryIndex, Verdict, check_lost, check_phantoms
from harness.checkers.verdict import NOTHING_TO_JUDGE
from harness.history.store import History


def adjust_for_faults(
    verdicts: list[Verdict], history: History, faults: Sequence[dict[str, Any]]
) -> list[Verdict]:
    """The stage: ``adjust_for_non_durable``, then ``adjust_for_producer_crash``. Without
    faults of either kind the verdicts are returned as they are."""
    verdicts = adjust_for_non_durable(verdicts, history, faults)
    return adjust_for_producer_crash(verdicts, history, faults)


def adjust_for_non_durable(
    verdicts: list[Verdict], history: History, faults: Sequence[dict[str, Any]]
) -> list[Verdict]:
    """Changes a failed ``lost`` verdict when a fault is ``non_durable`` (a crash or restart
    of an in-memory broker: ElasticMQ, moto, the Pub/Sub emulator).

    Why: messages acknowledged before such a broker came back, and never delivered, were
    wiped with its memory; that is what an in-memory emulator does. They are counted as
    ``non_durable_lost`` and ``lost`` is re-judged on the sends completed after the last wipe
    (the last such fault's end, or its start if it never healed) or never completed."""
    wipes = [f["end_ns"] or f["start_ns"] for f in faults if f["non_durable"]]
    if not wipes:
        return verdicts
    complete = history.sends.column("complete_ns")
    survivors = history.sends.filter(
        pc.or_kleene(pc.is_null(complete), pc.greater(complete, max(wipes)))
    )
    return _explain_part(
        verdicts,
        "lost",
        lambda: check_lost(HistoryIndex(survivors, history.receives)),
        "non_durable_lost",
        lambda wiped, rest: (
            f"{wiped} acknowledged sends were lost when an in-memory broker restarted "
            f"(non-durable: expected, not an anomaly); other losses: {rest.notes}"
        ),
    )


def adjust_for_producer_crash(
    verdicts: list[Verdict], history: History, faults: Sequence[dict[str, Any]]
) -> list[Verdict]:
    """Changes a failed ``phantom`` verdict when a ``producer-crash`` fault ran.

    Why: a SIGKILLed producer loses the sends its history had not flushed yet, so deliveries
    of them look like phantoms: a harness artefact. A producer counts as crashed if its last
    recorded send was intended before the (last) crash; ``phantom`` is re-judged without the
    deliveries of crashed producers' messages, and the difference is counted as
    ``unrecorded_sends``."""
    crashes = [f["start_ns"] for f in faults if f["action"] == "producer-crash"]
    if not crashes:
        return verdicts
    sends, receives = history.sends, history.receives
    last_intended: dict[int, int] = {}
    for producer, intended in zip(
        sends.column("producer_id").to_pylist(),
        sends.column("intended_ns").to_pylist(),
        strict=True,
    ):
        last_intended[producer] = max(intended, last_intended.get(producer, intended))
    crashed = [
        producer
        for producer in set(receives.column("producer_id").to_pylist())
        if last_intended.get(producer, 0) <= max(crashes)
    ]
    if not crashed:
        return verdicts
    kept = receives.filter(
        pc.invert(pc.is_in(receives.column("producer_id"), pa.array(crashed, pa.uint32())))
    )
    return _explain_part(
        verdicts,
        "phantom",
        lambda: check_phantoms(HistoryIndex(sends, kept)),
        "unrecorded_sends",
        lambda unrecorded, rest: (
            f"{unrecorded} deliveries of sends a crashed producer had not recorded yet (its "
            f"history died with it: not an anomaly); other phantoms: {rest.notes}"
        ),
    )


def _explain_part(
    verdicts: list[Verdict],
    name: str,
    recheck: Callable[[], Verdict],
    explained_as: str,
    notes: Callable[[int, Verdict], str],
) -> list[Verdict]:
    """Re-check the failed ``name`` verdict on the history without what a fault explains
    (``recheck``): the difference is counted as ``explained_as``, not as an anomaly, and the
    verdict becomes the re-check's."""
    adjusted = []
    for verdict in verdicts:
        if verdict.name != name or verdict.valid is not False:
            adjusted.append(verdict)
            continue
        rest = recheck()
        if rest.valid is None and rest.notes in NOTHING_TO_JUDGE:
            # The fault explains everything the checker saw: no other anomaly is left.
            rest = replace(rest, valid=True, notes="none")
        explained = int(verdict.counts.get(name, 0)) - int(rest.counts.get(name, 0))
        counts = {**verdict.counts, explained_as: explained}
        adjusted.append(
            Verdict(verdict.name, rest.valid, counts, verdict.examples, notes(explained, rest))
        )
    return adjusted
