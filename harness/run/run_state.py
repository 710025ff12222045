"""A run folder's state from its first second: ``run-state.json`` (docs/result.md).

```
running ──► complete      result.json written from the whole history
        ├─► failed        the run could not execute: result.json has valid null and the error
        └─► interrupted   Ctrl-C / SIGTERM (written on the way out), or the harness was killed
                          (SIGKILL, a crash of the machine): ``running`` whose process is gone
```

The file is rewritten atomically at each transition, so a reader sees one state or the next.
It also holds what a re-check needs when no result.json was written (``identity``: the
result's identifying keys, ``harness/run/interrupted.py``). Reading it never needs brokers.
"""

import json
import os
import platform
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from harness import redaction
from harness.atomic import write_text_atomically
from harness.errors import UserError
from harness.models import FrozenModel
from harness.stack import processes

STATE_FILE = "run-state.json"


class RunState(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """Ran to its end: its result stands for the whole run."""
        return self is RunState.COMPLETE


class RunStateRecord(FrozenModel):
    state: RunState
    pid: int
    """The harness process running it."""
    pid_started: float
    """That process's start time (seconds since the epoch)."""
    pid_since_boot: float | None = None
    """Its start in seconds after the machine booted: tells a reused pid apart even after a
    step of the system clock (None in files written before it was recorded)."""
    host: str
    started_at: str
    ended_at: str | None = None
    error: str | None = None
    """Why it failed or was interrupted (one line)."""
    identity: dict[str, Any] = Field(default_factory=dict)
    """The result's identifying keys (broker, workload, scenario, repeat, ...)."""

    @property
    def effective(self) -> RunState:
        """The state as it stands: ``running`` whose harness process is gone is interrupted.
        A run recorded on another host cannot be checked and stays ``running``."""
        if self.state is not RunState.RUNNING or self.host != platform.node():
            return self.state
        if not processes.is_running(self.pid, self.pid_started, self.pid_since_boot):
            return RunState.INTERRUPTED
        return self.state

    @property
    def reason(self) -> str:
        """One line: the error, or why it counts as interrupted."""
        if self.error:
            return self.error
        if self.effective is RunState.INTERRUPTED and self.state is RunState.RUNNING:
            return f"the harness (pid {self.pid}) stopped without recording an end"
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def mark_running(run_dir: Path, identity: dict[str, Any]) -> RunStateRecord:
    """Record that this process starts the run in ``run_dir`` (creating the folder)."""
    record = RunStateRecord(
        state=RunState.RUNNING,
        pid=os.getpid(),
        pid_started=processes.start_time(os.getpid()),
        pid_since_boot=processes.since_boot(os.getpid()),
        host=platform.node(),
        started_at=_now(),
        identity=identity,
    )
    _write(run_dir, record)
    return record


def mark_ended(run_dir: Path, state: RunState, error: str | None = None) -> None:
    """Record how the run ended (a run folder without a state file is left alone)."""
    record = read_state(run_dir)
    if record is None:
        return
    update = {"state": state, "ended_at": _now(), "error": error}
    _write(run_dir, record.model_copy(update=update))


def _write(run_dir: Path, record: RunStateRecord) -> None:
    document = redaction.redact(record.model_dump(mode="json"))  # a database URL's password
    write_text_atomically(run_dir / STATE_FILE, json.dumps(document, indent=2) + "\n")


def read_state(run_dir: Path) -> RunStateRecord | None:
    """The run's state record; None when the folder has none (a run from before states);
    unreadable: a one-line ``UserError`` naming the file."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return RunStateRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise UserError(f"{path}: cannot read the run's state ({reason})") from exc
