"""The active-fault state file: what ``brokerbench chaos heal`` undoes after a killed harness.

Each applied fault adds its entries (plain JSON, see ``chaos.heal``) *before* it is applied and
removes them once healed; every write is atomic. One file per harness process (so runs in
parallel never overwrite each other's): ``<home>/state/chaos/active-faults-<pid>.json``;
``chaos heal`` reads them all.
"""

import json
import os
import threading
from pathlib import Path
from typing import Any

from harness import paths
from harness.atomic import write_text_atomically

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


def _write(entries: list[Entry], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"pid": os.getpid(), "entries": entries}
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
