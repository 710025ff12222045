"""Merging one checker's verdicts on identity ranges into its verdict on the whole history.

Counts add up; examples are kept in range order (ranges come in identity order, the order every
identity-based checker picks its examples in) up to ``MAX_EXAMPLES`` per kind; ``valid`` and
``notes`` are worked out again from the merged counts by the checker's own rule, written out
here (``tests/unit/test_bounded_analysis.py`` holds both to the whole-history verdicts).
"""

from collections.abc import Sequence

from harness.checkers import MAX_EXAMPLES, Verdict
from harness.checkers.verdict import NOTHING_ACKNOWLEDGED, NOTHING_RECEIVED, NOTHING_SENT
from harness.drivers.base import OrderingScope


def summed(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Every count of ``verdicts`` added up, keys in the first verdict's order."""
    total: dict[str, int] = {}
    for verdict in verdicts:
        for name, value in verdict.counts.items():
            total[name] = total.get(name, 0) + value
    return total


def capped_examples(
    verdicts: Sequence[Verdict], kinds: Sequence[str], skip: frozenset[str] = frozenset()
) -> list[dict[str, object]]:
    """The ranges' examples, ``MAX_EXAMPLES`` per kind, kinds in the checker's order."""
    by_kind: dict[str, list[dict[str, object]]] = {}
    for verdict in verdicts:
        for example in verdict.examples:
            kind = str(example.get("kind"))
            if kind in skip:
                continue
            kept = by_kind.setdefault(kind, [])
            if len(kept) < MAX_EXAMPLES:
                kept.append(example)
    order = [kind for kind in kinds if kind in by_kind]
    order += [kind for kind in by_kind if kind not in kinds]
    return [example for kind in order for example in by_kind[kind]]


def lost(counts: dict[str, int], examples: list[dict[str, object]]) -> Verdict:
    """``check_lost``'s verdict from its merged counts."""
    name = "lost"
    if not counts["acked"]:
        return Verdict(name, None, counts, notes=NOTHING_ACKNOWLEDGED)
    if not counts["lost"]:
        return Verdict(name, True, counts, notes="every acknowledged send was delivered")
    valid: bool | None = False if counts["lost_write"] or counts["lost_unpositioned"] else None
    notes = (
        f"{counts['lost']} of {counts['acked']} acknowledged sends never delivered: "
        f"{counts['lost_write']} lost-write (a later offset of the partition was read), "
        f"{counts['unseen']} unseen (nothing after them was read: lost or late), "
        f"{counts['lost_unpositioned']} without a partition offset (lost)"
    )
    return Verdict(name, valid, counts, examples, notes)


def unknown_outcomes(counts: dict[str, int], sends: int) -> Verdict:
    name = "unknown-outcome"
    if not sends:
        return Verdict(name, None, counts, notes=NOTHING_SENT)
    notes = (
        f"{counts['unknown']} sends completed unknown: {counts['delivered']} delivered, "
        f"{counts['not_delivered']} not (both are legal)"
    )
    return Verdict(name, True, counts, notes=notes)


def failed_but_delivered(
    counts: dict[str, int], examples: list[dict[str, object]], receives: int
) -> Verdict:
    name = "failed-but-delivered"
    if not receives:
        return Verdict(name, None, counts, notes=NOTHING_RECEIVED)
    offending = counts["failed_but_delivered"]
    notes = f"{offending} of {counts['failed']} failed sends were delivered"
    return Verdict(name, not offending, counts, examples, notes)


def phantoms(counts: dict[str, int], examples: list[dict[str, object]], receives: int) -> Verdict:
    name = "phantom"
    if not receives:
        return Verdict(name, None, counts, notes=NOTHING_RECEIVED)
    notes = f"{counts['phantom']} received identities were never sent"
    return Verdict(name, not counts["phantom"], counts, examples, notes)


def duplicates(
    counts: dict[str, int],
    examples: list[dict[str, object]],
    receives: int,
    *,
    exactly_once: bool,
    failed_acks: int,
) -> Verdict:
    name = "duplicates"
    counts["failed_acks"] = failed_acks  # every range was told the run's total
    semantics = "exactly-once" if exactly_once else "at-least-once"
    acks_note = (
        f"; {failed_acks} acks failed for good (those messages came again)" if failed_acks else ""
    )
    if not receives:
        return Verdict(name, None, counts, notes=NOTHING_RECEIVED)
    if not counts["duplicated"]:
        return Verdict(
            name, True, counts, notes=f"no message was delivered twice ({semantics}){acks_note}"
        )
    extra = counts["extra_deliveries"]
    valid = counts["unrequested"] == 0 if exactly_once else True
    notes = (
        f"{counts['duplicated']} messages delivered more than once ({extra} extra deliveries): "
        f"{counts['redelivery']} redelivery ({counts['redelivery_after_nack']} after a nack), "
        f"{counts['duplicate_publish']} duplicate publish "
        f"({counts['duplicate_publish_by_client']} by the client library, "
        f"{counts['duplicate_publish_after_resend']} after a resend by the workload), "
        f"{counts['unclassified']} unclassified{acks_note}; "
        + (
            "exactly-once: an extra delivery not asked for by a nack is invalid"
            if exactly_once
            else "at-least-once: duplicates are allowed, counted, not failed"
        )
    )
    return Verdict(name, valid, counts, examples, notes)


def ordering(
    counts: dict[str, int],
    examples: list[dict[str, object]],
    receives: int,
    scope: OrderingScope,
) -> Verdict:
    name = "ordering"
    if not receives:
        return Verdict(name, None, counts, notes=NOTHING_RECEIVED)
    if scope is OrderingScope.NONE:
        notes = (
            f"no order promised ({scope.value}): {counts['inversions']} inversions among "
            f"{counts['unpromised']} first deliveries, counted, not judged"
        )
        return Verdict(name, True, counts, examples, notes)
    valid: bool | None
    if counts["reorder"] or counts["skip"]:
        valid = False
    elif counts["judged"] == 0 and counts["unpromised"]:
        valid = None
    else:
        valid = True
    notes = (
        f"{counts['judged']} first deliveries judged per {scope.value}: "
        f"{counts['reorder']} reorder, {counts['skip']} skip; {counts['rebalance']} rebalance "
        f"(a scope moved to another consumer: expected); {counts['unpromised']} without a "
        f"scope, {counts['inversions']} inversions among them (not judged)"
    )
    if valid is None:
        notes += "; order is promised but no receive carries a scope"
    return Verdict(name, valid, counts, examples, notes)
