"""The memory broker process (a TEST DOUBLE): ``python -m harness.drivers.memory.server --port N``.

Serves one ``MemoryBroker`` on 127.0.0.1 only, a thread per connection (each driver producer
and consumer keeps one). ``brokerbench up --only memory`` starts it as a stack service.
"""

import argparse
import logging
import socket
import socketserver
import sys
from collections.abc import Callable
from typing import Any

from harness.drivers.memory.broker import BrokerError, MemoryBroker
from harness.drivers.memory.knobs import Knobs
from harness.drivers.memory.wire import ConnectionClosedError, recv_frame, send_frame
from harness.settings import LOOPBACK

_log = logging.getLogger("memory-broker")
Request = dict[str, Any]
Answer = tuple[dict[str, Any], list[bytes]]
Handler = Callable[[MemoryBroker, Request, list[bytes]], Answer]


def _pairs(request: Request, prefix: str) -> list[tuple[int, int]]:
    partitions, offsets = (
        request.get(f"{prefix}_partitions", []),
        request.get(f"{prefix}_offsets", []),
    )
    return list(zip(partitions, offsets, strict=True))


def _ping(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    return {"broker": "memory", "test_double": True}, []


def _create(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    dead_letter = broker.create(
        request["name"],
        int(request["partitions"]),
        request["groups"],
        request.get("max_deliveries"),
        Knobs.model_validate(request.get("knobs", {})),
    )
    return {"dead_letter": dead_letter}, []


def _delete(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    broker.delete(request["name"])
    return {}, []


def _publish(broker: MemoryBroker, request: Request, payloads: list[bytes]) -> Answer:
    partitions, offsets = broker.publish(request["name"], request["keys"], payloads)
    return {"partitions": partitions, "offsets": offsets}, []


def _join(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    member = broker.join(request["name"], request["group"], float(request["visibility"]))
    return {"member": member}, []


def _poll(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    """Settles the acks the consumer sends along first: one round trip per poll."""
    acks = _pairs(request, "ack")
    if acks:
        broker.settle(request["name"], request["group"], acks, [])
    found = broker.poll(request["member"], int(request["max"]), float(request["timeout"]))
    answer = {
        "partitions": [d.partition for d in found],
        "offsets": [d.offset for d in found],
        "keys": [d.key for d in found],
        "attempts": [d.attempt for d in found],
    }
    return answer, [d.payload for d in found]


def _settle(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    broker.settle(
        request["name"], request["group"], _pairs(request, "ack"), _pairs(request, "nack")
    )
    return {}, []


def _leave(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    broker.leave(request["member"])
    return {}, []


def _backlog(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    return {"backlog": broker.backlog(request["name"], request["group"])}, []


def _stats(broker: MemoryBroker, request: Request, _: list[bytes]) -> Answer:
    return {"stats": broker.stats(request["name"])}, []


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "create": _create,
    "delete": _delete,
    "publish": _publish,
    "join": _join,
    "poll": _poll,
    "settle": _settle,
    "leave": _leave,
    "backlog": _backlog,
    "stats": _stats,
}


def answer(broker: MemoryBroker, request: Request, payloads: list[bytes]) -> Answer:
    """The response to one request; ``{"error": ...}`` for one the broker refuses."""
    handler = HANDLERS.get(str(request.get("op")))
    if handler is None:
        return {"error": f"unknown operation {request.get('op')!r}"}, []
    try:
        return handler(broker, request, payloads)
    except (BrokerError, LookupError, TypeError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}, []


class _Connection(socketserver.BaseRequestHandler):
    server: "MemoryServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        try:
            while True:
                request, payloads = recv_frame(reader)
                header, body = answer(self.server.broker, request, payloads)
                send_frame(sock, header, body)
        except ConnectionClosedError:
            return
        except (OSError, ValueError) as exc:  # a reset, or a peer that is not a driver
            _log.info("connection from %s dropped: %s", self.client_address, exc)
        finally:
            reader.close()


class MemoryServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()
        super().__init__((LOOPBACK, port), _Connection)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="brokerbench's in-memory TEST DOUBLE broker")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args(argv).port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with MemoryServer(port) as server:
        _log.info("memory broker (a test double, not a real broker) on %s:%d", LOOPBACK, port)
        sys.stdout.flush()
        server.serve_forever()


if __name__ == "__main__":
    main()
