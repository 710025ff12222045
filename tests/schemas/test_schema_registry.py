"""The schema registry against the REAL registry (Apicurio, built by ``brokerbench setup``):
started through the stack (``Stack`` with ``only=["registry"]``) in a home of its own on a free
port, so the session's stack is never touched; stopped at the module's end.

Every test registers under its own topic: the registry is shared by the module's tests. The
last test stops it (a whole stack's ``down``) and checks no process is left; the ``registry``
fixture starts it again for any test run after that one (``up`` is idempotent: otherwise free)."""

import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fastavro
import psutil
import pytest

from harness.drivers.base import DestinationSpec, Outcome
from harness.drivers.targets import open_driver
from harness.errors import BrokerUnreachableError
from harness.schemas import open_avro_registry
from harness.schemas.avro_registry import AvroRegistry, SchemaRefusedError, subject_of
from harness.schemas.wire import MAGIC_BYTE, UndecodableError, frame
from harness.settings import Ports, Settings
from harness.setup import artifacts
from harness.stack import processes
from harness.stack.manager import ServiceStatus, Stack
from harness.stack.schema_registry import local_registry_url
from tests.conftest import missing_services
from tests.contract.contract import consume, send_all
from tests.memory_double import free_port, home
from tests.stack.cli import brokerbench, isolated_home

pytestmark = pytest.mark.broker  # the real registry: CI fails if this module skips

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "brokerbench.test",
    "fields": [{"name": "key", "type": "string"}, {"name": "seq", "type": "long"}],
}
ORDER_V2 = {  # BACKWARD (and FORWARD) compatible: one field added, with a default
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "note", "type": "string", "default": "none"}],
}
ORDER_SEQ_AS_STRING = {  # incompatible: a v2 reader cannot read v1's long as a string
    **ORDER_V1,
    "fields": [{"name": "key", "type": "string"}, {"name": "seq", "type": "string"}],
}


@dataclass(frozen=True)
class RegistryUnderTest:
    home: Path
    settings: Settings

    def stack(self) -> Stack:
        return Stack(self.settings, ["registry"])

    def up(self) -> None:
        with home(self.home):
            self.stack().up()

    def down(self) -> None:
        with home(self.home):
            self.stack().down()

    def status(self) -> ServiceStatus:
        with home(self.home):
            (status,) = self.stack().status()
        return status

    def pid_record(self) -> processes.ProcessRecord | None:
        with home(self.home):
            return processes.recorded(self.stack().services[0].directory)

    def client(self) -> AvroRegistry:
        return open_avro_registry(local_registry_url(self.settings.ports.registry))


@pytest.fixture(scope="module")
def started_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryUnderTest]:
    if not artifacts.schema_registry_server().installed:
        pytest.skip("the schema registry is not built: run `brokerbench setup`")
    path = isolated_home(tmp_path_factory.mktemp("registry-home"), "registry")
    registry = RegistryUnderTest(path, Settings(ports=Ports(registry=free_port())))
    try:
        registry.up()
        yield registry
    finally:
        registry.down()


@pytest.fixture
def registry(started_registry: RegistryUnderTest) -> RegistryUnderTest:
    started_registry.up()
    return started_registry


@pytest.fixture
def topic() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def avro_body(schema: dict[str, object], record: dict[str, object]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return body.getvalue()


def test_up_starts_it_healthy_on_loopback_only(registry: RegistryUnderTest) -> None:
    status = registry.status()
    port = registry.settings.ports.registry
    assert status.state == "healthy", status
    assert status.version == f"apicurio {artifacts.schema_registry.REGISTRY_VERSION}"
    assert status.ports == {"registry": port}
    assert status.pid is not None
    listening = [
        c.laddr
        for c in psutil.Process(status.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert port in {address.port for address in listening}
    assert {address.ip.removeprefix("::ffff:") for address in listening} == {"127.0.0.1"}


def test_a_record_round_trips_in_the_confluent_wire_format(
    registry: RegistryUnderTest, topic: str
) -> None:
    client = registry.client()
    encoder = client.encoder(topic, ORDER_V1)
    record = {"key": "order-7", "seq": 42}

    payload = encoder.encode(record)

    assert payload[0] == MAGIC_BYTE == 0
    assert int.from_bytes(payload[1:5], "big") == encoder.schema_id
    assert payload[5:] == avro_body(ORDER_V1, record)
    latest = client.client.get_latest_version(subject_of(topic))
    assert latest.schema_id == encoder.schema_id
    assert client.decoder(topic).decode(payload) == record


def test_a_backward_compatible_v2_is_accepted_and_both_versions_decode(
    registry: RegistryUnderTest, topic: str
) -> None:
    client = registry.client()
    client.set_compatibility(topic, "BACKWARD")
    v1 = client.encoder(topic, ORDER_V1)
    v2 = client.encoder(topic, ORDER_V2)
    assert v2.schema_id != v1.schema_id
    assert client.compatibility(topic) == "BACKWARD"
    written_v1 = v1.encode({"key": "k", "seq": 1})
    written_v2 = v2.encode({"key": "k", "seq": 2, "note": "gift"})
    assert int.from_bytes(written_v2[1:5], "big") == v2.schema_id

    reader_v2 = client.decoder(topic, ORDER_V2)
    reader_v1 = client.decoder(topic, ORDER_V1)
    assert reader_v2.decode(written_v1) == {"key": "k", "seq": 1, "note": "none"}
    assert reader_v1.decode(written_v2) == {"key": "k", "seq": 2}
    assert client.decoder(topic).decode(written_v2) == {"key": "k", "seq": 2, "note": "gift"}


def test_an_incompatible_v2_is_refused_with_a_clear_error(
    registry: RegistryUnderTest, topic: str
) -> None:
    client = registry.client()
    client.set_compatibility(topic, "BACKWARD")
    v1 = client.encoder(topic, ORDER_V1)

    with pytest.raises(SchemaRefusedError) as refused:
        client.encoder(topic, ORDER_SEQ_AS_STRING)

    message = str(refused.value)
    assert "\n" not in message
    assert f"refused the new schema of {subject_of(topic)!r} as incompatible" in message
    assert "STRING not compatible with writer type: LONG" in message  # the registry's reason
    assert refused.value.__cause__.http_status_code == 409  # type: ignore[union-attr]
    latest = client.client.get_latest_version(subject_of(topic))
    assert latest.schema_id == v1.schema_id  # v1 is still the subject's latest


def test_payloads_it_cannot_decode_are_undecodable(registry: RegistryUnderTest, topic: str) -> None:
    client = registry.client()
    encoder = client.encoder(topic, ORDER_V1)
    decoder = client.decoder(topic)
    good = encoder.encode({"key": "k", "seq": 1})

    with pytest.raises(UndecodableError, match="magic byte 123"):
        decoder.decode(b'{"key": "k", "seq": 1}')  # JSON, bypassing the registry
    with pytest.raises(UndecodableError, match="schema id 987654"):
        decoder.decode(frame(987654, good[5:]))  # an id the registry never gave
    with pytest.raises(UndecodableError, match=f"schema id {encoder.schema_id}"):
        decoder.decode(good[:6])  # the body cut short


def test_registry_encoded_events_cross_kafka_as_its_payloads(
    registry: RegistryUnderTest, stack: Stack, settings: Settings
) -> None:
    """Kafka first: the encoder's bytes are the driver's payloads, decoded on arrival by a v2
    reader while the producer rolls from v1 to v2 mid-stream."""
    if "kafka" in missing_services():
        pytest.skip(missing_services()["kafka"])
    client = registry.client()
    driver = open_driver("kafka", settings)
    destination = driver.create_destination(DestinationSpec(f"bb-schemas-{uuid.uuid4().hex[:8]}"))
    try:
        topic = destination.spec.name
        client.set_compatibility(topic, "BACKWARD")
        v1, v2 = client.encoder(topic, ORDER_V1), client.encoder(topic, ORDER_V2)
        sent = [v1.encode({"key": "k", "seq": seq}) for seq in range(5)]
        sent += [v2.encode({"key": "k", "seq": seq, "note": "v2"}) for seq in range(5, 10)]
        producer = driver.producer(destination)
        results = send_all(producer, [("k", payload) for payload in sent])
        producer.close()
        assert {result.outcome for result in results} == {Outcome.OK}

        consumer = driver.consumer(destination, "default")
        received = consume(consumer, lambda got: len(got) >= len(sent))
        consumer.close()
    finally:
        driver.delete_destination(destination)
        driver.close()
    reader = client.decoder(topic, ORDER_V2)
    decoded = [reader.decode(message.payload) for message in received]
    assert [(record["seq"], record["note"]) for record in decoded] == [
        *((seq, "none") for seq in range(5)),
        *((seq, "v2") for seq in range(5, 10)),
    ]


def test_an_unreachable_registry_is_one_line_naming_the_fix() -> None:
    client = open_avro_registry(local_registry_url(free_port()), timeout=2)
    with pytest.raises(BrokerUnreachableError) as unreachable:
        client.register("orders", ORDER_V1)
    assert "`brokerbench up --only registry`" in str(unreachable.value)


def test_status_and_logs_commands_cover_it(registry: RegistryUnderTest) -> None:
    env = os.environ | {
        "BROKERBENCH_HOME": str(registry.home),
        "BROKERBENCH_PORT_REGISTRY": str(registry.settings.ports.registry),
        "COLUMNS": "200",
    }
    status = brokerbench("status", "--only", "registry", "--json", env=env)
    assert status.returncode == 0, status.stderr
    (service,) = json.loads(status.stdout)["services"]
    assert (service["name"], service["state"]) == ("registry", "healthy")
    logs = brokerbench("logs", "registry", "--lines", "400", env=env)
    assert logs.returncode == 0, logs.stderr
    assert f"Listening on: http://127.0.0.1:{registry.settings.ports.registry}" in logs.stdout


def test_the_whole_stacks_down_stops_it_and_leaves_no_process(
    registry: RegistryUnderTest,
) -> None:
    record = registry.pid_record()
    assert record is not None and processes.is_alive(record)
    with home(registry.home):
        whole_stack = Stack(registry.settings)  # what a plain `brokerbench down` acts on
        assert "registry" in [service.name for service in whole_stack.services]
        whole_stack.down()

    assert registry.status().state == "stopped"
    assert registry.pid_record() is None
    assert not processes.is_alive(record)
    left = [p.pid for p in psutil.process_iter() if _group_of(p.pid) == record.pid]
    assert left == []


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
