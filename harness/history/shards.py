"""History shards: each process appends each table to its own Arrow IPC stream files.

``RUN_DIR/history/shards/<table>-<process_label>+<part>.arrow`` holds a schema message, then
one zstd-compressed record batch per flush. A stream (unlike the IPC *file* format) needs no
footer, so a process that crashes leaves a file readable up to its last complete batch:
``read_shard`` returns those batches and drops the torn tail.

A process's table is written in *parts* (``+000000``, ``+000001``, ...): once a part holds
``PART_BYTES`` (or ``$BROKERBENCH_SHARD_PART_BYTES``, for tests) it is closed and the next one
begins, so an hour-long run leaves files of a bounded size rather than one huge file per
process. Each part is a complete stream of its own; only the last one of a killed process can be
torn. ``+`` sorts before every character a label may hold, so a plain sort of the names keeps
each process's parts together and in order (``producer-1``'s before ``producer-10``'s).
Shards written before parts existed (``<table>-<process_label>.arrow``) are still found.
"""

import array
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa  # type: ignore[import-untyped]

from harness.errors import UserError

BATCH_ROWS = 65_536
"""Rows per record batch; also the most a crashed process loses per table."""
FLUSH_SECONDS = 2.0
"""A batch is also written once it is this old, so a crash at a low rate loses little."""
PART_BYTES = 256 * 1024 * 1024
"""A process's shard of a table moves on to a new part file once its part holds this much."""
PART_BYTES_ENV = "BROKERBENCH_SHARD_PART_BYTES"
"""Overrides ``PART_BYTES`` (whole bytes), e.g. to force rotation in a short test run; the load
processes inherit it from the orchestrator."""
PART_DIGITS = 6

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


def shard_path(run_dir: Path, table: str, process_label: str, part: int = 0) -> Path:
    """Where the process labelled ``process_label`` writes part ``part`` of ``table``; labels
    must be unique within a run and may hold letters, digits, ``_``, ``.`` and ``-``."""
    if not _LABEL.fullmatch(process_label):
        raise ValueError(f"process label {process_label!r}: use letters, digits, '_', '.', '-'")
    if part < 0:
        raise ValueError(f"part {part}: parts count from 0")
    return shards_dir(run_dir) / f"{table}-{process_label}+{part:0{PART_DIGITS}d}.arrow"


def shard_paths(run_dir: Path, table: str) -> list[Path]:
    """Every shard file of ``table`` in the run (every part of every process), in a stable
    order: by process, then part."""
    return sorted(shards_dir(run_dir).glob(f"{table}-*.arrow"))


def process_shard_paths(run_dir: Path, table: str, process_label: str) -> list[Path]:
    """Every part of one process's shard of ``table``, in order (a shard written before parts
    existed first)."""
    shard_path(run_dir, table, process_label)  # checks the label: no glob character in it
    unrotated = shards_dir(run_dir) / f"{table}-{process_label}.arrow"
    parts = sorted(
        shards_dir(run_dir).glob(f"{table}-{process_label}+{'[0-9]' * PART_DIGITS}.arrow")
    )
    return [unrotated] * unrotated.exists() + parts


def configured_part_bytes() -> int:
    """``PART_BYTES``, or ``$BROKERBENCH_SHARD_PART_BYTES`` when set."""
    raw = os.environ.get(PART_BYTES_ENV, "").strip()
    if not raw:
        return PART_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{PART_BYTES_ENV}={raw!r}: give a whole number of bytes, at least 1")
    return value


_Buffer: TypeAlias = "array.array[int] | list[Any]"


class ShardWriter:
    """Appends rows of one table to one shard: a file, or a sequence of part files.

    ``append`` adds one row's Python values to per-column buffers; ``append_columns`` adds many
    rows at once as arrays (the load generators' batched hot path). Every ``batch_rows`` rows or
    ``FLUSH_SECONDS``, and on ``flush``/``close``, what is buffered becomes one record batch
    written to the file, so memory stays bounded however long the run. Thread-safe. A file is
    created when it is begun and must not exist yet: two processes with the same label would
    otherwise overwrite each other's history.

    With ``part_path`` (part number -> path; ``path`` is part 0) the shard rotates: once the
    current part holds ``part_bytes`` after a batch, or when ``rotate`` is called, that part's
    stream is ended and the file closed; the next batch begins the next part (so no part is
    left empty but a first one with no row at all). ``paths`` lists the parts begun.
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        *,
        batch_rows: int = BATCH_ROWS,
        part_path: Callable[[int], Path] | None = None,
        part_bytes: int = PART_BYTES,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        if part_bytes < 1:
            raise ValueError("part_bytes must be at least 1")
        self._schema = schema
        self._batch_rows = batch_rows
        self._part_path = part_path
        self._part_bytes = part_bytes
        self._typecodes = [
            _TYPECODES.get(field.type) if not field.nullable else None for field in schema
        ]
        self._lock = threading.Lock()
        self._closed = False
        self.paths: list[Path] = []
        self._begin_part(path)
        self._rows = 0
        self._chunks: list[pa.RecordBatch] = []
        self._chunk_rows = 0
        self._flush_due = time.monotonic() + FLUSH_SECONDS
        self._buffers: list[_Buffer] = []
        self._appends: list[Callable[[Any], None]] = []
        self._new_buffers()

    @classmethod
    def for_process(
        cls,
        run_dir: Path,
        table: str,
        process_label: str,
        schema: pa.Schema,
        *,
        batch_rows: int = BATCH_ROWS,
        part_bytes: int | None = None,
    ) -> "ShardWriter":
        """The rotating shard of ``table`` for one process (``shard_path``'s part names);
        ``part_bytes`` defaults to ``configured_part_bytes()``."""
        part_path = functools.partial(shard_path, run_dir, table, process_label)
        return cls(
            part_path(0),
            schema,
            batch_rows=batch_rows,
            part_path=part_path,
            part_bytes=configured_part_bytes() if part_bytes is None else part_bytes,
        )

    @property
    def path(self) -> Path:
        """The part being written."""
        return self.paths[-1]

    def _begin_part(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        sink = pa.OSFile(str(path), "wb")
        try:
            self._writer = pa.ipc.new_stream(sink, self._schema, options=_IPC_OPTIONS)
        except BaseException:
            sink.close()
            raise
        self._sink = sink
        self._part_open = True
        self._part_has_batches = False
        self.paths.append(path)

    def _end_part(self) -> None:
        if not self._part_open:
            return
        self._part_open = False
        try:
            self._writer.close()
        finally:
            self._sink.close()

    def rotate(self) -> None:
        """Write what is buffered and end the current part (nothing when it holds no batch):
        its file is complete from now on. Only for a shard with ``part_path``."""
        if self._part_path is None:
            raise RuntimeError(f"{self.path}: this shard writer has no parts")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path}: the shard writer is closed")
            self._write_batch()
            if self._part_has_batches:
                self._end_part()

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
            finally:
                self._closed = True
                self._end_part()

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
            if not self._part_open:
                assert self._part_path is not None  # only a rotating shard ends a part early
                self._begin_part(self._part_path(len(self.paths)))
            table = pa.Table.from_batches(self._chunks, schema=self._schema).combine_chunks()
            for batch in table.to_batches():
                self._writer.write_batch(batch)
            self._part_has_batches = True
            self._chunks = []
            self._chunk_rows = 0
            if self._part_path is not None and self._sink.tell() >= self._part_bytes:
                self._end_part()
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
