"""Lost messages: acknowledged to the producer, never delivered.

A send whose outcome is ok is a promise by the broker: the message is in the log (queue) and
will be delivered. ``check_lost`` runs after the faults healed and the consumers drained, so
every ok send should have been delivered at least once (to any consumer, acked or not).

Kafka (the ack carried a partition and offset) lets us say more, as Jepsen's Kafka checker does:

- *lost-write*: a later offset of the same partition was read, this one never. Consumers read a
  partition in offset order, so the broker must have dropped (or skipped) it: invalid.
- *unseen*: nothing at or after its offset in that partition was read. The message may be lost,
  or merely not consumed yet (a stalled consumer, a too-short drain): unknown, not invalid.

Elsewhere (SQS, Pub/Sub, or a Kafka ack without an offset) no position tells lost from late,
so any ok send never delivered after the drain counts as *lost*: invalid.

``valid``: None if no send was acknowledged (nothing to judge); False if any lost-write or
lost; else None if any unseen; else True.
"""

import numpy as np

from harness.checkers.columns import Outcome
from harness.checkers.index import I64, HistoryIndex, column, column_at
from harness.checkers.verdict import MAX_EXAMPLES, NOTHING_ACKNOWLEDGED, Verdict

NAME = "lost"
EXAMPLE_KINDS = ("lost-write", "unseen", "lost")
"""The kinds of ``check_lost``'s examples, in the order it lists them."""


def highest_offsets(partition: I64, offset: I64, best: I64 | None = None) -> I64:
    """The highest offset delivered from each Kafka partition (-1: none), indexed by partition:
    ``best`` (from earlier receives, or nothing) raised by these receives' ``partition`` and
    ``offset`` (negative: not Kafka, ignored)."""
    kafka = (partition >= 0) & (offset >= 0)
    if not kafka.all():
        partition, offset = partition[kafka], offset[kafka]
    found = np.zeros(0, dtype=np.int64) if best is None else best
    size = int(partition.max(initial=-1)) + 1
    if size > found.size:
        found = np.concatenate([found, np.full(size - found.size, -1, dtype=np.int64)])
    np.maximum.at(found, partition, offset)
    return found


def _offsets_read(history: HistoryIndex) -> I64:
    return highest_offsets(
        column(history.receives, "partition", np.int64),
        column(history.receives, "offset", np.int64),
    )


def check_lost(history: HistoryIndex, read_up_to: I64 | None = None) -> Verdict:
    """Ok sends never delivered: lost-write, unseen (Kafka) or lost (elsewhere).
    ``read_up_to``: the highest offset read per partition (``highest_offsets``), when the
    receives of other keys are not in ``history`` (a history checked range by range); by
    default the history's own receives'."""
    acked = history.send_key_outcome == Outcome.OK
    lost_rows = history.send_rows[acked & ~history.send_received]
    counts = {
        "acked": int(acked.sum()),
        "lost": int(lost_rows.size),
        "lost_write": 0,
        "unseen": 0,
        "lost_unpositioned": 0,
    }
    if not lost_rows.size:
        return lost_verdict(counts, [])

    partition = column_at(history.sends, "partition", lost_rows, np.int32).astype(np.int64)
    offset = column_at(history.sends, "offset", lost_rows, np.int64)
    positioned = (partition >= 0) & (offset >= 0)
    read = np.full(lost_rows.size, -1, dtype=np.int64)
    if positioned.any():
        highest = _offsets_read(history) if read_up_to is None else read_up_to
        known = positioned & (partition < highest.size)
        read[known] = highest[partition[known]]
    lost_write = positioned & (offset < read)
    unseen = positioned & ~lost_write
    masks = (lost_write, unseen, ~positioned)
    counts["lost_write"] = int(lost_write.sum())
    counts["unseen"] = int(unseen.sum())
    counts["lost_unpositioned"] = int((~positioned).sum())

    examples: list[dict[str, object]] = []
    for kind, mask in zip(EXAMPLE_KINDS, masks, strict=True):
        picked = np.flatnonzero(mask)[:MAX_EXAMPLES]
        for at, record in zip(picked, history.send_records(lost_rows[picked]), strict=True):
            example: dict[str, object] = {"kind": kind, **record}
            if kind != "lost":
                example["max_offset_read"] = int(read[at])
            examples.append(example)
    return lost_verdict(counts, examples)


def lost_verdict(counts: dict[str, int], examples: list[dict[str, object]]) -> Verdict:
    """The verdict from ``check_lost``'s counts (of one history, or summed over identity
    ranges) and its examples: the one place its rule is written."""
    if not counts["acked"]:
        return Verdict(NAME, None, counts, notes=NOTHING_ACKNOWLEDGED)
    if not counts["lost"]:
        return Verdict(NAME, True, counts, notes="every acknowledged send was delivered")
    valid: bool | None = False if counts["lost_write"] or counts["lost_unpositioned"] else None
    notes = (
        f"{counts['lost']} of {counts['acked']} acknowledged sends never delivered: "
        f"{counts['lost_write']} lost-write (a later offset of the partition was read), "
        f"{counts['unseen']} unseen (nothing after them was read: lost or late), "
        f"{counts['lost_unpositioned']} without a partition offset (lost)"
    )
    return Verdict(NAME, valid, counts, examples, notes)
