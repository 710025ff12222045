"""Every bundled suite validates (workload kinds, params, brokers) without touching a broker."""

from pathlib import Path

import pytest

from harness.run.suite_runner import plan_suite
from harness.settings import Settings

SUITES = sorted((Path(__file__).parents[2] / "workloads" / "suites").glob("*.yaml"))
NEEDS_A_CLUSTER = {"cluster-replication"}
"""Suites whose node faults need ``stack: {kafka: {nodes: 3}}`` (refused for one node)."""


def settings_for(suite: Path) -> Settings:
    if suite.stem in NEEDS_A_CLUSTER:
        return Settings.model_validate({"stack": {"kafka": {"nodes": 3}}})
    return Settings()


@pytest.mark.parametrize("suite", SUITES, ids=[s.stem for s in SUITES])
def test_a_bundled_suite_plans(suite: Path, tmp_path: Path) -> None:
    parsed, runs = plan_suite(suite, settings_for(suite), tmp_path)
    assert runs
    assert {run.broker for run in runs} == set(parsed.brokers)
