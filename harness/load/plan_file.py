"""A load process's plan file, without its secrets.

The orchestrator writes ``plans/<label>.json`` with every secret masked (``harness.redaction``:
a target's ``sasl.password`` or ``secret_access_key``, a database URL's password) and hands the
masked values to the process in its environment (``SECRETS_VARIABLE``), never on disk. The
environment was chosen over a pipe on stdin because producers already read their start signal
there, and over a 0600 file because a file can outlive a killed run; a process's environment
is readable only by its own user (``/proc/<pid>/environ`` is 0400) and goes with the process.

The process reads the plan with ``read_plan``: the file, the secrets put back, validated. It
also remembers the secrets, so that what it logs is scrubbed of them (``redact_stderr``). A plan
file run by hand (``python -m harness.load.consumer_process plans/consumer-0.json``) has its
secrets masked: it connects as if none were given.
"""

import json
import os
import sys
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel

from harness import redaction
from harness.atomic import write_text_atomically

SECRETS_VARIABLE = "BROKERBENCH_PLAN_SECRETS"
"""The environment variable carrying a plan's secrets: a JSON list of ``[path, value]``."""

PlanT = TypeVar("PlanT", bound=BaseModel)


def write_plan(path: Path, plan: BaseModel) -> dict[str, str]:
    """Write ``plan`` to ``path`` with its secrets masked; the environment entries that carry
    them to the process (empty when it has none)."""
    public, secrets = redaction.split(plan.model_dump(mode="json"))
    write_text_atomically(path, json.dumps(public, indent=2) + "\n")
    if not secrets:
        return {}
    redaction.remember(redaction.secret_texts(secrets))
    return {SECRETS_VARIABLE: json.dumps([[list(p), value] for p, value in secrets])}


def read_plan(path: str | Path, model: type[PlanT]) -> PlanT:
    """The plan at ``path`` with the secrets of this process's environment put back (and
    removed from the environment, so nothing this process starts inherits them). From then
    on this process's stderr (its log file) is scrubbed of them (``redact_stderr``)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    carried = os.environ.pop(SECRETS_VARIABLE, None)
    if carried:
        secrets: list[tuple[redaction.KeyPath, Any]] = [
            (tuple(p), value) for p, value in json.loads(carried)
        ]
        redaction.remember(redaction.secret_texts(secrets))
        redact_stderr()  # before validating: an error quoting its input stays clean
        document = redaction.merge(document, secrets)
    return model.model_validate(document)


class RedactingStream:
    """A text stream that scrubs remembered secrets from what is written to it."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redaction.scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redact_stderr() -> None:
    """Scrub remembered secrets from everything Python writes to stderr (logging, tracebacks)
    in this process; a load process's stderr is its log file in the run folder."""
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
