"""Avro events through a schema registry, with confluent-kafka's serializers (fastavro inside).

``AvroRegistry`` talks to any registry that serves the Confluent Schema Registry API: the local
stack's Apicurio (``brokerbench up --only registry``, URL from ``local_registry_url``) or a
Confluent / Karapace / cloud one by URL. It registers schemas under a topic's subject
(``<topic>-value``, Confluent's default naming), sets a subject's compatibility rule, and gives
an ``AvroEncoder`` (a registered schema's records -> wire-format bytes) and an ``AvroDecoder``
(bytes -> records, as written or resolved to a reader's schema). The bytes are any driver's
payload (or a message body behind brokerbench's envelope): nothing here knows a broker.

Import it through ``harness.schemas.open_avro_registry``, which names the extra to install
when the client's dependencies are missing.

A refused schema (HTTP 409: incompatible under the subject's rule) is a ``SchemaRefusedError``
carrying the registry's reason. Apicurio answers it with error code 0 where Confluent's server
says 40901, so only the HTTP status is relied on.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from harness.errors import BrokerUnreachableError, UserError
from harness.schemas.subjects import Compatibility, subject_of
from harness.schemas.wire import UndecodableError, schema_id_of

AvroSchema = Mapping[str, Any]
"""An Avro schema as parsed JSON (a record: ``{"type": "record", "name": ..., "fields": ...}``)."""
Record = dict[str, Any]
__all__ = ["AvroRegistry", "Compatibility", "SchemaRefusedError", "subject_of"]
CONFLICT = 409
INVALID_SCHEMA = 422
_T = TypeVar("_T")


class SchemaRefusedError(UserError):
    """The registry refused a schema as incompatible with the subject's earlier versions."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(
            f"the schema registry refused the new schema of {subject!r} as incompatible "
            f"({reason}): make the change compatible (e.g. give an added field a default) or "
            "change the subject's compatibility rule"
        )
        self.subject = subject
        self.reason = reason


class AvroRegistry:
    """A schema registry's Confluent-compatible API at ``url`` (e.g. ``.../apis/ccompat/v7``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.client = SchemaRegistryClient({"url": url, "timeout": timeout, "max.retries": 0})

    def set_compatibility(self, topic: str, rule: Compatibility) -> None:
        """The rule the registry checks each new schema of ``topic``'s values against."""
        self.call(lambda: self.client.set_compatibility(subject_of(topic), rule))

    def compatibility(self, topic: str) -> str:
        return self.call(lambda: self.client.get_compatibility(subject_of(topic)))

    def register(self, topic: str, schema: AvroSchema) -> int:
        """Register ``schema`` for ``topic``'s values (a no-op when it already is); its id.
        ``SchemaRefusedError`` when the subject's rule refuses it."""
        subject = subject_of(topic)
        registered = Schema(json.dumps(schema), "AVRO")
        return self.call(lambda: self.client.register_schema(subject, registered), subject)

    def encoder(self, topic: str, schema: AvroSchema) -> "AvroEncoder":
        """An encoder of ``topic``'s values in ``schema``, registered first (so a refusal is a
        ``SchemaRefusedError`` here, never mid-stream)."""
        return AvroEncoder(self, topic, schema, self.register(topic, schema))

    def decoder(self, topic: str, reader_schema: AvroSchema | None = None) -> "AvroDecoder":
        """A decoder of ``topic``'s values: records as written, or resolved to
        ``reader_schema`` (a consumer still on v1 reading v2, or the other way round)."""
        return AvroDecoder(self, topic, reader_schema)

    def call(self, request: Callable[[], _T], subject: str | None = None) -> _T:
        """``request()`` with the registry's refusals and silences as brokerbench's errors."""
        try:
            return request()
        except SchemaRegistryError as exc:
            if exc.http_status_code == CONFLICT and subject is not None:
                raise SchemaRefusedError(subject, exc.error_message) from exc
            if exc.http_status_code == INVALID_SCHEMA:
                raise UserError(f"the schema registry refused an invalid schema: {exc}") from exc
            raise
        except Exception as exc:
            if isinstance(exc, OSError) or _is_transport_error(exc):
                raise BrokerUnreachableError(
                    f"the schema registry at {self.url} did not answer ({type(exc).__name__}): "
                    "start the local one with `brokerbench up --only registry`, or check the URL"
                ) from exc
            raise


def _is_transport_error(error: Exception) -> bool:
    """httpx's (or httpx2's) connection and timeout errors, whichever the client uses."""
    return any(cls.__name__ == "TransportError" for cls in type(error).__mro__)


class AvroEncoder:
    """Records of one topic -> wire-format bytes (magic byte, schema id, Avro binary)."""

    def __init__(
        self, registry: AvroRegistry, topic: str, schema: AvroSchema, schema_id: int
    ) -> None:
        self.topic = topic
        self.schema_id = schema_id
        self._registry = registry
        self._serializer = AvroSerializer(
            registry.client,
            json.dumps(schema),
            conf={"auto.register.schemas": False, "use.latest.version": False},
        )
        self._context = SerializationContext(topic, MessageField.VALUE)

    def encode(self, record: Record) -> bytes:
        encoded = self._registry.call(lambda: self._serializer(record, self._context))
        if not isinstance(encoded, bytes):  # only None is encoded as None
            raise TypeError(f"the Avro serializer gave {type(encoded).__name__}, not bytes")
        return encoded


class AvroDecoder:
    """Wire-format bytes of one topic -> records; ``UndecodableError`` for anything else."""

    def __init__(
        self, registry: AvroRegistry, topic: str, reader_schema: AvroSchema | None
    ) -> None:
        self.topic = topic
        self._registry = registry
        reader = json.dumps(reader_schema) if reader_schema is not None else None
        self._deserializer = AvroDeserializer(registry.client, reader)
        self._context = SerializationContext(topic, MessageField.VALUE)

    def decode(self, payload: bytes) -> Record:
        schema_id = schema_id_of(payload)  # checked first: the library's message is vaguer
        try:
            record = self._registry.call(lambda: self._deserializer(payload, self._context))
        except SchemaRegistryError as exc:
            raise UndecodableError(f"schema id {schema_id}: {exc.error_message}") from exc
        except UserError:
            raise
        except Exception as exc:  # fastavro's errors on a body its schema cannot read vary
            raise UndecodableError(f"schema id {schema_id}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(record, dict):
            raise UndecodableError(
                f"schema id {schema_id}: a {type(record).__name__}, not a record"
            )
        return record
