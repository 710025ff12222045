"""One planned run's life around its execution: ``running`` recorded before anything else
(``run_state.py``), then ``complete``, ``failed`` (a result with ``valid: null`` and the
error) or ``interrupted``.

Which failures end the suite (``brokerbench run``'s exit codes, docs/cli.md):

- a run that could not execute (``RunFailedError``: consumers died, producers too slow, not
  ready; a broker that stopped answering; a nemesis error; any other exception): the run is
  ``failed`` and the suite goes on (unless ``--fail-fast``);
- a user error found only when the run started (e.g. exactly-once on a non-FIFO SQS queue):
  the run is ``failed`` and the suite stops (exit 2: the suite needs fixing);
- Ctrl-C / SIGTERM: the run is ``interrupted`` and the suite stops.
"""

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import redaction
from harness.drivers.base import Driver, is_test_double
from harness.errors import BrokerUnreachableError, RunFailedError, UserError
from harness.run.fingerprint import fingerprint
from harness.run.result import declared_capabilities
from harness.run.result_model import (
    SCHEMA,
    Environment,
    RunResult,
    read_distribution,
    write_result,
)
from harness.run.run_state import RunState, mark_ended, mark_running

ERROR_LOG = "logs/harness-error.log"
"""The failed run's traceback, for whoever debugs it (result.json holds one line)."""
MAX_ERROR_CHARS = 500
INTERRUPTED_BY = "interrupted by Ctrl-C or SIGTERM"


class RunRecordedAsFailedError(Exception):
    """A run failed and was recorded as such; the suite decides whether to go on."""

    def __init__(self, run_dir: Path, error: str) -> None:
        super().__init__(error)
        self.run_dir = run_dir
        self.error = error


def identity(  # noqa: PLR0917 - the keys of a result
    suite: str,
    broker: str,
    driver: type[Driver],
    proxy: str,
    repeat: int,
    workload: dict[str, Any],
    semantics: str,
    ordered: bool,
    scenario: str,
    run_id: int,
) -> dict[str, Any]:
    """What identifies a run in its result.json, known before it starts (the state file keeps
    it, so a failed or interrupted run can be reported and re-checked)."""
    return {
        "schema": SCHEMA,
        "run_id": f"{run_id:016x}",
        "suite": suite,
        "broker": broker,
        "driver": driver.name,
        "proxy": proxy,
        "repeat": repeat,
        "workload": workload,
        "semantics": semantics,
        "ordering_scope": driver.capabilities.ordering(ordered).value,
        "capabilities": declared_capabilities(driver.capabilities).document(),
        "scenario": {"name": scenario},
        "test_double": is_test_double(driver),
    }


def one_line(error: BaseException) -> str:
    """The error as one line: a user's error as written, anything else with its type."""
    text = " ".join(str(error).split())
    if not isinstance(error, UserError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:MAX_ERROR_CHARS]


def failed_result(known: dict[str, Any], error: str) -> RunResult:
    """result.json of a run that could not execute: who it was, ``valid: null``, the error."""
    document = {key: value for key, value in known.items() if key != "test_double"}
    environment = fingerprint(None, test_double=bool(known.get("test_double")))
    return RunResult.model_validate(
        {
            **document,
            "environment": Environment.model_validate(environment),
            "valid": None,
            "error": error,
            "checks": [],
        }
    )


def ends_suite(error: Exception) -> bool:
    """A user error (the suite or a target needs fixing), not a run that failed."""
    return isinstance(error, UserError) and not isinstance(
        error, RunFailedError | BrokerUnreachableError
    )


@contextmanager
def run_lifecycle(run_dir: Path, known: dict[str, Any]) -> Iterator[None]:
    """Record ``running`` now; on leaving, ``complete``; else ``failed`` (a failed result.json
    written, then ``RunRecordedAsFailedError`` raised, or the user error re-raised), or
    ``interrupted``."""
    mark_running(run_dir, known)
    try:
        yield
    except Exception as exc:
        error = record_failure(run_dir, known, exc)
        if ends_suite(exc):
            raise
        logging.getLogger(__name__).warning("run failed: %s: %s", run_dir, error)
        raise RunRecordedAsFailedError(run_dir, error) from exc
    except BaseException as exc:
        record_interruption(run_dir, exc)
        raise
    mark_ended(run_dir, RunState.COMPLETE)


def record_failure(run_dir: Path, known: dict[str, Any], error: Exception) -> str:
    """The run failed with ``error``: its traceback in the logs, a result with ``valid: null``
    and the error, the state ``failed``. Returns the error's line."""
    line = one_line(error)
    log = run_dir / ERROR_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(redaction.scrub("".join(traceback.format_exception(error))), encoding="utf-8")
    failed = failed_result(known, line)
    distribution = read_distribution(run_dir)  # a run across machines: its workers, who was lost
    if distribution is not None:
        failed = failed.model_copy(update={"distribution": distribution})
    write_result(run_dir, failed)
    mark_ended(run_dir, RunState.FAILED, line)
    return line


def record_interruption(run_dir: Path, cause: BaseException | None = None) -> None:
    why = (
        INTERRUPTED_BY if cause is None or isinstance(cause, KeyboardInterrupt) else one_line(cause)
    )
    mark_ended(run_dir, RunState.INTERRUPTED, why)
