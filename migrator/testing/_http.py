"""Just enough HTTP/1.1 for the loopback server, as a bare asyncio protocol.

A web framework would cost several times the server's own CPU per request (about
0.1 ms here), and the server must never be the bottleneck of what a benchmark measures.
Keep-alive connections with ``Content-Length`` bodies are what every client the tests
and benchmarks use sends (aiohttp, httpx, the OpenAI SDK, urllib, promptfoo's fetch).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["Connection", "Request"]

_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Request:
    """One request: header names lower-cased, the body as sent."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def _head(data: bytes) -> tuple[str, str, dict[str, str]]:
    lines = data.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Connection(asyncio.Protocol):
    """One client connection; each complete request goes to ``handle(connection, request)``."""

    def __init__(self, handle: Callable[[Connection, Request], None], open_connections: set[Connection]) -> None:
        self._handle = handle
        self._open = open_connections
        self._buffer = b""
        self._continued = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._next_request()) is not None:
            self._handle(self, request)

    def _next_request(self) -> Request | None:
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            return None
        method, path, headers = _head(self._buffer[:end])
        start = end + len(_HEAD_END)
        length = int(headers.get("content-length") or 0)
        if len(self._buffer) < start + length:
            if headers.get("expect", "").lower() == "100-continue" and not self._continued:
                self._continued = True
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        body, self._buffer, self._continued = (
            self._buffer[start : start + length],
            self._buffer[start + length :],
            False,
        )
        return Request(method, path, headers, body)

    def send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None, *, close: bool = False) -> None:
        """Answer with a JSON body; ``close`` ends the connection after it."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        self._write(f"{head}{extra}\r\n".encode("latin-1") + body)
        if close and self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Drop the connection with a TCP RST, as a crashed server or a middlebox does."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
