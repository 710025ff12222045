"""Every bundled suite validates (workload kinds, params, brokers) without touching a broker."""

from pathlib import Path

import pytest

from harness.run.suite_runner import plan_suite
from harness.settings import Settings

SUITES = sorted((Path(__file__).parents[2] / "workloads" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("suite", SUITES, ids=[s.stem for s in SUITES])
def test_a_bundled_suite_plans(suite: Path, tmp_path: Path) -> None:
    parsed, runs = plan_suite(suite, Settings(), tmp_path)
    assert runs
    assert {run.broker for run in runs} == set(parsed.brokers)
