"""The active-fault state file: what ``brokerbench chaos heal`` undoes after a killed harness.

Each applied fault adds its entries (plain JSON, see ``chaos.heal``) *before* it is applied and
removes them once healed; every write is atomic. One file per harness process (so runs in
parallel never overwrite each other's): ``<home>/state/chaos/active-faults-<pid>.json``, holding
``{"pid", "started_at", "since_boot", "entries"}``; ``chaos heal`` reads them all, and leaves
alone the faults of a harness that still runs (same pid *and* start time, counted from the boot
so that a clock step changes nothing: a reused pid is not mistaken for it).
"""

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness import paths
from harness.atomic import write_text_atomically
from harness.errors import UserError
from harness.stack import processes

Entry = dict[str, Any]
"""``{"id": fault instance id, "kind": what to undo, ...}``."""

_LOCK = threading.Lock()


def state_dir() -> Path:
    return paths.state_dir() / "chaos"


def state_file() -> Path:
    """This process's state file."""
    return state_dir() / f"active-faults-{os.getpid()}.json"


def all_state_files() -> list[Path]:
    """Every process's state file (those of harnesses that died included)."""
    return sorted(state_dir().glob("active-faults-*.json"))


def read_all_entries() -> list[Entry]:
    return [entry for path in all_state_files() for entry in read_entries(path)]


def read_entries(path: Path | None = None) -> list[Entry]:
    path = path or state_file()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = raw.get("entries", []) if isinstance(raw, dict) else []
    return [entry for entry in entries if isinstance(entry, dict)]


@dataclass(frozen=True)
class HarnessFaults:
    """One state file as ``chaos heal`` sees it: whose faults, and which."""

    path: Path
    pid: int
    started_at: float | None
    """None in a file written before start times were recorded."""
    entries: list[Entry]
    since_boot: float | None = None
    """The harness's start in seconds after the boot (clock steps leave it alone); None in
    older files."""

    def owner_runs(self) -> bool:
        """The harness that wrote the file still runs. Without a start time, a live process
        of that pid counts as the harness (leaving faults is safer than healing a live run's)."""
        if self.started_at is None:
            return self.pid > 1 and psutil.pid_exists(self.pid)
        return processes.is_running(self.pid, self.started_at, self.since_boot)


def read_harness_faults(path: Path) -> HarnessFaults:
    """The state file ``path``; UserError naming it if it is not one brokerbench wrote."""
    fix = "check what it holds, delete it, and heal with `brokerbench chaos heal --force`"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise UserError(
            f"{path}: not a fault state file brokerbench wrote (not JSON): {fix}"
        ) from exc
    pid = raw.get("pid") if isinstance(raw, dict) else None
    started_at = raw.get("started_at") if isinstance(raw, dict) else None
    entries = raw.get("entries") if isinstance(raw, dict) else None
    since_boot = raw.get("since_boot") if isinstance(raw, dict) else None
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or not isinstance(started_at, int | float | None)
        or isinstance(started_at, bool)
        or not isinstance(since_boot, int | float | None)
        or isinstance(since_boot, bool)
        or not isinstance(entries, list)
        or not all(isinstance(entry, dict) for entry in entries)
    ):
        raise UserError(
            f"{path}: not a fault state file brokerbench wrote (needs a pid, a start time and "
            f"a list of entries): {fix}"
        )
    return HarnessFaults(
        path,
        pid,
        None if started_at is None else float(started_at),
        entries,
        None if since_boot is None else float(since_boot),
    )


def _write(entries: list[Entry], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    document = {
        "pid": pid,
        "started_at": processes.start_time(pid),
        "since_boot": processes.since_boot(pid),
        "entries": entries,
    }
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def add_entries(new: list[Entry], path: Path | None = None) -> None:
    path = path or state_file()
    with _LOCK:
        _write([*read_entries(path), *new], path)


def remove_entries(fault_id: str, path: Path | None = None) -> None:
    path = path or state_file()
    with _LOCK:
        kept = [entry for entry in read_entries(path) if entry.get("id") != fault_id]
        if kept:
            _write(kept, path)
        else:
            path.unlink(missing_ok=True)


def clear(path: Path | None = None) -> None:
    with _LOCK:
        (path or state_file()).unlink(missing_ok=True)
