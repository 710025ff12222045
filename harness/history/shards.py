"""History shards: each process appends each table to its own Arrow IPC stream file.

``RUN_DIR/history/shards/<table>-<process_label>.arrow`` holds a schema message, then one
zstd-compressed record batch per flush. A stream (unlike the IPC *file* format) needs no footer,
so a process that crashes leaves a file readable up to its last complete batch: ``read_shard``
returns those batches and drops the torn tail.
"""

import array
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa  # type: ignore[import-untyped]

BATCH_ROWS = 65_536
"""Rows per record batch; also the most a crashed process loses per table."""
FLUSH_SECONDS = 2.0
"""A batch is also written once it is this old, so a crash at a low rate loses little."""

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
_LABEL = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
_log = logging.getLogger(__name__)

# Non-nullable integer columns are buffered in array.array (a machine integer per row, and the
# append checks the range); everything else in a list converted once per batch.
_TYPECODES = {
    pa.uint8(): "B",
    pa.int16(): "h",
    pa.int32(): "i",
    pa.uint32(): "I",
    pa.int64(): "q",
    pa.uint64(): "Q",
}
for _type, _code in _TYPECODES.items():
    if array.array(_code).itemsize * 8 != _type.bit_width:  # pragma: no cover - exotic ABI
        raise ImportError(f"array typecode {_code!r} does not match {_type} on this platform")


def shards_dir(run_dir: Path) -> Path:
    return run_dir / "history" / "shards"


def shard_path(run_dir: Path, table: str, process_label: str) -> Path:
    """Where the process labelled ``process_label`` writes ``table``; labels must be unique
    within a run and may hold letters, digits, ``_``, ``.`` and ``-``."""
    if not _LABEL.fullmatch(process_label):
        raise ValueError(f"process label {process_label!r}: use letters, digits, '_', '.', '-'")
    return shards_dir(run_dir) / f"{table}-{process_label}.arrow"


def shard_paths(run_dir: Path, table: str) -> list[Path]:
    """Every shard of ``table`` in the run, in a stable order."""
    return sorted(shards_dir(run_dir).glob(f"{table}-*.arrow"))


_Buffer: TypeAlias = "array.array[int] | list[Any]"


class ShardWriter:
    """Appends rows of one table to one shard file.

    ``append`` adds one row's Python values to per-column buffers; ``append_columns`` adds many
    rows at once as arrays (the load generators' batched hot path). Every ``batch_rows`` rows or
    ``FLUSH_SECONDS``, and on ``flush``/``close``, what is buffered becomes one record batch
    written to the file, so memory stays bounded however long the run. Thread-safe. The file
    is created at construction and must not exist yet: two processes with the same label would
    otherwise overwrite each other's history.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, batch_rows: int = BATCH_ROWS) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.path = path
        self._schema = schema
        self._batch_rows = batch_rows
        self._typecodes = [
            _TYPECODES.get(field.type) if not field.nullable else None for field in schema
        ]
        self._lock = threading.Lock()
        self._closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self._sink = pa.OSFile(str(path), "wb")
        try:
            self._writer = pa.ipc.new_stream(self._sink, schema, options=_IPC_OPTIONS)
        except BaseException:
            self._sink.close()
            raise
        self._rows = 0
        self._chunks: list[pa.RecordBatch] = []
        self._chunk_rows = 0
        self._flush_due = time.monotonic() + FLUSH_SECONDS
        self._buffers: list[_Buffer] = []
        self._appends: list[Callable[[Any], None]] = []
        self._new_buffers()

    def append(self, row: Sequence[object]) -> None:
        """Add one row, its values in schema order."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path}: the shard writer is closed")
            try:
                for append, value in zip(self._appends, row, strict=True):
                    append(value)
            except BaseException:
                # A rejected value must not leave the columns of different lengths.
                for buffer in self._buffers:
                    del buffer[self._rows :]
                raise
            self._rows += 1
            self._write_if_due()

    def append_columns(self, columns: Sequence[pa.Array | Sequence[object]]) -> None:
        """Add many rows at once: one array (numpy, Arrow, or a sequence) per column, in schema
        order, all of one length. Converted here, so a bad value fails in the caller."""
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(column, type=field.type)
                for field, column in zip(self._schema, columns, strict=True)
            ],
            schema=self._schema,
        )
        if batch.num_rows == 0:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path}: the shard writer is closed")
            self._rows_to_chunk()  # rows keep the order they were appended in
            self._chunks.append(batch)
            self._chunk_rows += batch.num_rows
            self._write_if_due()

    def _write_if_due(self) -> None:
        if self._rows + self._chunk_rows >= self._batch_rows or time.monotonic() >= self._flush_due:
            self._write_batch()

    def flush(self) -> None:
        """Write the buffered rows as one record batch (nothing if there are none)."""
        with self._lock:
            if not self._closed:
                self._write_batch()

    def close(self) -> None:
        """Flush, end the stream and close the file; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            try:
                self._write_batch()
                self._writer.close()
            finally:
                self._closed = True
                self._sink.close()

    def _new_buffers(self) -> None:
        # Fresh buffers rather than cleared ones: the previous batch may still reference the
        # old arrays' memory (py_buffer is zero-copy), and an exporting array cannot shrink.
        self._buffers = [array.array(code) if code else [] for code in self._typecodes]
        self._appends = [buffer.append for buffer in self._buffers]
        self._rows = 0

    def _rows_to_chunk(self) -> None:
        if self._rows:
            self._chunk_rows += self._rows
            self._chunks.append(self._rows_as_batch())
            self._new_buffers()

    def _write_batch(self) -> None:
        self._rows_to_chunk()
        if self._chunks:
            table = pa.Table.from_batches(self._chunks, schema=self._schema).combine_chunks()
            for batch in table.to_batches():
                self._writer.write_batch(batch)
            self._chunks = []
            self._chunk_rows = 0
        self._flush_due = time.monotonic() + FLUSH_SECONDS

    def _rows_as_batch(self) -> pa.RecordBatch:
        columns = [
            pa.Array.from_buffers(field.type, self._rows, [None, pa.py_buffer(buffer)])
            if code
            else pa.array(buffer, type=field.type)
            for field, code, buffer in zip(
                self._schema, self._typecodes, self._buffers, strict=True
            )
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)


def read_shard(path: Path) -> list[pa.RecordBatch]:
    """The complete record batches of a shard. A torn tail (the writer crashed mid-batch) is
    logged and dropped; an empty file, or one cut inside its schema message, has no batches."""
    batches: list[pa.RecordBatch] = []
    with pa.OSFile(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
            while True:
                batches.append(reader.read_next_batch())
        except StopIteration:
            pass
        except (pa.ArrowInvalid, OSError) as error:
            _log.warning(
                "%s: truncated shard, keeping its %d complete batches (%s)",
                path,
                len(batches),
                error,
            )
    return batches
