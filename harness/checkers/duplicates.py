"""Duplicate deliveries: one message identity ``(producer_id, key_id, seq)`` delivered twice or
more, classified by cause (the Pub/Sub ordering prober's taxonomy):

- *redelivery*: the same broker message delivered again (same Kafka partition and offset, or
  same SQS/Pub/Sub message id): a visibility timeout or ack deadline expired, a nack, a
  consumer that restarted before committing, an ack the broker refused (``failed_acks``).
- *duplicate publish*: the same identity in a different broker message (another offset or
  message id): it was written twice. By who, from the ``sends`` table:
  - *by the client* (``duplicate_publish_by_client``): the harness sent it once (one row in
    ``sends``) and it sits at two broker positions: the client library retried a request
    whose answer was lost (librdkafka without the idempotent producer, botocore's retries);
  - *after a resend* (``duplicate_publish_after_resend``): the workload itself sent it again
    (a flow's outbox does when a send's outcome was not ok), and both copies arrived.
  ``duplicate_publish_after_unknown`` counts, across both, those whose send's outcome was
  unknown.
- *unclassified*: a repeated delivery whose broker message is unknown (no offset, no id).

For an identity delivered ``n`` times as ``m`` distinct known broker messages,
``duplicate_publish = m - 1`` and ``redelivery = known deliveries - m``; the rest of the
``n - 1`` extra deliveries are unclassified.

``valid`` is None if nothing was received (nothing to judge); otherwise it follows the run's
declared delivery semantics:

- at-least-once (the default): True. The contract allows every class of duplicate; they are
  counted (and the report shows them, ``unrequested`` in all) but never make the run invalid.
- exactly-once: False if any extra delivery is not ``redelivery_after_nack`` (one that follows
  a nack of the same message: the consumer asked for it), else True.

``unrequested`` (extra deliveries not asked for by a nack) is the number exactly-once fails on
and the one the report shows beside a verdict ("pass · 18 dup"). ``failed_acks`` counts the
acks the consumers' drivers gave up on (``ack-failed`` events in the history): each such
message is delivered again, so it explains that many redeliveries.
"""

import contextlib
import json

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from harness.checkers.columns import Disposition, Outcome
from harness.checkers.identity import U64
from harness.checkers.index import I64, HistoryIndex, column_at, run_starts
from harness.checkers.verdict import MAX_EXAMPLES, NOTHING_RECEIVED, Verdict
from harness.history.schema import EventKind

NAME = "duplicates"
EXAMPLE_KINDS = ("duplicate-publish-by-client", "duplicate-publish", "redelivery", "unclassified")
"""The kinds of ``check_duplicates``' examples, in the order it lists them."""
_DELIVERY_FIELDS = (
    "consumer_id",
    "receive_ns",
    "partition",
    "offset",
    "message_id",
    "delivery_attempt",
    "disposition",
)


def _message_id_codes(history: HistoryIndex, rows: I64) -> npt.NDArray[np.int64]:
    """Codes for the broker message ids of ``rows`` (equal ids, equal codes; -1 for null)."""
    ids = history.receives.select(["message_id"]).take(pa.array(rows)).column(0)
    if not pa.types.is_string(ids.type):
        ids = ids.cast(pa.string())
    ids = ids.combine_chunks()
    codes = pc.fill_null(pc.dictionary_encode(ids).indices, -1)
    return np.asarray(codes.to_numpy(), dtype=np.int64)


_NEVER_SENT = 255


def _classify(history: HistoryIndex, rows: I64, local: I64, sizes: I64) -> tuple[I64, I64, I64]:
    """Per repeated identity (``local`` numbers each row's identity): its duplicate publishes,
    redeliveries and unclassified extra deliveries."""
    partition = column_at(history.receives, "partition", rows, np.int64)
    offset = column_at(history.receives, "offset", rows, np.int64)
    message = _message_id_codes(history, rows)
    kafka = (partition >= 0) & (offset >= 0)
    known = kafka | (message >= 0)
    # A broker message is (0, partition, offset) on Kafka, (1, message id, 0) elsewhere.
    first = np.where(kafka, partition, np.where(known, message, 0))
    second = np.where(kafka, offset, 0)
    kind = np.where(kafka, 0, np.where(known, 1, 2))
    order = np.lexsort((second, first, kind, local))
    keys = np.stack([local[order], kind[order], first[order], second[order]])
    new_message = np.ones(rows.size, dtype=np.bool_)
    new_message[1:] = np.any(keys[:, 1:] != keys[:, :-1], axis=0)
    distinct = np.bincount(local[order][new_message & known[order]], minlength=sizes.size)
    known_deliveries = np.bincount(local[known], minlength=sizes.size)
    publish = np.maximum(distinct - 1, 0)
    redelivery = known_deliveries - distinct
    return publish, redelivery, sizes - 1 - publish - redelivery


def _requested(history: HistoryIndex, rows: I64, local: I64, sizes: I64) -> I64:
    """Per repeated identity: its deliveries that follow a nacked one (in time order). The
    consumer asked for those (a poison pill retried until dead-lettered, say); under
    exactly-once they are not the broker's duplicates."""
    disposition = column_at(history.receives, "disposition", rows, np.int64)
    order = np.lexsort((history.receive_time[rows], local))
    nacked_before = np.zeros(rows.size, dtype=np.bool_)
    same = local[order][1:] == local[order][:-1]
    nacked_before[1:] = same & (disposition[order][:-1] == Disposition.NACKED)
    return np.bincount(local[order][nacked_before], minlength=sizes.size)


def _sends_of(history: HistoryIndex, keys: U64) -> I64:
    """How many times each of the sorted ``keys`` was sent (0 for phantoms)."""
    sends = np.zeros(keys.size, dtype=np.int64)
    if history.send_keys.size:
        at = np.minimum(np.searchsorted(history.send_keys, keys), history.send_keys.size - 1)
        sent = history.send_keys[at] == keys
        sends[sent] = history.send_key_sends[at[sent]]
    return sends


def _send_outcomes(history: HistoryIndex, keys: U64) -> npt.NDArray[np.uint8]:
    """The send outcome of each of the sorted ``keys`` (``_NEVER_SENT`` for phantoms)."""
    outcome = np.full(keys.size, _NEVER_SENT, dtype=np.uint8)
    if history.send_keys.size:
        at = np.minimum(np.searchsorted(history.send_keys, keys), history.send_keys.size - 1)
        sent = history.send_keys[at] == keys
        outcome[sent] = history.send_key_outcome[at[sent]]
    return outcome


def check_duplicates(
    history: HistoryIndex, *, exactly_once: bool = False, failed_acks: int = 0
) -> Verdict:
    """Identities delivered more than once, as redelivery / duplicate publish (by the client,
    after a resend) / unclassified, judged by the run's semantics (``exactly_once``).
    ``failed_acks``: acks the consumers gave up on (``failed_acks_of`` the events)."""
    per_key = history.receive_counts
    repeated = np.flatnonzero(per_key > 1)
    sizes = per_key[repeated]
    counts = {
        "duplicated": int(repeated.size),
        "extra_deliveries": int((sizes - 1).sum()),
        "unrequested": 0,
        "redelivery": 0,
        "redelivery_after_nack": 0,
        "duplicate_publish": 0,
        "duplicate_publish_by_client": 0,
        "duplicate_publish_after_resend": 0,
        "duplicate_publish_after_unknown": 0,
        "unclassified": 0,
        "failed_acks": failed_acks,
    }
    receives = history.receives.num_rows
    if not receives or not repeated.size:
        return duplicates_verdict(counts, [], receives, exactly_once=exactly_once)

    # Every delivery of every repeated identity; `local` numbers those identities 0..k-1.
    rows = history.receive_order[np.repeat(per_key > 1, per_key)]
    local = np.repeat(np.arange(repeated.size, dtype=np.int64), sizes)
    publish, redelivery, unclassified = _classify(history, rows, local, sizes)
    outcome = _send_outcomes(history, history.receive_keys[repeated])
    sends = _sends_of(history, history.receive_keys[repeated])
    counts["redelivery"] = int(redelivery.sum())
    counts["redelivery_after_nack"] = int(_requested(history, rows, local, sizes).sum())
    counts["duplicate_publish"] = int(publish.sum())
    counts["duplicate_publish_by_client"] = int(publish[sends == 1].sum())
    counts["duplicate_publish_after_resend"] = int(publish[sends > 1].sum())
    counts["duplicate_publish_after_unknown"] = int(publish[outcome == Outcome.UNKNOWN].sum())
    counts["unclassified"] = int(unclassified.sum())
    counts["unrequested"] = counts["extra_deliveries"] - counts["redelivery_after_nack"]

    starts = run_starts(local)
    examples: list[dict[str, object]] = []
    per_kind = (np.where(sends == 1, publish, 0), np.where(sends == 1, 0, publish))
    for kind, per_identity in zip(
        EXAMPLE_KINDS, (*per_kind, redelivery, unclassified), strict=True
    ):
        for at in np.flatnonzero(per_identity)[:MAX_EXAMPLES].tolist():
            group = rows[starts[at] : starts[at] + sizes[at]]
            group = group[np.lexsort((group, history.receive_time[group]))][:MAX_EXAMPLES]
            deliveries = history.receive_records(group)
            sent = int(outcome[at])
            examples.append(
                {
                    "kind": kind,
                    "producer_id": deliveries[0]["producer_id"],
                    "key_id": deliveries[0]["key_id"],
                    "seq": deliveries[0]["seq"],
                    "deliveries": int(sizes[at]),
                    "sends": int(sends[at]),
                    "send_outcome": None if sent == _NEVER_SENT else Outcome(sent).name.lower(),
                    "first_deliveries": [
                        {name: record[name] for name in _DELIVERY_FIELDS} for record in deliveries
                    ],
                }
            )

    return duplicates_verdict(counts, examples, receives, exactly_once=exactly_once)


def duplicates_verdict(
    counts: dict[str, int],
    examples: list[dict[str, object]],
    receives: int,
    *,
    exactly_once: bool,
) -> Verdict:
    """The verdict from ``check_duplicates``' counts over ``receives`` rows (``failed_acks``
    among them: the run's, not a sum) under the run's semantics: the one place its rule is
    written."""
    semantics = "exactly-once" if exactly_once else "at-least-once"
    failed_acks = counts["failed_acks"]
    acks_note = (
        f"; {failed_acks} acks failed for good (those messages came again)" if failed_acks else ""
    )
    if not receives:
        return Verdict(NAME, None, counts, notes=NOTHING_RECEIVED)
    if not counts["duplicated"]:
        return Verdict(
            NAME, True, counts, notes=f"no message was delivered twice ({semantics}){acks_note}"
        )
    valid = counts["unrequested"] == 0 if exactly_once else True
    notes = (
        f"{counts['duplicated']} messages delivered more than once "
        f"({counts['extra_deliveries']} extra deliveries): "
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
    return Verdict(NAME, valid, counts, examples, notes)


def failed_acks_of(events: pa.Table) -> int:
    """The acks the consumers gave up on, from the history's ``ack-failed`` events (each
    ``detail``: ``{"count": n, ...}``)."""
    if events.num_rows == 0 or "kind" not in events.column_names:
        return 0
    found = events.filter(pc.equal(events["kind"], EventKind.ACK_FAILED.value))
    total = 0
    for detail in found["detail"].to_pylist():
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            total += int(json.loads(detail).get("count", 0))
    return total
