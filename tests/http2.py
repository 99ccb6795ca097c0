"""A bare HTTP/2 client for tests that need to misbehave as a real gRPC client cannot: hold a
connection without calls, open many streams and never read their replies. Plaintext only; headers
are sent as HPACK literals (no table, no Huffman), which every HTTP/2 server must accept."""
from __future__ import annotations

import socket
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_CONCURRENT_STREAMS = 0x3


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _integer(value: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = bytearray([limit]), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _headers(pairs: list[tuple[str, str]]) -> bytes:
    """Literal header fields without indexing, new names (RFC 7541 6.2.2)."""
    out = bytearray()
    for name, value in pairs:
        out += b"\x00" + _integer(len(name)) + name.encode() + _integer(len(value)) + value.encode()
    return bytes(out)


class Connection:
    """One HTTP/2 connection. `handshake()` sends the preface and acknowledges the server's
    settings (returned as {id: value}); after that nothing is read unless a method says so."""

    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.authority = f"{host}:{port}"
        self.next_stream = 1
        self._buffer = b""

    def handshake(self) -> dict[int, int]:
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        while True:
            kind, flags, _, payload = self.read_frame()
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(frame(SETTINGS, ACK, 0))
                return {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
                        for i in range(0, len(payload), 6)}

    def call(self, path: str, message: bytes) -> int:
        """Send one unary gRPC request on a new stream (not waiting for anything); its stream id."""
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        head = _headers([(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.authority),
                         ("content-type", "application/grpc"), ("te", "trailers")])
        body = b"\x00" + struct.pack(">I", len(message)) + message
        self.sock.sendall(frame(HEADERS, END_HEADERS, stream, head) + frame(DATA, END_STREAM, stream, body))
        return stream

    def read_frame(self) -> tuple[int, int, int, bytes]:
        """The next frame (type, flags, stream, payload); ConnectionError if the server closed."""
        while len(self._buffer) < 9 or len(self._buffer) < 9 + int.from_bytes(self._buffer[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        length = int.from_bytes(self._buffer[:3], "big")
        head, payload, self._buffer = self._buffer[:9], self._buffer[9:9 + length], self._buffer[9 + length:]
        return head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF, payload

    def close(self) -> None:
        self.sock.close()
