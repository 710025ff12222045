"""With CI set, a skipped broker test fails the run; without it, a skip is only reported."""

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
SKIPPING_TEST = """
import pytest

@pytest.mark.{marker}
def test_needs_a_runtime():
    pytest.skip("broker runtime absent")

def test_plain():
    pass
"""


@pytest.mark.parametrize("marker", ["broker", "browser"])
@pytest.mark.parametrize(("ci", "expected"), [("true", 1), ("", 0)])
def test_a_skipped_broker_test_fails_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, expected: int, marker: str
) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("BROKERBENCH_REQUIRE_BROKERS", raising=False)
    pytester.makeconftest("from tests.conftest import *  # noqa: F403\n")
    pytester.makeini(
        "[pytest]\nmarkers =\n    broker: needs a broker\n    browser: needs chromium\n"
    )
    pytester.makepyfile(test_guard=SKIPPING_TEST.replace("{marker}", marker))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == expected
    result.assert_outcomes(passed=1, skipped=1)
    if expected:
        result.stdout.fnmatch_lines(
            ["*1 broker or browser test(s) skipped, which CI does not allow*"]
        )
