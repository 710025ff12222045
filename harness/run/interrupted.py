"""``analyze`` on a run that did not finish (``run-state.json`` says interrupted, failed or
running): it checks what the history holds and says so. Every verdict is at most unknown: a
check that held over part of a run says nothing of the whole, messages not received may only
have been on their way, and a process stopped mid-write loses the rows it had not flushed (a
received message whose send went unrecorded would look like a phantom). The counts and notes
still show what each check found."""

from pathlib import Path
from typing import Any

import pyarrow.compute as pc  # type: ignore[import-untyped]

from harness.errors import UserError
from harness.history.schema import EventKind
from harness.history.store import load
from harness.run.result_model import Check, Phases, RunResult
from harness.run.run_state import RunState, RunStateRecord

NS_PER_S = 1_000_000_000


def unfinished_note(record: RunStateRecord) -> str:
    state = record.effective.value
    why = f": {record.reason}" if record.reason else ""
    return f"the run is {state}{why}; only what its history holds was checked"


def result_from_state(run_dir: Path, record: RunStateRecord) -> RunResult:
    """A result to re-check, from the state's identity and the history's phase events (or,
    where the harness died before writing them, the sends' intended times)."""
    known = {k: v for k, v in record.identity.items() if k != "test_double"}
    if not known.get("broker") or not known.get("run_id"):
        raise UserError(f"{run_dir}: its run-state.json lacks the run's identity a re-check needs")
    history = load(run_dir)
    events, sends = history.events, history.sends
    times = dict(zip(events["kind"].to_pylist(), events["time_ns"].to_pylist(), strict=True))
    intended = sends["intended_ns"]
    first = pc.min(intended).as_py() if sends.num_rows else None
    last = pc.max(intended).as_py() if sends.num_rows else None
    params: dict[str, Any] = (known.get("workload") or {}).get("params") or {}
    start = times.get(EventKind.RUN_START.value, first)
    warmup_end = times.get(EventKind.WARMUP_END.value)
    if warmup_end is None and start is not None:
        warmup_end = start + round(float(params.get("warmup", 0)) * NS_PER_S)
    end = times.get(EventKind.DRAIN_START.value, None if last is None else last + 1)
    if warmup_end is None or end is None:
        raise UserError(
            f"{run_dir}: the run is {record.effective.value} and its history holds no send to "
            "check (nothing was recorded before it stopped)"
        )
    phases = Phases(start_ns=start, warmup_end_ns=warmup_end, end_ns=end, drained=False)
    failed = {"error": record.error} if record.effective is RunState.FAILED else {}
    return RunResult.model_validate({**known, "phases": phases, **failed})


def capped(result: RunResult, record: RunStateRecord) -> RunResult:
    """``result`` with every verdict unknown (see the module's docstring)."""
    note = unfinished_note(record)
    checks = [_capped(check, note) for check in result.checks]
    return result.model_copy(update={"checks": checks, "valid": None})


def _capped(check: Check, note: str) -> Check:
    found = {True: "held", False: "failed", None: "unknown"}[check.valid]
    notes = f"{check.notes}; " if check.notes else ""
    notes += f"{found} over what was recorded, but {note}"
    return check.model_copy(update={"valid": None, "notes": notes})


def unfinished(record: RunStateRecord | None) -> RunStateRecord | None:
    """``record`` if the run did not finish (interrupted, failed, still running), else None."""
    return record if record is not None and record.effective is not RunState.COMPLETE else None
