"""Message bodies through the schema registry, for the load processes of a run with
``payload_schema: avro`` (``evolution.py`` says what the run rolls through).

``SchemaWriter`` (a producer process): each batch's bodies in the schema the control file names
(v1 until a ``schema-roll`` was accepted, then v2), or as JSON while a ``schema-bypass`` names
this process; counts what it wrote per version. ``SchemaReader`` (a consumer): decodes a body
with its reader schema (v1 or v2 by consumer id) and counts what it decoded per writer schema.
"""

from collections import Counter
from pathlib import Path

from harness.schemas import open_avro_registry
from harness.schemas.avro_registry import AvroDecoder, AvroEncoder, AvroRegistry
from harness.schemas.evolution import (
    EVENT_V1,
    EVENT_V2,
    READERS,
    ControlWatcher,
    SchemaControl,
    bypass_body,
    read_control,
    reader_of,
)
from harness.schemas.wire import schema_id_of

BYPASS = "bypass"


def control_of(run_dir: Path) -> SchemaControl:
    control = read_control(run_dir)
    if control is None:  # the run writes it before starting any load process
        raise RuntimeError(f"{run_dir}: no schema control file")
    return control


class SchemaWriter:
    """A producer process's bodies (``process_index``: its slot, which a bypass names)."""

    def __init__(self, run_dir: Path, process_index: int) -> None:
        control = control_of(run_dir)
        self.process_index = process_index
        self.watcher = ControlWatcher(run_dir, control)
        self.registry: AvroRegistry = open_avro_registry(control.registry_url)
        self.topic = control.topic
        self.encoders: dict[str, AvroEncoder] = {"v1": self.registry.encoder(self.topic, EVENT_V1)}
        self.written: Counter[str] = Counter()

    def version(self) -> str:
        """What this batch is written as: ``v1``, ``v2`` or ``bypass`` (checked per batch)."""
        control = self.watcher.current()
        if self.process_index in control.bypass:
            return BYPASS
        if control.version == "v2" and "v2" not in self.encoders:
            # Registered by the roll already: this only looks its id up.
            self.encoders["v2"] = self.registry.encoder(self.topic, EVENT_V2)
        return control.version

    def body(self, version: str, producer_id: int, key_id: int, seq: int) -> bytes:
        self.written[version] += 1
        if version == BYPASS:
            return bypass_body(producer_id, key_id, seq)
        record: dict[str, object] = {"producer": producer_id, "key": key_id, "seq": seq}
        if version == "v2":
            record["note"] = "v2"
        return self.encoders[version].encode(record)

    def summary(self, producer_id: int) -> dict[str, object]:
        """What the ``schema-written`` event records: counts and ids per version."""
        return {
            "producer_id": producer_id,
            "written": dict(self.written),
            "schema_ids": {v: e.schema_id for v, e in self.encoders.items()},
        }


class SchemaReader:
    """A consumer's decoder: its reader schema's version and what it decoded, by writer id."""

    def __init__(self, run_dir: Path, consumer_id: int) -> None:
        control = control_of(run_dir)
        self.reader = reader_of(consumer_id)
        self.registry = open_avro_registry(control.registry_url)
        self.decoder: AvroDecoder = self.registry.decoder(control.topic, READERS[self.reader])
        self.decoded: Counter[int] = Counter()
        """Bodies decoded, by the schema id they were written with."""

    def decode(self, body: bytes) -> None:
        """Count the body decoded; ``UndecodableError`` when it cannot be."""
        self.decoder.decode(body)
        self.decoded[schema_id_of(body)] += 1
