"""What became of sends the producer could not be sure about, and of receives no send explains.

- *unknown-outcome*: a send completed unknown (a timeout, a lost connection: Jepsen's ``info``)
  may or may not have reached the broker; both fates are legal. Reported, never invalid.
- *failed-but-delivered*: a send completed fail, a definite "the broker did not take it", yet the
  message was delivered: the broker (or client) lied. Invalid.
- *phantom*: a delivery whose identity no send carries: the broker invented or corrupted a
  message, or another run's traffic leaked in. Invalid.

An identity sent more than once counts with its best outcome (ok, then unknown, then fail).

With nothing to look at (no send for unknown-outcome; nothing received for the other two) the
verdict is unknown, not a vacuous pass.
"""

import numpy as np

from harness.checkers.columns import Outcome
from harness.checkers.index import HistoryIndex
from harness.checkers.verdict import MAX_EXAMPLES, NOTHING_RECEIVED, NOTHING_SENT, Verdict

UNKNOWN_OUTCOME = "unknown-outcome"
FAILED_BUT_DELIVERED = "failed-but-delivered"
PHANTOM = "phantom"


def check_unknown_outcomes(history: HistoryIndex) -> Verdict:
    """Split the unknown-outcome sends into delivered and not delivered (informational)."""
    unknown = history.send_key_outcome == Outcome.UNKNOWN
    delivered = int((unknown & history.send_received).sum())
    total = int(unknown.sum())
    counts = {"unknown": total, "delivered": delivered, "not_delivered": total - delivered}
    return unknown_outcomes_verdict(counts, history.sends.num_rows)


def unknown_outcomes_verdict(counts: dict[str, int], sends: int) -> Verdict:
    """The verdict from ``check_unknown_outcomes``' counts over ``sends`` send rows."""
    if not sends:
        return Verdict(UNKNOWN_OUTCOME, None, counts, notes=NOTHING_SENT)
    notes = (
        f"{counts['unknown']} sends completed unknown: {counts['delivered']} delivered, "
        f"{counts['not_delivered']} not (both are legal)"
    )
    return Verdict(UNKNOWN_OUTCOME, True, counts, notes=notes)


def check_failed_but_delivered(history: HistoryIndex) -> Verdict:
    """Sends that definitely failed, yet were delivered."""
    failed = history.send_key_outcome == Outcome.FAIL
    offending = np.flatnonzero(failed & history.send_received)
    counts = {"failed": int(failed.sum()), "failed_but_delivered": int(offending.size)}
    examples: list[dict[str, object]] = []
    picked = offending[:MAX_EXAMPLES]
    if picked.size:
        at = np.searchsorted(history.receive_keys, history.send_keys[picked])
        receives = history.receive_records(history.first_delivery[at])
        for send, receive in zip(
            history.send_records(history.send_rows[picked]), receives, strict=True
        ):
            examples.append(
                {
                    "kind": FAILED_BUT_DELIVERED,
                    **send,
                    "consumer_id": receive["consumer_id"],
                    "receive_ns": receive["receive_ns"],
                }
            )
    return failed_but_delivered_verdict(counts, examples, history.receives.num_rows)


def failed_but_delivered_verdict(
    counts: dict[str, int], examples: list[dict[str, object]], receives: int
) -> Verdict:
    """The verdict from ``check_failed_but_delivered``'s counts over ``receives`` rows."""
    if not receives:
        return Verdict(FAILED_BUT_DELIVERED, None, counts, notes=NOTHING_RECEIVED)
    offending = counts["failed_but_delivered"]
    notes = f"{offending} of {counts['failed']} failed sends were delivered"
    return Verdict(FAILED_BUT_DELIVERED, not offending, counts, examples, notes)


def check_phantoms(history: HistoryIndex) -> Verdict:
    """Deliveries whose identity no send carries."""
    phantom = ~history.receive_sent
    counts = {
        "phantom": int(phantom.sum()),
        "phantom_deliveries": int(history.receive_counts[phantom].sum()),
    }
    picked = np.flatnonzero(phantom)[:MAX_EXAMPLES]
    examples: list[dict[str, object]] = [
        {"kind": PHANTOM, **record}
        for record in history.receive_records(history.first_delivery[picked])
    ]
    return phantoms_verdict(counts, examples, history.receives.num_rows)


def phantoms_verdict(
    counts: dict[str, int], examples: list[dict[str, object]], receives: int
) -> Verdict:
    """The verdict from ``check_phantoms``' counts over ``receives`` rows."""
    if not receives:
        return Verdict(PHANTOM, None, counts, notes=NOTHING_RECEIVED)
    notes = f"{counts['phantom']} received identities were never sent"
    return Verdict(PHANTOM, not counts["phantom"], counts, examples, notes)
