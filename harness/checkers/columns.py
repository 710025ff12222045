"""Column names and codes of the history tables the checkers read.

A local copy of ``docs/history.md`` (schema version 1), kept here so the checkers depend on the
documented format only, not on the recorder's code. Only the columns a checker reads are listed;
extra columns are ignored.
"""

from enum import IntEnum

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

SEND_COLUMNS = ("producer_id", "key_id", "seq", "complete_ns", "outcome", "partition", "offset")
RECEIVE_COLUMNS = (
    "consumer_id",
    "producer_id",
    "key_id",
    "seq",
    "receive_ns",
    "partition",
    "offset",
    "message_id",
    "disposition",
    "scope",
)
EVENT_COLUMNS = ("time_ns", "kind")
LAG_COLUMNS = ("time_ns", "backlog", "source")

LAG_SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("backlog", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
)
"""The lag samples table, as ``harness/collectors/lag.py`` writes it (``error`` is optional)."""


class Outcome(IntEnum):
    """``sends.outcome``."""

    OK = 0
    FAIL = 1
    UNKNOWN = 2


class Disposition(IntEnum):
    """``receives.disposition``."""

    ACKED = 0
    NACKED = 1
    NONE = 2


FAULT_START = "fault-start"
FAULT_END = "fault-end"
WARMUP_END = "warmup-end"


def require_columns(table: pa.Table, names: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError`` naming the columns ``table`` lacks."""
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {', '.join(missing)} (docs/history.md)")
