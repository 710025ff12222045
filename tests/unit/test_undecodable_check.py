"""The ``undecodable`` check on hand-made event tables (no broker, no registry)."""

import json

import pyarrow as pa  # type: ignore[import-untyped]

from harness.checkers.undecodable import check_undecodable
from harness.history.schema import EVENTS, EventKind

WRITTEN = {"producer_id": 0, "written": {"v1": 10, "bypass": 2}, "schema_ids": {"v1": 7}}


def events(*rows: tuple[EventKind, str, dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "time_ns": 1_000 + i,
                "kind": str(k),
                "name": n,
                "target": None,
                "detail": json.dumps(d),
            }
            for i, (k, n, d) in enumerate(rows)
        ],
        schema=EVENTS,
    )


def message(seq: int) -> dict[str, object]:
    return {"producer_id": 0, "key_id": 1, "seq": seq, "partition": 0, "offset": seq}


def test_a_run_without_schema_bodies_has_no_such_check() -> None:
    assert check_undecodable(events((EventKind.RUN_START, "run", {}))) is None


def test_undecodable_messages_all_dead_lettered_are_valid_and_counted() -> None:
    verdict = check_undecodable(
        events(
            (EventKind.SCHEMA_WRITTEN, "schema", WRITTEN),
            (EventKind.SCHEMA_READ, "schema", {"reader": "v2", "decoded": {"7": 10}}),
            (EventKind.UNDECODABLE, "not-wire-format", message(1)),
            (EventKind.UNDECODABLE, "not-wire-format", message(2)),
            (EventKind.DEAD_LETTERED, "dead-letter", message(1)),
            (EventKind.DEAD_LETTERED, "dead-letter", message(2)),
        )
    )
    assert verdict is not None and verdict.valid is True
    assert verdict.counts["undecodable_not_wire_format"] == verdict.counts["dead_lettered"] == 2
    assert verdict.counts["decoded_v2_reader_of_v1"] == 10


def test_an_undecodable_message_missing_from_the_dead_letters_is_invalid() -> None:
    verdict = check_undecodable(
        events(
            (EventKind.SCHEMA_WRITTEN, "schema", WRITTEN),
            (EventKind.UNDECODABLE, "not-wire-format", message(1)),
        )
    )
    assert verdict is not None and verdict.valid is False
    assert verdict.counts["undecodable_not_dead_lettered"] == 1
    assert verdict.examples[0]["kind"] == "not-dead-lettered"


def test_a_registered_schemas_body_no_reader_can_read_is_invalid_even_dead_lettered() -> None:
    verdict = check_undecodable(
        events(
            (EventKind.SCHEMA_WRITTEN, "schema", WRITTEN),
            (EventKind.UNDECODABLE, "unreadable-body", message(3)),
            (EventKind.DEAD_LETTERED, "dead-letter", message(3)),
        )
    )
    assert verdict is not None and verdict.valid is False
    assert verdict.counts["registered_but_unreadable"] == 1


def test_a_dead_letter_no_consumer_found_undecodable_is_invalid() -> None:
    verdict = check_undecodable(
        events(
            (EventKind.SCHEMA_WRITTEN, "schema", WRITTEN),
            (EventKind.DEAD_LETTERED, "dead-letter", message(4)),
        )
    )
    assert verdict is not None and verdict.valid is False
    assert verdict.counts["dead_lettered_decodable"] == 1
