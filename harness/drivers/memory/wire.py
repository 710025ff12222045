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
from typing import Any, BinaryIO

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


def recv_frame(reader: BinaryIO) -> tuple[dict[str, Any], list[bytes]]:
    """The next frame's header and payloads from ``reader`` (a buffered reader of the socket,
    ``sock.makefile("rb")``: one system call reads a small frame whole); ConnectionClosedError
    at the end of the stream."""
    header_size, body_size = PREFIX.unpack(_read_exactly(reader, PREFIX.size))
    if header_size + body_size > MAX_FRAME_BYTES:
        raise ConnectionError(f"a frame of {header_size + body_size} bytes: not the memory broker")
    header = json.loads(_read_exactly(reader, header_size))
    if not isinstance(header, dict):
        raise ConnectionError("a frame whose header is not a JSON object")
    body = _read_exactly(reader, body_size) if body_size else b""
    payloads: list[bytes] = []
    start = 0
    for size in header.get("sizes", ()):
        payloads.append(body[start : start + size])
        start += size
    return header, payloads


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise ConnectionClosedError("the memory broker connection closed")
    return data
