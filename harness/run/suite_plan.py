"""What a suite set out to run: ``suite-plan.json`` in the suite's output folder, written before
its first run, so a report can tell a missing repeat from one never planned (docs/result.md)."""

from pathlib import Path

from pydantic import ValidationError

from harness.atomic import write_text_atomically
from harness.errors import UserError
from harness.models import FrozenModel

PLAN_FILE = "suite-plan.json"


class PlannedEntry(FrozenModel):
    broker: str
    workload: str
    scenario: str
    repeat: int
    run_dir: str
    """Relative to the plan's folder."""
    search: bool = False
    """A max-rate search: its probes are ``rate-<N>/`` folders, its answer ``search.json``."""


class SuitePlan(FrozenModel):
    suite: str
    runs: list[PlannedEntry]

    def label(self, entry: PlannedEntry) -> str:
        return f"{entry.broker} / {entry.workload} / {entry.scenario} r{entry.repeat}"


def write_plan(root: Path, plan: SuitePlan) -> Path:
    path = root / PLAN_FILE
    write_text_atomically(path, plan.model_dump_json(indent=2) + "\n")
    return path


def read_plan(path: Path) -> SuitePlan:
    """A plan file; unreadable: a one-line ``UserError`` naming it."""
    try:
        return SuitePlan.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise UserError(f"{path}: cannot read the suite's plan ({reason})") from exc
