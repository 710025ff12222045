"""Schema evolution under load: the event schemas a run rolls through, the control file that
tells producers mid-run which one to write, and the body codecs of producers and consumers.

With ``payload_schema: avro`` (a workload parameter), every message keeps brokerbench's
envelope header (so every log-level check still applies) and its *body* is an Avro record in
the Confluent wire format (magic byte, schema id, Avro binary), registered under the run's
topic. The schema faults (``chaos/faults/schema.py``) change what producers write by
rewriting ``<run dir>/schema-control.json``; producers read it again when it changes.

- ``EVENT_V1``: the schema every run starts with.
- ``EVENT_V2``: v1 plus a field with a default: BACKWARD, FORWARD and FULL compatible.
- ``EVENT_V2_INCOMPATIBLE``: ``seq`` as a string: no rule but NONE accepts it.
- a *bypass*: a producer that skips the registry and writes its record as JSON, which no
  consumer can decode (not in the wire format).
"""

import json
from pathlib import Path
from typing import Any, Literal

from harness.atomic import write_text_atomically
from harness.models import FrozenModel
from harness.schemas.wire import UndecodableError

CONTROL_FILE = "schema-control.json"
SchemaVersion = Literal["v1", "v2"]
ReaderVersion = Literal["v1", "v2"]

EVENT_V1: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "namespace": "brokerbench.schema_evolution",
    "fields": [
        {"name": "producer", "type": "long"},
        {"name": "key", "type": "long"},
        {"name": "seq", "type": "long"},
    ],
}
EVENT_V2: dict[str, Any] = {
    **EVENT_V1,
    "fields": [*EVENT_V1["fields"], {"name": "note", "type": "string", "default": "none"}],
}
EVENT_V2_INCOMPATIBLE: dict[str, Any] = {
    **EVENT_V1,
    "fields": [
        {"name": "producer", "type": "long"},
        {"name": "key", "type": "long"},
        {"name": "seq", "type": "string"},
    ],
}
READERS: dict[ReaderVersion, dict[str, Any]] = {"v1": EVENT_V1, "v2": EVENT_V2}


def reader_of(consumer_id: int) -> ReaderVersion:
    """Consumers alternate: even ids read with v1 (not yet upgraded), odd ones with v2."""
    return "v1" if consumer_id % 2 == 0 else "v2"


class SchemaControl(FrozenModel):
    """Where the run's schemas live and what producers write, as the schema faults set it
    (written by the run before any load, rewritten by each schema fault)."""

    registry_url: str
    topic: str
    """The topic whose subject (``<topic>-value``) holds the run's schemas."""
    version: SchemaVersion = "v1"
    """The registered schema producers encode with (v2 only once the registry accepted it)."""
    bypass: tuple[int, ...] = ()
    """Producer processes (their index) that skip the registry and write JSON bodies."""


def write_control(run_dir: Path, control: SchemaControl) -> None:
    write_text_atomically(run_dir / CONTROL_FILE, control.model_dump_json())


def read_control(run_dir: Path) -> SchemaControl | None:
    """None when the run does not encode its bodies with a registry."""
    path = run_dir / CONTROL_FILE
    if not path.exists():
        return None
    return SchemaControl.model_validate_json(path.read_text(encoding="utf-8"))


class ControlWatcher:
    """A producer's view of the control file: ``current()`` re-reads it only when it changed."""

    def __init__(self, run_dir: Path, initial: SchemaControl) -> None:
        self.path = run_dir / CONTROL_FILE
        self._stamp: tuple[int, int] | None = None
        self._control = initial

    def current(self) -> SchemaControl:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._control
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._stamp:
            self._stamp = stamp
            self._control = read_control(self.path.parent) or self._control
        return self._control


def undecodable_reason(error: UndecodableError) -> str:
    """A short, countable reason for an undecodable body."""
    text = str(error)
    if "magic byte" in text or "shorter than" in text:
        return "not-wire-format"
    if "not found" in text.lower() or "40403" in text:
        return "unknown-schema-id"
    return "unreadable-body"


def bypass_body(producer_id: int, key_id: int, seq: int) -> bytes:
    """What a producer that skips the registry writes: its record as JSON."""
    return json.dumps({"producer": producer_id, "key": key_id, "seq": seq}).encode()
