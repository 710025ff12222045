"""Reading a stored table only when it can be trusted: the history's Parquet files (and the
run's other Parquet files, such as ``lag.parquet``) are checked before any checker sees them.

A checker fed a column of nulls, or a table read from a missing file as empty, would report
made-up anomalies (or none) with full confidence. So a table is refused, with a one-line
``UserError`` naming the file and the fix, when

- the file is missing, unreadable, truncated or not Parquet at all;
- its ``brokerbench.history.version`` metadata is absent or not the version this code reads
  (history files only);
- a column of the expected schema is missing, or holds a type that cannot stand for it (any
  integer width fits an integer column as long as every value does; string, large string and
  dictionary-of-string fit each other);
- a column the schema declares non-nullable holds a null.

Columns the schema does not know are dropped; the table comes back in exactly the expected
schema (column order, types, metadata).
"""

from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from harness.errors import UserError
from harness.history.schema import ADDED_LATER, VERSION, VERSION_KEY

DAMAGED_FIX = "restore the run folder from a copy, or run it again"
"""What a user can do about a damaged or incomplete run folder."""

_READ_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)
"""What pyarrow raises on a file that is not (or no longer) valid Parquet."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UntrustedTableError(UserError):
    """A stored table that cannot be trusted (see the module docstring)."""


def _string_like(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_))


def _fits(found: pa.DataType, expected: pa.DataType) -> bool:
    if found.equals(expected):
        return True
    if pa.types.is_integer(expected):
        return bool(pa.types.is_integer(found))
    if _string_like(expected):
        return _string_like(found)
    return False


def conform(table: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """``table`` as exactly ``schema``, or an ``UntrustedTableError`` naming ``source`` (the file
    it came from) and the first column that does not fit."""
    columns = []
    for field in schema:
        if field.name not in table.column_names and ADDED_LATER in (field.metadata or {}):
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        if field.name not in table.column_names:
            raise UntrustedTableError(f"{source}: column {field.name!r} is missing: {DAMAGED_FIX}")
        column = table.column(field.name)
        if not _fits(column.type, field.type):
            raise UntrustedTableError(
                f"{source}: column {field.name!r} holds {column.type}, not {field.type}: "
                f"{DAMAGED_FIX}"
            )
        if not field.nullable and column.null_count:
            raise UntrustedTableError(
                f"{source}: column {field.name!r} has {column.null_count} empty (null) value(s) "
                f"where every row needs one: {DAMAGED_FIX}"
            )
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except _READ_ERRORS as exc:
                raise UntrustedTableError(
                    f"{source}: column {field.name!r} has values that do not fit "
                    f"{field.type}: {DAMAGED_FIX}"
                ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def read_parquet(path: Path, schema: pa.Schema, *, versioned: bool) -> pa.Table:
    """The Parquet file at ``path`` as exactly ``schema``; ``versioned``: it must carry the
    history's version metadata (the history tables do, ``lag.parquet`` does not)."""
    if not path.is_file():
        raise UntrustedTableError(f"{path}: missing: {DAMAGED_FIX}")
    try:
        table = pq.read_table(path)
    except _READ_ERRORS as exc:
        reason = _first_line(exc).split(f"'{path}': ", 1)[-1]  # the path is said once
        raise UntrustedTableError(
            f"{path}: unreadable, truncated or not Parquet ({reason}): {DAMAGED_FIX}"
        ) from exc
    if versioned:
        check_version(table.schema.metadata, str(path))
    return conform(table, schema, str(path))


def check_version(metadata: dict[bytes, bytes] | None, source: str) -> None:
    """Refuse a history table without this code's ``brokerbench.history.version``."""
    found = (metadata or {}).get(VERSION_KEY)
    if found is None:
        raise UntrustedTableError(
            f"{source}: no {VERSION_KEY.decode()} metadata, so not a brokerbench history as "
            f"written (rewritten by another tool?): {DAMAGED_FIX}"
        )
    text = found.decode(errors="replace")
    if text != str(VERSION):
        newer = text.isdigit() and int(text) > VERSION
        fix = "analyze it with the brokerbench version that wrote it" if newer else DAMAGED_FIX
        raise UntrustedTableError(
            f"{source}: history version {text!r}, this brokerbench reads version {VERSION}: {fix}"
        )
