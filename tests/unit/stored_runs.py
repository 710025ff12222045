"""A run folder ``analyze`` can re-check, built without a broker, and the ``brokerbench`` entry
point called in-process (its exit code and its output), for the loading tests."""

import contextlib
import io
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from harness.run.result_model import RESULT_FILE, SCHEMA
from tests.unit.test_result_model import START, S, stored_run


def result_header(**changes: Any) -> dict[str, Any]:
    """The part of result.json ``analyze`` needs to re-check ``stored_run``'s history."""
    header = {
        "schema": SCHEMA, "run_id": "00000000000000ff", "broker": "kafka", "repeat": 0,
        "workload": {"name": "w", "kind": "throughput", "params": {"message_size": 100}},
        "phases": {"start_ns": START, "warmup_end_ns": START + S // 2, "end_ns": START + 4 * S},
        "ordering_scope": "partition", "capabilities": {"lag_probe": "derived"},
        "valid": None, "checks": [],
    }  # fmt: skip
    return header | changes


def analyzable_run(run_dir: Path) -> Path:
    """``stored_run``'s history, scenario and samples, plus a result.json: ``analyze`` passes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    stored_run(run_dir)
    (run_dir / RESULT_FILE).write_text(json.dumps(result_header(), indent=2) + "\n")
    return run_dir


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one line a user error prints (asserting there is exactly one, no traceback)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("error: "), self.stderr
        assert "Traceback" not in self.stdout + self.stderr
        return lines[0]


def brokerbench(*args: str) -> Completed:
    """``brokerbench ARGS`` through its entry point (``harness.cli.main``), in this process.

    A bug (an exception that is not a ``UserError``) prints its traceback and exits 4, as a
    user would see it."""
    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    sigterm = signal.getsignal(signal.SIGTERM)  # main() installs its own
    with (
        mock.patch.object(sys, "argv", ["brokerbench", *args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            signal.signal(signal.SIGTERM, sigterm)
    return Completed(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())
