"""The memory broker's wire format: length-prefixed frames over one TCP connection on
127.0.0.1, one request frame answered by one response frame.

A frame is ``!II`` (header length, body length), a JSON object (the header), then the body:
the frame's payloads back to back, their lengths in the header's ``sizes``. JSON only, never
pickle, so a stranger on the loopback interface can at worst send or take test messages.
Plain sockets (not ``multiprocessing.connection``, which reads with ``os.read``) so the
producer processes' gevent can switch while a request is on the wire.
"""

import json
import socket
import struct
from collections.abc import Sequence
from typing import Any

PREFIX = struct.Struct("!II")
MAX_FRAME_BYTES = 256 * 1024 * 1024


class ConnectionClosedError(ConnectionError):
    """The other side closed the connection."""


def send_frame(sock: socket.socket, header: dict[str, Any], payloads: Sequence[bytes] = ()) -> None:
    if payloads:
        header = header | {"sizes": [len(payload) for payload in payloads]}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(payloads)
    sock.sendall(b"".join((PREFIX.pack(len(encoded), len(body)), encoded, body)))


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], list[bytes]]:
    """The next frame's header and payloads; ConnectionClosedError at a clean end of stream."""
    header_size, body_size = PREFIX.unpack(_recv_exactly(sock, PREFIX.size))
    if header_size + body_size > MAX_FRAME_BYTES:
        raise ConnectionError(f"a frame of {header_size + body_size} bytes: not the memory broker")
    header = json.loads(_recv_exactly(sock, header_size))
    if not isinstance(header, dict):
        raise ConnectionError("a frame whose header is not a JSON object")
    body = _recv_exactly(sock, body_size) if body_size else b""
    payloads: list[bytes] = []
    start = 0
    for size in header.get("sizes", ()):
        payloads.append(body[start : start + size])
        start += size
    return header, payloads


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise ConnectionClosedError("the memory broker connection closed")
        received += count
    return bytes(buffer)
