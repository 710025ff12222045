"""Read result.json files (docs/result.md) into typed models that tolerate keys added later.

Only what the reports and the gate use is modelled; everything else stays reachable through
``RunResult.value`` (dotted paths into the raw document).
"""

import json
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import UserError

SCHEMA_MAJOR = "brokerbench.result/1"
RESULT_FILE = "result.json"


class Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Check(Lenient):
    """One checker's verdict: the same shape for every checker, whoever wrote it."""

    name: str
    valid: bool | None
    counts: dict[str, Any] = Field(default_factory=dict)
    examples: list[Any] = Field(default_factory=list)
    notes: str = ""


class Fault(Lenient):
    """One fault a chaos scenario injected (see chaos/)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    name: str
    action: str = ""
    target: str = ""
    start_ns: int | None = None
    end_ns: int | None = None
    anomalies: dict[str, Any] = Field(default_factory=dict)


class Scenario(Lenient):
    name: str = "baseline"
    faults: list[Fault] = Field(default_factory=list)


class Workload(Lenient):
    name: str
    kind: str = "throughput"
    params: dict[str, Any] = Field(default_factory=dict)


class HarnessBound(Lenient):
    value: bool | None = Field(default=None, strict=True)
    """Only JSON true / false / null: anything else leaves the section unknown."""
    reasons: list[str] = Field(default_factory=list)


class Saturation(Lenient):
    """result.json's ``saturation`` section (docs/result.md), as far as the reports use it."""

    harness_bound: HarnessBound = Field(default_factory=HarnessBound)
    summary: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class RunKey(NamedTuple):
    """What the gate matches across two folders; repeats of one key form a sample."""

    broker: str
    workload: str
    scenario: str

    def label(self) -> str:
        return f"{self.broker} / {self.workload} / {self.scenario}"


class RunResult(Lenient):
    path: Path
    """The run folder."""
    source: str = ""
    """The folder given on the command line that holds it (rows of different sources stay
    apart in the matrix)."""
    document: dict[str, Any]
    """The whole result.json, for values this model does not name."""
    run_id: str = ""
    suite: str = ""
    broker: str
    repeat: int = 0
    workload: Workload
    scenario: Scenario = Field(default_factory=Scenario)
    semantics: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    valid: bool | None = None
    checks: list[Check] = Field(default_factory=list)
    saturation: Saturation | None = None
    """None: a result from before the sampler, or one whose section does not parse: unknown."""

    @field_validator("saturation", mode="before")
    @classmethod
    def _lenient_saturation(cls, raw: Any) -> Saturation | None:
        try:
            return Saturation.model_validate(raw) if isinstance(raw, dict) else None
        except ValidationError:
            return None

    @property
    def test_double(self) -> bool:
        """Run against brokerbench's in-memory test double, not a real broker."""
        return self.environment.get("test_double") is True

    @property
    def harness_bound(self) -> bool | None:
        """True: the harness, not the broker, was the limit; None: not known."""
        return None if self.saturation is None else self.saturation.harness_bound.value

    @property
    def harness_bound_reasons(self) -> list[str]:
        return [] if self.saturation is None else self.saturation.harness_bound.reasons

    @property
    def key(self) -> RunKey:
        return RunKey(self.broker, self.workload.name, self.scenario.name)

    @property
    def series(self) -> dict[str, Any]:
        found = self.value("figures.series")
        return found if isinstance(found, dict) else {}

    def value(self, path: str) -> Any:
        """The value at a dotted path, e.g. ``figures.latency.e2e.stats.p99.9`` (a key may
        itself hold dots: the longest key that exists wins); None where absent."""
        node: Any = self.document
        parts = path.split(".")
        while parts:
            if not isinstance(node, dict):
                return None
            for width in range(len(parts), 0, -1):
                name = ".".join(parts[:width])
                if name in node:
                    node, parts = node[name], parts[width:]
                    break
            else:
                return None
        return node

    def number(self, path: str) -> float | None:
        found = self.value(path)
        if isinstance(found, bool) or not isinstance(found, int | float):
            return None
        return float(found)


def read_run(result_file: Path, source: str = "") -> RunResult:
    try:
        document = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{result_file}: cannot read result ({exc})") from exc
    schema = document.get("schema") if isinstance(document, dict) else None
    if not isinstance(schema, str) or schema.split(".")[:2] != SCHEMA_MAJOR.split(".")[:2]:
        raise UserError(f"{result_file}: schema {schema!r} is not {SCHEMA_MAJOR}")
    try:
        return RunResult.model_validate(
            {**document, "path": result_file.parent, "document": document, "source": source}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{result_file}: {where}: {first['msg']}") from exc


def _is_search_probe(run_dir: Path) -> bool:
    """A max-rate search's ``rate-<N>/`` probe: its parent holds search.json."""
    return run_dir.name.startswith("rate-") and (run_dir.parent / "search.json").exists()


def find_runs(paths: list[Path]) -> list[RunResult]:
    """Every run under ``paths`` (run folders or suite output folders, searched recursively),
    sorted by key and repeat. Search probes and history folders are skipped."""
    runs: list[RunResult] = []
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
        if not found:
            raise UserError(
                f"{path}: no result.json under it (give folders written by `brokerbench run`)"
            )
        runs.extend(found)
    return sorted(runs, key=lambda run: (run.source, *run.key, run.repeat, str(run.path)))


def by_key(runs: list[RunResult]) -> dict[RunKey, list[RunResult]]:
    grouped: dict[RunKey, list[RunResult]] = {}
    for run in runs:
        grouped.setdefault(run.key, []).append(run)
    return grouped
