"""Where a worker's returned files go in the master's run folder, written atomically.

A worker's ``history/shards/<table>-<label>.arrow`` becomes
``history/shards/<table>-<worker>.<label>.arrow`` (the table stays first, where compaction
looks for it; the worker's name keeps two workers' files apart) and ``logs/<label>.log``
becomes ``logs/<worker>.<label>.log``. Anything else is refused.
"""

import os
from pathlib import Path, PurePosixPath

from harness.history.shards import shards_dir

SHARDS = PurePosixPath("history/shards")
LOGS = PurePosixPath("logs")


def returned_name(worker: str, path: str) -> PurePosixPath:
    """The returned file's place relative to the run folder (``ValueError`` if not one)."""
    relative = PurePosixPath(path)
    name = relative.name
    if relative.parent == SHARDS and name.endswith(".arrow") and "-" in name:
        table, label = name.split("-", 1)
        return SHARDS / f"{table}-{worker}.{label}"
    if relative.parent == LOGS and name.endswith(".log"):
        return LOGS / f"{worker}.{name}"
    raise ValueError(f"{path!r} is not a shard or a log a worker returns")


def destination_of(run_dir: Path, worker: str, path: str) -> Path:
    return run_dir / returned_name(worker, path)


def log_of(run_dir: Path, worker: str, label: str) -> Path:
    """Where a remote load process's log is once returned."""
    return run_dir / LOGS / f"{worker}.{label}.log"


def worker_shards(run_dir: Path, worker: str) -> list[Path]:
    """The shards returned by ``worker``."""
    return sorted(shards_dir(run_dir).glob(f"*-{worker}.*.arrow"))


class ReturnedFile:
    """One file arriving in pieces: written to ``<name>.part``, renamed when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._part = path.with_name(path.name + ".part")
        self._file = self._part.open("wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._part.replace(self.path)
