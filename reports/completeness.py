"""Runs that did not finish: failed, interrupted, still running, or planned and missing.

Read from the suites' plans (``suite-plan.json``) and the run folders' states
(``run-state.json``, ``harness/run/run_state.py``), so a report never counts a suite as whole
when one of its planned repeats is not there (docs/reports.md)."""

from dataclasses import dataclass, replace
from pathlib import Path

from harness.run.result_model import RESULT_FILE
from harness.run.run_state import STATE_FILE, RunState, RunStateRecord, read_state
from harness.run.suite_plan import PLAN_FILE, read_plan
from reports.load import RunKey, StoredRun

SEARCH_FILE = "search.json"
MISSING = "missing"
"""Planned, but its folder holds neither a state nor a result: never started."""


@dataclass(frozen=True)
class Unfinished:
    label: str
    """``broker / workload / scenario rN``."""
    state: str
    """failed, interrupted, running or missing."""
    why: str
    path: Path
    key: RunKey | None = None
    """Its (broker, workload, scenario), where known."""
    source: str = ""
    """The folder given to ``report`` under which it was found (as ``StoredRun.source``)."""


def _identified(record: RunStateRecord, run_dir: Path) -> tuple[str, RunKey | None]:
    """The label and key of a run from its state's identity (its folder where unknown)."""
    known = record.identity
    workload = known.get("workload") or {}
    scenario = known.get("scenario") or {}
    name = workload.get("name") if isinstance(workload, dict) else None
    scenario_name = scenario.get("name") if isinstance(scenario, dict) else None
    if not known.get("broker") or not name:
        return str(run_dir), None
    key = RunKey(str(known["broker"]), str(name), str(scenario_name or "baseline"))
    return f"{key.label()} r{known.get('repeat', 0)}", key


def _unfinished_state(run_dir: Path, planned: tuple[str, RunKey] | None) -> Unfinished | None:
    """The run folder's own state, if it did not finish; None if it did (or predates states
    and holds a result)."""
    record = read_state(run_dir)
    if record is None:
        if (run_dir / RESULT_FILE).is_file():
            return None
        label, key = planned or (str(run_dir), None)
        return Unfinished(label, MISSING, "never started", run_dir, key)
    state = record.effective
    if state is RunState.COMPLETE:
        return None
    why = record.reason or (
        "still running" if state is RunState.RUNNING else f"recorded as {state.value}"
    )
    label, key = planned or _identified(record, run_dir)
    return Unfinished(label, state.value, why, run_dir, key)


def _search_state(run_dir: Path, planned: tuple[str, RunKey]) -> Unfinished | None:
    """A max-rate search finished with its search.json; else its worst probe says why."""
    if (run_dir / SEARCH_FILE).is_file():
        return None
    probes = sorted(run_dir.glob(f"rate-*/{STATE_FILE}"))
    found = [_unfinished_state(probe.parent, planned) for probe in probes]
    worst = next((f for f in found if f is not None), None)
    label, key = planned
    return worst or Unfinished(label, MISSING, "the search did not finish", run_dir, key)


def unfinished_runs(paths: list[Path], runs: list[StoredRun]) -> list[Unfinished]:
    """Every run under ``paths`` (as ``find_runs`` searches them) that did not finish, in the
    order found: the plans' runs first, then run folders outside any plan."""
    found: list[Unfinished] = []
    covered: set[Path] = set()
    for path in paths:
        if not path.is_dir():
            continue
        for plan_file in sorted(path.rglob(PLAN_FILE)):
            plan = read_plan(plan_file)
            for entry in plan.runs:
                run_dir = plan_file.parent / entry.run_dir
                covered.add(run_dir)
                planned = (plan.label(entry), RunKey(entry.broker, entry.workload, entry.scenario))
                state = (
                    _search_state(run_dir, planned)
                    if entry.search
                    else _unfinished_state(run_dir, planned)
                )
                if state is not None:
                    found.append(replace(state, source=str(path)))
        for state_file in sorted(path.rglob(STATE_FILE)):
            run_dir = state_file.parent
            if run_dir in covered or run_dir.parent in covered:  # a planned search's probe
                continue
            covered.add(run_dir)
            state = _unfinished_state(run_dir, None)
            if state is not None:
                found.append(replace(state, source=str(path)))
    for run in runs:
        if run.error is not None and run.path not in covered:
            label = f"{run.key.label()} r{run.repeat}"
            failed = RunState.FAILED.value
            found.append(Unfinished(label, failed, run.error, run.path, run.key, run.source))
    return found
