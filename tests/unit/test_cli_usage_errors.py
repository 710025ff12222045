"""A mistyped command line is a usage error (exit 2, click's usage line and ``Error: ...``),
never a crash (exit 4 with a traceback): typer carries its own copy of click, whose
exceptions are not the click package's."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "--bogus", "x"], "No such option: --bogus"),
        (["run"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_a_usage_error_is_exit_2_without_a_traceback(args: list[str], says: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    assert says in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "crashed" not in completed.stderr
