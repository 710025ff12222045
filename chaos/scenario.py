"""Scenario files: a steady-state hypothesis and a fault schedule (Chaos Toolkit's shape, kept
small). Bundled ones live in ``chaos/scenarios/<name>.yaml``; a suite may also give a path.

```yaml
name: link-down
description: the broker's proxy is disabled for 3 s
hypothesis: {throughput_within_percent: 20, recover_within_seconds: 15, max_lag: null}
faults:
  - action: link-down        # a name of the brokerbench.faults entry point group
    at: 3                    # seconds after the load schedule starts
    duration: 3              # seconds until the fault is healed
    repeat: 1                # windows, ``every`` seconds apart
    target: broker           # the run's broker (default), another local broker, consumer-0 ...
    params: {}               # validated by the fault's own model
```
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from chaos.faults.registry import fault_class, fault_classes
from harness.errors import UserError
from harness.models import FrozenModel
from harness.yamlconfig import load_model, validate_part

BUNDLED_DIR = Path(__file__).parent / "scenarios"
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


class Hypothesis(FrozenModel):
    """The steady state the system must keep or return to; each is judged per fault."""

    throughput_within_percent: Annotated[float, Field(gt=0, le=100)] | None = 20.0
    """After each fault heals, the receive rate gets back within this % of the pre-fault rate."""
    recover_within_seconds: Annotated[float, Field(gt=0)] = 30.0
    """... within this many seconds (throughput and lag)."""
    max_lag: Annotated[int, Field(ge=0)] | None = None
    """The backlog never exceeds this many messages (None: not judged)."""


class FaultSpec(FrozenModel):
    action: str
    name: Name | None = None
    """Default: the action."""
    at: Seconds
    duration: Annotated[float, Field(gt=0, le=86_400)]
    repeat: Annotated[int, Field(ge=1, le=1000)] = 1
    every: Annotated[float, Field(gt=0)] | None = None
    target: str | None = None
    """``broker`` (the run's broker), another local broker, or a load slot (``consumer-0``);
    default: the action's own default."""
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        known = fault_classes()
        if action not in known:
            raise ValueError(
                f"unknown fault action {action!r}: choose from {', '.join(sorted(known))}"
            )
        return action

    @model_validator(mode="after")
    def _repeats_apart(self) -> Self:
        if self.repeat > 1 and self.every is None:
            raise ValueError("repeat > 1 needs every (seconds between the windows' starts)")
        if self.every is not None and self.every <= self.duration:
            raise ValueError("every must be longer than duration (windows may not overlap)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.action


class Scenario(FrozenModel):
    name: Name
    description: str = ""
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_names(self) -> Self:
        labels = [fault.label for fault in self.faults]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"two faults are named {label!r}: give each a distinct name:")
        return self

    def windows(self) -> list["FaultWindow"]:
        """Every scheduled window, in start order."""
        found = []
        for spec in self.faults:
            for index in range(spec.repeat):
                start = spec.at + index * (spec.every or 0.0)
                fault_id = spec.label if spec.repeat == 1 else f"{spec.label}.{index}"
                target = spec.target or fault_class(spec.action).default_target
                found.append(FaultWindow(fault_id, spec, target, start, start + spec.duration))
        return sorted(found, key=lambda window: window.start_s)

    @property
    def end_seconds(self) -> float:
        """When the last window ends, in seconds after the schedule start."""
        return max((window.end_s for window in self.windows()), default=0.0)


@dataclass(frozen=True)
class FaultWindow:
    fault_id: str
    spec: FaultSpec
    target: str
    start_s: float
    end_s: float


def bundled_names() -> list[str]:
    return sorted(path.stem for path in BUNDLED_DIR.glob("*.yaml"))


def scenario_path(reference: str, base_dir: Path | None = None) -> Path:
    """A bundled scenario's file, or ``reference`` as a path (relative to ``base_dir``)."""
    if reference.endswith((".yaml", ".yml")):
        path = Path(reference)
        return path if path.is_absolute() or base_dir is None else base_dir / path
    if reference in bundled_names():
        return BUNDLED_DIR / f"{reference}.yaml"
    raise UserError(
        f"unknown scenario {reference!r}: choose from {', '.join(bundled_names())} "
        "(or give the path of a scenario .yaml file)"
    )


def load_scenario(reference: str, base_dir: Path | None = None) -> Scenario:
    """Load and validate a scenario (file and line in every error), fault params included."""
    path = scenario_path(reference, base_dir)
    scenario = load_model(path, Scenario)
    for index, spec in enumerate(scenario.faults):
        validate_part(
            path, ("faults", index, "params"), spec.params, fault_class(spec.action).params_model
        )
    return scenario


def fault_params(spec: FaultSpec) -> FrozenModel:
    return fault_class(spec.action).params_model.model_validate(spec.params)
