"""Find and read result.json files (``harness.run.result_model``, docs/result.md) for the
reports and the gate: leniently, so results of older and newer minor versions load."""

from pathlib import Path
from typing import NamedTuple

from pydantic import Field

from harness.errors import UserError
from harness.run.result_model import RESULT_FILE, RunResult, load_result
from harness.run.run_state import STATE_FILE
from harness.run.suite_plan import PLAN_FILE

TEST_DOUBLE_MARK = "(test double)"
"""Beside a broker's name wherever a report names it: its runs were against the test double."""


class RunKey(NamedTuple):
    """What the gate matches across two folders; repeats of one key form a sample."""

    broker: str
    workload: str
    scenario: str

    def label(self) -> str:
        return f"{self.broker} / {self.workload} / {self.scenario}"


class StoredRun(RunResult):
    """A run's result and where it was found (neither of which is written to result.json)."""

    path: Path = Field(exclude=True)
    """The run folder."""
    source: str = Field(default="", exclude=True)
    """The folder given on the command line that holds it (rows of different sources stay
    apart in the matrix)."""

    @property
    def test_double(self) -> bool:
        """Run against brokerbench's in-memory test double, not a real broker."""
        return self.environment.test_double is True

    @property
    def key(self) -> RunKey:
        return RunKey(self.broker, self.workload.name, self.scenario.name)


def read_run(result_file: Path, source: str = "") -> StoredRun:
    return load_result(result_file, StoredRun, path=result_file.parent, source=source)


def _is_search_probe(run_dir: Path) -> bool:
    """A max-rate search's ``rate-<N>/`` probe: its parent holds search.json."""
    return run_dir.name.startswith("rate-") and (run_dir.parent / "search.json").exists()


def _holds_run_states(path: Path) -> bool:
    """Runs were started here (a suite's plan or a run's state), though none wrote a result."""
    return any(path.rglob(PLAN_FILE)) or any(path.rglob(STATE_FILE))


def find_runs(paths: list[Path]) -> list[StoredRun]:
    """Every run under ``paths`` (run folders or suite output folders, searched recursively),
    sorted by key and repeat. Search probes and history folders are skipped."""
    runs: list[StoredRun] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such folder")
        if path.is_file():
            runs.append(read_run(path, str(path.parent)))
            continue
        files = sorted(path.rglob(RESULT_FILE))
        found = [
            read_run(file, str(path))
            for file in files
            if "history" not in file.relative_to(path).parts[:-1]
            and not _is_search_probe(file.parent)
        ]
        if not found and not _holds_run_states(path):
            raise UserError(
                f"{path}: no {RESULT_FILE} under it (give folders written by `brokerbench run`)"
            )
        runs.extend(found)
    return sorted(runs, key=lambda run: (run.source, *run.key, run.repeat, str(run.path)))


def by_key(runs: list[StoredRun]) -> dict[RunKey, list[StoredRun]]:
    grouped: dict[RunKey, list[StoredRun]] = {}
    for run in runs:
        grouped.setdefault(run.key, []).append(run)
    return grouped
