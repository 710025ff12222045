"""The saturation sampler: the raw material for saying whether the harness, not the broker,
was the limit of a run (pyperf's "the machine was too busy" check, per process).

Every second, on its own thread, it records with psutil:

- the machine's CPU: % of all cores busy (``psutil.cpu_times`` deltas, so no other caller of
  ``psutil.cpu_percent`` can disturb it);
- the CPU of each watched process, in % of one core (user + system time of all its threads
  over the second: a multi-threaded process can exceed 100): the orchestrator (this process),
  the run's load processes (they come and go: a replacement consumer is picked up the second
  it appears, one that exited is dropped), the local broker and toxiproxy (from the stack's
  pid files; a broker restarted by a fault is followed to its new pid);
- its own CPU (this thread's time; it is also part of the orchestrator's);
- the resident memory (RSS, ``memory_info().rss``: one read of ``/proc/<pid>/statm``) of each
  of those processes, from its first sample on (a soak's question: does a process's memory stay
  flat once it has warmed up?);
- what the load processes' progress lines (``on_line``) say about keeping up: ``late_ms_max``,
  ``late_ms_p99``, ``not_sent`` (producers), ``poll_gap_ms_max`` (consumers). A field a load
  process does not report is not recorded; a value that is not a number is ignored.

Samples go to ``saturation.parquet`` in the run folder (``SATURATION_SCHEMA``: one row per
second, subject and metric), written atomically when the sampler stops; ``harness.run.
saturation`` builds result.json's ``saturation`` section from it, at the run's end and again
in ``brokerbench analyze``.

A process seen for the first time is primed (no value that second) unless the run started it
(a load process, a broker restarted by a fault): then all its CPU since it started belongs to
that second. A process that
exits between two samples loses its last partial second; one that vanishes is dropped
without error.
"""

import array
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import psutil
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from harness.atomic import write_parquet_atomically
from harness.history.trusted import DAMAGED_FIX, UntrustedTableError

SATURATION_FILE = "saturation.parquet"
SATURATION_SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("interval_ns", pa.int64(), nullable=False),
        pa.field("subject", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("pid", pa.int64()),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
"""``time_ns``: the wall clock at the sample; the value covers ``interval_ns`` before it.
``subject``: ``machine``, ``sampler``, ``orchestrator``, a load process's label
(``producer-0``, ``consumer-1003``), ``broker:<service>``, ``proxy:toxiproxy``."""
METADATA_KEY = b"brokerbench.saturation"
"""Parquet metadata: ``{"cpu_count", "interval_s", "notes"}`` (JSON)."""

Role = Literal["machine", "sampler", "orchestrator", "producer", "consumer", "broker", "proxy"]
HARNESS_ROLES = ("orchestrator", "producer", "consumer", "proxy")
"""The roles whose CPU is the harness's cost (the sampler is inside the orchestrator)."""
CPU_PERCENT = "cpu_percent"
"""Machine: % of all cores busy. Processes: % of one core."""
RSS_BYTES = "rss_bytes"
"""A process's resident memory at the sample (not over the interval); files written before
it existed have no such rows."""
LATE_MS_MAX, LATE_MS_P99, NOT_SENT, POLL_GAP_MS_MAX = (
    "late_ms_max",
    "late_ms_p99",
    "not_sent",
    "poll_gap_ms_max",
)
PROGRESS_FOLDS: dict[str, Callable[[float, float], float]] = {
    LATE_MS_MAX: max,
    LATE_MS_P99: max,  # the worst second's p99 bounds the p99 of the lines folded together
    POLL_GAP_MS_MAX: max,
    NOT_SENT: lambda _earlier, latest: latest,  # a running count: the latest line's
}
"""Progress-line fields recorded, and how two lines of one second combine."""


class Sample(NamedTuple):
    time_ns: int
    interval_ns: int
    subject: str
    role: str
    pid: int | None
    metric: str
    value: float


class _SampleColumns:
    """The samples kept until the sampler stops, as machine-typed columns: about 40 bytes a
    row where a ``Sample`` tuple takes some 200, so that the samples of an hour-long run (70,000
    rows and more) do not show as the orchestrator's own memory growth."""

    _NO_PID = -1

    def __init__(self) -> None:
        self._integers = [array.array("q") for _ in range(3)]  # time_ns, interval_ns, pid
        self._values = array.array("d")
        self._names = [array.array("I") for _ in range(3)]  # subject, role, metric
        self._codes: dict[str, int] = {}
        self._strings: list[str] = []

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self._strings)
            self._strings.append(name)
        return code

    def extend(self, rows: Iterable[Sample]) -> None:
        times, intervals, pids = self._integers
        subjects, roles, metrics = self._names
        for row in rows:
            times.append(row.time_ns)
            intervals.append(row.interval_ns)
            pids.append(self._NO_PID if row.pid is None else row.pid)
            subjects.append(self._code(row.subject))
            roles.append(self._code(row.role))
            metrics.append(self._code(row.metric))
            self._values.append(row.value)

    def rows(self) -> list[Sample]:
        strings = self._strings
        return [
            Sample(t, i, strings[s], strings[r], None if p == self._NO_PID else p, strings[m], v)
            for t, i, p, s, r, m, v in zip(*self._integers, *self._names, self._values, strict=True)
        ]


@dataclass(frozen=True)
class Watched:
    """A process to sample this second."""

    subject: str
    role: Role
    pid: int
    started_during_run: bool = True
    """All its CPU time was spent during the run (a load process): counted from its start;
    otherwise (the orchestrator, a broker already running) its first sample only primes."""


@dataclass(frozen=True)
class WatchedService:
    """A stack service whose pid file (``harness/stack/processes.py``) names its process."""

    subject: str
    role: Role
    directory: Path


@dataclass
class _Cpu:
    process: psutil.Process
    used_s: float
    """User + system seconds at the previous sample."""


class _Reading(NamedTuple):
    used_s: float
    """CPU seconds now."""
    before_s: float | None
    """At the previous sample; None when primed now."""
    rss_bytes: int


def role_of(label: str) -> Role:
    """A load process's role from its label (``producer-0``; flow services are consumers)."""
    return "producer" if label.startswith("producer") else "consumer"


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds of the machine, as psutil's ``cpu_percent`` counts them
    (guest time is already in user time on Linux; idle and iowait are not busy)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class SaturationSampler:
    """A daemon thread sampling CPU every ``interval`` seconds from ``start()`` to ``stop()``,
    then writing ``run_dir / SATURATION_FILE`` (when ``run_dir`` is given).

    ``processes`` lists the run's load processes at each sample (they change during a run);
    ``services`` are followed through their pid files; ``notes`` say what is not sampled and
    why (e.g. an external broker). Feed progress lines to ``on_line``.
    """

    def __init__(
        self,
        run_dir: Path | None,
        *,
        processes: Callable[[], Iterable[Watched]] = list,
        services: Iterable[WatchedService] = (),
        notes: Iterable[str] = (),
        interval: float = 1.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.run_dir = run_dir
        self.interval = interval
        self.notes = list(notes)
        self._processes = processes
        self._services = list(services)
        self.listeners: list[Callable[[list[Sample]], None]] = []
        """Called with each sample's rows, on the sampler's thread (e.g. live metrics); an
        error there is logged once and ignored."""
        self._listener_failed = False
        self._service_pids: dict[str, int] = {}
        """Each service's first pid: a later one is a restart."""
        self._samples = _SampleColumns()
        self._pending: dict[str, dict[str, float]] = {}
        self._roles: dict[str, Role] = {}
        self._lock = threading.Lock()
        self._tracked: dict[tuple[str, int], _Cpu] = {}
        self._gone: set[tuple[str, int]] = set()
        """Processes psutil could not read: never read again (their pid may be reused)."""
        self._failed = False
        self._machine: tuple[float, float] | None = None
        self._previous_ns: int | None = None
        self._thread_cpu_s = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saturation-sampler", daemon=True)

    # --- feeding ---------------------------------------------------------------------------

    def on_line(self, label: str, fields: Mapping[str, Any], *, role: Role | None = None) -> None:
        """Fold a load process's progress line into the current second (never raises: it is
        called from the thread that reads the process's output). ``role``: the process's
        (default: guessed from its label, ``role_of``)."""
        try:
            if role is not None:
                self._roles[label] = role
            found = {}
            for name in PROGRESS_FOLDS.keys() & fields.keys():
                value = fields[name]
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if number and math.isfinite(value):
                    found[name] = float(value)
            if not found:
                return
            with self._lock:
                pending = self._pending.setdefault(label, {})
                for name, value in found.items():
                    earlier = pending.get(name)
                    pending[name] = (
                        value if earlier is None else PROGRESS_FOLDS[name](earlier, value)
                    )
        except Exception:  # a malformed line must not stop the reader thread
            return

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Prime (here, so that every process started after this returns is counted from its
        start) and sample on the thread from then on."""
        self.sample_once()
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Take a last sample, stop the thread and write the samples to the run folder."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.run_dir is not None:
            path = self.run_dir / SATURATION_FILE
            try:
                self.write(path)
            except Exception as exc:  # called while a run ends: never hide the run's own error
                logging.getLogger(__name__).warning("could not write %s: %s", path, exc)

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return self._samples.rows()

    def _run(self) -> None:
        self._thread_cpu_s = time.thread_time()  # this thread's, from now on
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            next_tick += self.interval
            if next_tick <= now:
                next_tick += ((now - next_tick) // self.interval + 1) * self.interval
            self._stopping.wait(next_tick - now)
            try:
                self.sample_once()  # the last one when stopped (if not too short)
            except Exception as exc:  # best effort: the run goes on without it
                if not self._failed:
                    logging.getLogger(__name__).warning("saturation sample failed: %r", exc)
                self._failed = True

    # --- one sample ------------------------------------------------------------------------

    def sample_once(self) -> list[Sample]:
        """Sample now (the thread does this each second; the first call only primes)."""
        thread_cpu_s = time.thread_time()
        now_ns = time.time_ns()
        previous_ns = self._previous_ns
        if previous_ns is not None and now_ns - previous_ns < self.interval * 1e9 / 2:
            return []  # e.g. the last sample at stop(): too short to give a CPU share
        interval_ns = 0 if previous_ns is None else now_ns - previous_ns
        rows: list[Sample] = []

        def add(subject: str, role: str, pid: int | None, metric: str, value: float) -> None:
            rows.append(Sample(now_ns, interval_ns, subject, role, pid, metric, value))

        busy, total = _busy_and_total(psutil.cpu_times())
        if self._machine is not None and total > self._machine[1]:
            share = (busy - self._machine[0]) / (total - self._machine[1])
            add("machine", "machine", None, CPU_PERCENT, round(100 * share, 2))
        self._machine = (busy, total)

        seen: set[tuple[str, int]] = set()
        for watched in [*self._watched_services(), *self._safe_processes()]:
            key = (watched.subject, watched.pid)
            if key in self._gone:
                continue
            seen.add(key)
            reading = self._read(key, watched)
            if reading is None:
                continue
            if reading.before_s is not None and interval_ns > 0:
                percent = 100 * (reading.used_s - reading.before_s) / (interval_ns / 1e9)
                add(watched.subject, watched.role, watched.pid, CPU_PERCENT, round(percent, 2))
            if reading.rss_bytes > 0:  # 0: a process that exited, not reaped yet (a zombie)
                add(watched.subject, watched.role, watched.pid, RSS_BYTES, float(reading.rss_bytes))
        for key in self._tracked.keys() - seen:
            del self._tracked[key]

        with self._lock:
            pending, self._pending = self._pending, {}
        for label, metrics in pending.items():
            for metric, value in metrics.items():
                add(label, self._roles.get(label) or role_of(label), None, metric, value)

        if previous_ns is not None and interval_ns > 0:
            own = 100 * (thread_cpu_s - self._thread_cpu_s) / (interval_ns / 1e9)
            add("sampler", "sampler", os.getpid(), CPU_PERCENT, round(own, 3))
        self._thread_cpu_s = thread_cpu_s
        self._previous_ns = now_ns
        with self._lock:
            self._samples.extend(rows)
        self._notify(rows)
        return rows

    def _notify(self, rows: list[Sample]) -> None:
        for listener in self.listeners:
            try:
                listener(rows)
            except Exception as exc:  # a view of the samples must not stop them
                if not self._listener_failed:
                    logging.getLogger(__name__).warning("saturation listener failed: %r", exc)
                self._listener_failed = True

    def _read(self, key: tuple[str, int], watched: Watched) -> _Reading | None:
        """The process's CPU seconds and memory now; None when it is gone."""
        tracked = self._tracked.get(key)
        try:
            if tracked is None:
                process = psutil.Process(watched.pid)
                tracked = _Cpu(process, 0.0 if watched.started_during_run else math.nan)
                self._tracked[key] = tracked
            times = tracked.process.cpu_times()
            rss_bytes = tracked.process.memory_info().rss
        except psutil.Error:
            self._tracked.pop(key, None)
            self._gone.add(key)
            return None
        used_s = times.user + times.system
        before = None if math.isnan(tracked.used_s) else tracked.used_s
        tracked.used_s = used_s
        return _Reading(used_s, before, rss_bytes)

    def _safe_processes(self) -> list[Watched]:
        try:
            return list(self._processes())
        except Exception:  # e.g. the children changed while listed: next second
            return []

    def _watched_services(self) -> list[Watched]:
        from harness.stack import processes

        found = [Watched("orchestrator", "orchestrator", os.getpid(), started_during_run=False)]
        for service in self._services:
            record = processes.recorded(service.directory)
            if record is None:
                continue
            if (service.subject, record.pid) not in self._tracked and not processes.is_alive(
                record
            ):
                continue
            first_pid = self._service_pids.setdefault(service.subject, record.pid)
            restarted = record.pid != first_pid  # e.g. by a crash fault: a new process
            found.append(Watched(service.subject, service.role, record.pid, restarted))
        return found

    # --- output ----------------------------------------------------------------------------

    def all_notes(self) -> list[str]:
        unseen = [s.subject for s in self._services if s.subject not in self._service_pids]
        return self.notes + [
            f"{subject}: no running process found: not sampled" for subject in unseen
        ]

    def table(self) -> pa.Table:
        samples = self.samples
        columns = {name: [getattr(s, name) for s in samples] for name in SATURATION_SCHEMA.names}
        metadata = {
            "cpu_count": psutil.cpu_count() or 1,
            "interval_s": self.interval,
            "notes": self.all_notes(),
        }
        table = pa.table(columns, schema=SATURATION_SCHEMA)
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata)})

    def write(self, path: Path) -> None:
        write_parquet_atomically(path, self.table())


@dataclass(frozen=True)
class StoredSamples:
    table: pa.Table
    cpu_count: int
    interval_s: float
    notes: list[str]


def read_samples(path: Path) -> StoredSamples:
    """A stored ``saturation.parquet`` with its metadata; a damaged one is a one-line
    ``UserError`` naming it."""
    try:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        metadata: dict[str, Any] = json.loads(raw) if raw else {}
        if not isinstance(metadata, dict):
            raise ValueError(f"{METADATA_KEY.decode()} metadata is not a JSON object")
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UntrustedTableError(
            f"{path}: unreadable saturation samples ({reason}): {DAMAGED_FIX}"
        ) from exc
    return StoredSamples(
        table=table,
        cpu_count=int(metadata.get("cpu_count") or os.cpu_count() or 1),
        interval_s=float(metadata.get("interval_s") or 1.0),
        notes=[str(note) for note in metadata.get("notes", [])],
    )
