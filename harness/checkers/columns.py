"""The history columns the checkers read (``docs/history.md``, schema version 1); the codes
come from the history's own schema module. Extra columns are ignored."""

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from harness.collectors.lag import LAG_SCHEMA
from harness.history.schema import Disposition, EventKind
from harness.history.schema import SendOutcome as Outcome

__all__ = ["LAG_SCHEMA", "Disposition", "Outcome"]

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

FAULT_START = EventKind.FAULT_START.value
FAULT_END = EventKind.FAULT_END.value
WARMUP_END = EventKind.WARMUP_END.value


def require_columns(table: pa.Table, names: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError`` naming the columns ``table`` lacks."""
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {', '.join(missing)} (docs/history.md)")
