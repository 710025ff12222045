"""Faults of the application, not of the network: producers rolled to a new schema mid-run,
and a producer that bypasses the registry. They need a workload with ``payload_schema: avro``
(``harness/schemas/evolution.py``) and act through the run's schema control file, which the
producers read again whenever it changes.

- ``schema-roll``: what a deploy pipeline does before rolling producers out: set the subject's
  compatibility rule, register v2 (``change: compatible`` adds a field with a default;
  ``incompatible`` turns ``seq`` into a string). Accepted: a ``schema-rolled`` event and the
  producers write v2 from then on (a roll is not undone at the window's end). Refused (HTTP
  409): a ``schema-refused`` event with the registry's reason and its time, and the producers
  keep writing v1.
- ``schema-bypass``: for the window, a producer process (``target``, default ``producer-0``)
  skips the registry and writes its records as JSON; at the window's end it writes through
  the registry again.
"""

from typing import Literal

from chaos.faults.base import Fault
from harness.errors import UserError
from harness.history.schema import EventKind
from harness.models import FrozenModel
from harness.schemas.evolution import (
    EVENT_V2,
    EVENT_V2_INCOMPATIBLE,
    SchemaControl,
    read_control,
    write_control,
)
from harness.schemas.subjects import Compatibility, subject_of


class RollParams(FrozenModel):
    change: Literal["compatible", "incompatible"] = "compatible"
    compatibility: Compatibility = "BACKWARD"


def _control(fault: Fault) -> SchemaControl:
    run_dir = fault.context.run_dir
    control = None if run_dir is None else read_control(run_dir)
    if control is None:
        raise UserError(
            f"fault {fault.action!r} needs a workload with payload_schema: avro (bodies "
            "through the schema registry): add it to the workload's params"
        )
    return control


def _write(fault: Fault, control: SchemaControl) -> None:
    assert fault.context.run_dir is not None
    write_control(fault.context.run_dir, control)


class SchemaRoll(Fault):
    """Register v2 under the subject's rule; producers roll to it if the registry accepts."""

    action = "schema-roll"
    params_model = RollParams

    def check(self) -> None:
        _control(self)

    def apply(self) -> None:
        from harness.schemas import open_avro_registry
        from harness.schemas.avro_registry import SchemaRefusedError

        params = self.params
        assert isinstance(params, RollParams)
        control = _control(self)
        registry = open_avro_registry(control.registry_url)
        registry.set_compatibility(control.topic, params.compatibility)
        schema = EVENT_V2 if params.change == "compatible" else EVENT_V2_INCOMPATIBLE
        detail: dict[str, object] = {
            "fault_id": self.fault_id,
            "subject": subject_of(control.topic),
            "compatibility": params.compatibility,
            "change": params.change,
        }
        try:
            detail["schema_id"] = registry.register(control.topic, schema)
        except SchemaRefusedError as refused:
            self._record(EventKind.SCHEMA_REFUSED, {**detail, "reason": refused.reason})
            return
        _write(self, control.model_copy(update={"version": "v2"}))
        self._record(EventKind.SCHEMA_ROLLED, detail)

    def heal(self) -> None:
        """Nothing: a rolled-out schema stays (deploys roll forward)."""

    def _record(self, kind: EventKind, detail: dict[str, object]) -> None:
        if self.context.recorder is not None:
            self.context.recorder.event(kind, self.fault_id, self.target, detail)


class SchemaBypass(Fault):
    """One producer process writes JSON bodies, skipping the registry, for the window."""

    action = "schema-bypass"
    default_target = "producer-0"

    def _process_index(self) -> int:
        prefix, _, index = self.target.partition("-")
        if prefix != "producer" or not index.isdigit():
            raise UserError(
                f"fault 'schema-bypass' targets a producer process (producer-0 ...), not "
                f"{self.target!r}: set target: producer-<n>"
            )
        return int(index)

    def check(self) -> None:
        self._process_index()
        _control(self)

    def apply(self) -> None:
        control = _control(self)
        bypass = tuple(sorted({*control.bypass, self._process_index()}))
        _write(self, control.model_copy(update={"bypass": bypass}))

    def heal(self) -> None:
        control = _control(self)
        bypass = tuple(i for i in control.bypass if i != self._process_index())
        _write(self, control.model_copy(update={"bypass": bypass}))
