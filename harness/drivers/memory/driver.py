"""The ``memory`` driver: brokerbench's in-memory TEST DOUBLE broker (``harness.drivers.memory``).

Destinations are partitioned logs; every destination is ordered per partition (the key picks
the partition, as on Kafka); groups share partitions among their members; acks are per
message, nacks redeliver, and after ``max_deliveries`` a message is dead-lettered by the
broker. Each producer and consumer keeps one connection: a producer sends what waits in one
request at a time through a ``Batcher`` (so ``send`` never waits on the network), a consumer
sends its acks along with its next poll.
"""

import socket
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO, ClassVar

from harness.drivers.base import (
    Capabilities,
    DeadLetterSupport,
    Destination,
    DestinationSpec,
    FanOut,
    LagProbe,
    OrderingScope,
    Outcome,
    Received,
    ReceivedBatch,
    SendCallback,
    SendCompletions,
    SendResult,
)
from harness.drivers.batcher import Batcher
from harness.drivers.memory.knobs import Knobs, MemoryEndpoint
from harness.drivers.memory.wire import recv_frame, send_frame
from harness.errors import BrokerUnreachableError
from harness.models import LOOPBACK

MAX_REQUEST = 1000
"""Messages per publish request at most."""


class BrokerRefusedError(Exception):
    """The broker answered with an error (an unknown destination, a bad request)."""


class Connection:
    """One socket to the broker, one request at a time; reconnects after a failure."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._lock = threading.Lock()

    def request(
        self, header: dict[str, Any], payloads: Sequence[bytes] = (), wait: float = 0.0
    ) -> tuple[dict[str, Any], list[bytes]]:
        """The broker's answer; BrokerRefusedError if it refused, OSError if the connection failed
        (the request may or may not have been applied)."""
        with self._lock:
            try:
                if self._sock is None or self._reader is None:
                    self._connect()
                assert self._sock is not None and self._reader is not None
                self._sock.settimeout(self.timeout + wait)
                send_frame(self._sock, header, payloads)
                answer, body = recv_frame(self._reader)
            except OSError:
                self.close()
                raise
        if "error" in answer:
            raise BrokerRefusedError(str(answer["error"]))
        return answer, body

    def _connect(self) -> None:
        sock = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, sock.makefile("rb")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class MemoryDriver:
    name: ClassVar[str] = "memory"
    test_double: ClassVar[bool] = True
    """Not a real broker: results say so (``environment.test_double``)."""
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering_when_ordered=OrderingScope.PARTITION,
        ordering_when_unordered=OrderingScope.PARTITION,
        dead_letter=DeadLetterSupport.BROKER,
        exactly_once=frozenset(),
        lag_probe=LagProbe.OFFSETS,
        partitions=True,
        fan_out=FanOut.GROUPS,
    )
    endpoint_model: ClassVar[type[MemoryEndpoint]] = MemoryEndpoint

    def __init__(self, endpoint: MemoryEndpoint) -> None:
        self.endpoint = endpoint
        self.knobs = Knobs.model_validate(endpoint.model_dump(include=set(Knobs.model_fields)))
        self._connection = Connection(endpoint.port, endpoint.request_timeout)
        try:
            self._connection.request({"op": "ping"})
        except OSError as exc:
            raise BrokerUnreachableError(
                f"the memory broker (a test double) at {LOOPBACK}:{endpoint.port} is "
                "unreachable: start it with `brokerbench up --only memory`"
            ) from exc

    def create_destination(self, spec: DestinationSpec) -> Destination:
        answer, _ = self._connection.request(
            {
                "op": "create",
                "name": spec.name,
                "partitions": spec.partitions,
                "groups": list(spec.groups),
                "max_deliveries": None
                if spec.dead_letter is None
                else spec.dead_letter.max_deliveries,
                "knobs": self.knobs.model_dump(),
            }
        )
        return Destination(spec, spec.name, answer.get("dead_letter"))

    def delete_destination(self, destination: Destination) -> None:
        self._connection.request({"op": "delete", "name": destination.address})

    def producer(self, destination: Destination) -> "MemoryProducer":
        return MemoryProducer(
            Connection(self.endpoint.port, self.endpoint.request_timeout), destination
        )

    def consumer(self, destination: Destination, group: str) -> "MemoryConsumer":
        connection = Connection(self.endpoint.port, self.endpoint.request_timeout)
        lease = destination.spec.redelivery_timeout
        visibility = self.endpoint.visibility_timeout if lease is None else float(lease)
        return MemoryConsumer(connection, destination, group, visibility)

    def backlog(self, destination: Destination, group: str) -> int | None:
        answer, _ = self._connection.request(
            {"op": "backlog", "name": destination.address, "group": group}
        )
        return int(answer["backlog"])

    def stats(self, destination: Destination) -> dict[str, int]:
        """What the knobs did to ``destination`` so far (for tests): appended, lost,
        duplicated, reordered, delayed, dead_lettered."""
        answer, _ = self._connection.request({"op": "stats", "name": destination.address})
        return {str(name): int(count) for name, count in answer["stats"].items()}

    def close(self) -> None:
        self._connection.close()


class _ToCallback:
    """``SendCompletions`` for one ``send``: a ``SendResult`` for its callback."""

    __slots__ = ("key", "on_complete")

    def __init__(self, key: str, on_complete: SendCallback) -> None:
        self.key = key
        self.on_complete = on_complete

    def ok(self, index: int, partition: int = -1, offset: int = -1) -> None:
        result = SendResult(self.key, Outcome.OK, f"{partition}:{offset}", partition, offset)
        self.on_complete(result)

    def failed(self, index: int, outcome: Outcome, error: str) -> None:
        self.on_complete(SendResult(self.key, outcome, error=error))


_Pending = tuple[str, bytes, SendCompletions, int]
"""A queued message: key, payload, where its outcome goes, its index."""


class MemoryProducer:
    """Sends what waits in one publish request at a time (up to ``MAX_REQUEST``), on the
    ``Batcher``'s one sender thread: each key's messages reach the broker in order."""

    def __init__(self, connection: Connection, destination: Destination) -> None:
        self._connection = connection
        self._address = destination.address
        self._batcher: Batcher[_Pending] = Batcher(
            self._publish, name="memory-send", max_batch=MAX_REQUEST, max_in_flight=1
        )

    def send(
        self, key: str, payload: bytes, on_complete: SendCallback, *, dedup_id: str | None = None
    ) -> None:
        self._batcher.add([(key, payload, _ToCallback(key, on_complete), 0)])

    def send_batch(
        self,
        keys: Sequence[str],
        payloads: Sequence[bytes],
        first_index: int,
        completions: SendCompletions,
        *,
        dedup_ids: Sequence[str] | None = None,
    ) -> None:
        self._batcher.add(
            [
                (key, payload, completions, first_index + position)
                for position, (key, payload) in enumerate(zip(keys, payloads, strict=True))
            ]
        )

    def _publish(self, items: list[_Pending]) -> None:
        request = {"op": "publish", "name": self._address, "keys": [key for key, *_ in items]}
        try:
            answer, _ = self._connection.request(request, [payload for _, payload, *_ in items])
        except BrokerRefusedError as exc:
            _failed(items, Outcome.FAIL, str(exc))
            return
        except OSError as exc:
            _failed(items, Outcome.UNKNOWN, f"{type(exc).__name__}: {exc}")
            return
        for (_, _, completions, index), partition, offset in zip(
            items, answer["partitions"], answer["offsets"], strict=True
        ):
            completions.ok(index, partition, offset)

    def flush(self, timeout: float) -> int:
        return self._batcher.flush(timeout)

    def close(self) -> None:
        self._batcher.close(30)
        self._connection.close()


def _failed(items: list[_Pending], outcome: Outcome, error: str) -> None:
    for _, _, completions, index in items:
        completions.failed(index, outcome, error)


class MemoryConsumer:
    """A member of ``group``: ``poll``/``poll_batch`` take from its partitions; acks wait for
    the next poll (or ``nack``, or ``close``) and travel with it."""

    def __init__(
        self, connection: Connection, destination: Destination, group: str, visibility: float
    ) -> None:
        self._connection = connection
        self._where = {"name": destination.address, "group": group}
        answer, _ = connection.request({"op": "join", **self._where, "visibility": visibility})
        self._member = str(answer["member"])
        self._ack_partitions: list[int] = []
        self._ack_offsets: list[int] = []

    def poll_batch(self, max_messages: int, timeout: float) -> ReceivedBatch:
        request = {
            "op": "poll",
            **self._where,
            "member": self._member,
            "max": max(1, max_messages),
            "timeout": max(0.0, timeout),
            "ack_partitions": self._ack_partitions,
            "ack_offsets": self._ack_offsets,
        }
        answer, payloads = self._connection.request(request, wait=timeout)
        self._ack_partitions, self._ack_offsets = [], []
        partitions: list[int] = answer["partitions"]
        offsets: list[int] = answer["offsets"]
        return ReceivedBatch(
            payloads=payloads,
            partitions=partitions,
            offsets=offsets,
            keys=answer["keys"],
            delivery_attempts=answer["attempts"],
            handle=(partitions, offsets),
        )

    def ack_batch(self, batch: ReceivedBatch) -> None:
        partitions, offsets = batch.handle
        self._ack_partitions.extend(partitions)
        self._ack_offsets.extend(offsets)

    def poll(self, max_messages: int, timeout: float) -> list[Received]:
        batch = self.poll_batch(max_messages, timeout)
        assert batch.partitions is not None and batch.offsets is not None
        return [
            Received(
                key,
                payload,
                f"{partition}:{offset}",
                partition,
                offset,
                attempt,
                (partition, offset),
            )
            for key, payload, partition, offset, attempt in zip(
                batch.keys or [],
                batch.payloads,
                batch.partitions,
                batch.offsets,
                batch.delivery_attempts or [],
                strict=True,
            )
        ]

    def ack(self, messages: Sequence[Received]) -> None:
        for message in messages:
            partition, offset = message.handle
            self._ack_partitions.append(partition)
            self._ack_offsets.append(offset)

    def nack(self, messages: Sequence[Received]) -> None:
        self._settle(nacks=[message.handle for message in messages])

    def close(self) -> None:
        """Sends the acks still waiting, then leaves the group (what it holds unacked is
        redelivered to the group at once)."""
        try:
            self._settle()
            self._connection.request({"op": "leave", "member": self._member})
        finally:
            self._connection.close()

    def _settle(self, nacks: Sequence[tuple[int, int]] = ()) -> None:
        if not (nacks or self._ack_offsets):
            return
        self._connection.request(
            {
                "op": "settle",
                **self._where,
                "ack_partitions": self._ack_partitions,
                "ack_offsets": self._ack_offsets,
                "nack_partitions": [partition for partition, _ in nacks],
                "nack_offsets": [offset for _, offset in nacks],
            }
        )
        self._ack_partitions, self._ack_offsets = [], []
