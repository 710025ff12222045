"""Merging one checker's verdicts on identity ranges into its verdict on the whole history.

Counts add up; examples are kept in range order (ranges come in identity order, the order every
identity-based checker picks its examples in) up to ``MAX_EXAMPLES`` per kind. ``valid`` and
``notes`` are not worked out here: each checker's ``*_verdict`` function (``lost_verdict``,
``ordering_verdict``, ...) gives them from the merged counts, the same function the checker
itself ends with on a whole history (``tests/unit/test_bounded_analysis.py`` holds the two
paths equal).
"""

from collections.abc import Sequence

from harness.checkers import MAX_EXAMPLES, Verdict


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


def merged(
    verdicts: Sequence[Verdict], kinds: Sequence[str], skip: frozenset[str] = frozenset()
) -> tuple[dict[str, int], list[dict[str, object]]]:
    """``summed`` counts and ``capped_examples``: what a checker's ``*_verdict`` takes."""
    return summed(verdicts), capped_examples(verdicts, kinds, skip)
