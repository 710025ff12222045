"""Events encoded with a schema from a schema registry, in the Confluent wire format
(``wire.py``; Avro through confluent-kafka's serializers: ``avro_registry.py``)."""

from typing import TYPE_CHECKING

from harness.errors import UserError

if TYPE_CHECKING:
    from harness.schemas.avro_registry import AvroRegistry

INSTALL_HINT = "pip install 'brokerbench[schemas]'"


def open_avro_registry(url: str, timeout: float = 10.0) -> "AvroRegistry":
    """An ``AvroRegistry`` at ``url``; a one-line ``UserError`` naming the extra to install
    when the registry client's dependencies (fastavro, httpx2, authlib ...) are missing."""
    try:
        from harness.schemas.avro_registry import AvroRegistry
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise UserError(f"the schema registry client needs {missing}: {INSTALL_HINT}") from exc
    return AvroRegistry(url, timeout)
