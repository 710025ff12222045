"""Suite files: which brokers, which workloads, how many repeats. Validated before any broker
I/O; every error names the file, line and field."""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.distributed.placement import Distribution
from harness.drivers.targets import target_names
from harness.errors import UserError
from harness.models import FrozenModel
from harness.settings import Settings
from harness.yamlconfig import line_in, load_model, where

ProxyPath = Literal["none", "all", "producers", "consumers"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class WorkloadEntry(FrozenModel):
    """One workload of the suite: a registered workload kind and its parameters."""

    name: Name
    kind: str = "throughput"
    params: dict[str, Any] = Field(default_factory=dict)
    """Validated by the workload's own model (``harness.flows.registry.workload_model``)."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from harness.flows.registry import unknown_kind, workload_kinds

        if kind not in workload_kinds():
            raise ValueError(unknown_kind(kind))
        return kind


class BrokerWarmup(FrozenModel):
    """Warm each broker up before its first run, and again after a restart
    (``harness/run/broker_warmup.py``): ``broker_warmup: false`` turns it off."""

    enabled: bool = True
    min_messages: Annotated[int, Field(ge=0, le=10_000_000)] = 1500
    """Receive at least this many, even when the latency looks settled sooner (a JIT compiles
    after so many calls; at the warm-up's 100 to 500 msg/s: 3 to 15 s)."""
    max_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    """Stop here even when the latency has not settled (the run starts anyway)."""

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        if not isinstance(value, dict):
            raise ValueError("give true, false or {enabled, min_messages, max_seconds}")
        return value


class Suite(FrozenModel):
    name: Name
    brokers: Annotated[list[str], Field(min_length=1)]
    """Targets: the local stack's brokers or ones defined under ``targets:`` in brokerbench.yaml."""
    proxy: ProxyPath = "none"
    """Whose traffic goes through the broker's toxiproxy proxy (where network faults act):
    ``all``, only the ``producers``, only the ``consumers``, or ``none``."""
    repeats: Annotated[int, Field(ge=1, le=100)] = 1
    workloads: Annotated[list[WorkloadEntry], Field(min_length=1)]
    scenarios: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["baseline"]
    )
    """Fault scenarios, each run for every broker and workload: bundled names
    (``brokerbench chaos list``) or paths of scenario files, relative to the suite file."""
    broker_warmup: BrokerWarmup = BrokerWarmup()
    distribution: Distribution | None = None
    """Run the load processes across machines (docs/distributed.md): how many workers
    (``brokerbench worker``) the master waits for, and where producers and consumers run."""

    @field_validator("scenarios")
    @classmethod
    def _known_scenarios(cls, scenarios: list[str]) -> list[str]:
        from chaos.scenario import bundled_names

        for scenario in scenarios:
            if not scenario.endswith((".yaml", ".yml")) and scenario not in bundled_names():
                raise ValueError(
                    f"unknown scenario {scenario!r}: choose from {', '.join(bundled_names())} "
                    "(or give the path of a scenario .yaml file)"
                )
        if len(set(scenarios)) != len(scenarios):
            raise ValueError("a scenario is listed twice")
        return scenarios

    @field_validator("brokers")
    @classmethod
    def _known_brokers(cls, brokers: list[str], info: ValidationInfo) -> list[str]:
        known: list[str] | None = (info.context or {}).get("targets")
        if known is not None:
            for broker in brokers:
                if broker not in known:
                    raise ValueError(f"unknown broker {broker!r}: choose from {', '.join(known)}")
        if len(set(brokers)) != len(brokers):
            raise ValueError("a broker is listed twice")
        return brokers


def load_suite(path: Path, settings: Settings) -> Suite:
    suite = load_model(path, Suite, context={"targets": target_names(settings)})
    _refuse_shared_workload_names(path, suite)
    return suite


def _refuse_shared_workload_names(path: Path, suite: Suite) -> None:
    """Each workload names its run folders: two of one name would write into the same ones."""
    first_index: dict[str, int] = {}
    for index, entry in enumerate(suite.workloads):
        if entry.name in first_index:
            first = line_in(path, ("workloads", first_index[entry.name], "name"))
            raise UserError(
                f"{where(path, ('workloads', index, 'name'))}: workloads.{index}.name: "
                f"{entry.name!r} is also the name of the workload at line {first} (it names "
                "the run folders): give each workload its own name"
            )
        first_index[entry.name] = index
