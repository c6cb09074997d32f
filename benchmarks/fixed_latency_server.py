"""A loopback OpenAI-compatible server that answers every request after a fixed delay.

No concurrency limit: a request waits on a timer, not a worker, so N requests in
flight take one latency, not N. The latency is part of the address, so one server
serves every latency a benchmark needs::

    http://127.0.0.1:PORT/lat/1.0/v1        1 s per request
    http://127.0.0.1:PORT/lat/0/v1          as fast as the server can answer
    http://127.0.0.1:PORT/dspy/lat/1.0/v1   the same, replying in DSPy's field format

``POST .../chat/completions`` and ``POST .../completions`` return a fixed reply
("positive"). ``GET /stats`` returns the requests served and the most that were in
flight at once; ``POST /reset`` zeroes them.

It is a bare asyncio protocol rather than a web framework so that its own CPU cost per
request (about 0.1 ms) stays far below any client's: it must never be the bottleneck
of what it measures. HTTP/1.1 keep-alive with Content-Length bodies, which is what
every client measured here sends.

Run it as a process (prints ``READY <port>``) or from Python with :func:`start_server`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

_USAGE = {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}


def _chat(content: str) -> bytes:
    message = {"role": "assistant", "content": content}
    return json.dumps(
        {
            "id": "chatcmpl-fixed",
            "object": "chat.completion",
            "created": 0,
            "model": "fixed",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _USAGE,
        }
    ).encode()


_BODIES = {
    "chat": _chat("positive"),
    "dspy": _chat("[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]"),
    "text": json.dumps(
        {
            "id": "cmpl-fixed",
            "object": "text_completion",
            "created": 0,
            "model": "fixed",
            "choices": [{"index": 0, "text": "positive", "finish_reason": "stop", "logprobs": None}],
            "usage": _USAGE,
        }
    ).encode(),
}


class _State:
    def __init__(self) -> None:
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def as_dict(self) -> dict[str, int]:
        return {"served": self.served, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class _Connection(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = lines[0].split(" ", 2)
            self._route(method, path)

    def _route(self, method: str, path: str) -> None:
        state = self.state
        if method == "GET" and path == "/stats":
            self._send(_response(200, json.dumps(state.as_dict()).encode()))
            return
        if method == "POST" and path == "/reset":
            state.served, state.max_in_flight = 0, state.in_flight
            self._send(_response(200, json.dumps(state.as_dict()).encode()))
            return
        parts = path.strip("/").split("/")
        flavour = "chat"
        if parts and parts[0] == "dspy":
            flavour, parts = "dspy", parts[1:]
        if method != "POST" or len(parts) < 3 or parts[0] != "lat" or parts[-1] not in ("completions",):
            self._send(_response(404, b'{"error": {"message": "not found"}}'))
            return
        try:
            latency = float(parts[1])
        except ValueError:
            self._send(_response(404, b'{"error": {"message": "bad latency"}}'))
            return
        if parts[-2] != "chat":
            flavour = "text"
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        reply = _response(200, _BODIES[flavour])
        if latency > 0:
            asyncio.get_running_loop().call_later(latency, self._answer, reply)
        else:
            self._answer(reply)

    def _answer(self, reply: bytes) -> None:
        self.state.in_flight -= 1
        self.state.served += 1
        self._send(reply)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(port: int = 0) -> tuple[asyncio.Server, int]:
    """Start serving on 127.0.0.1 in the running loop; returns the server and its port."""
    state = _State()
    server = await asyncio.get_running_loop().create_server(lambda: _Connection(state), "127.0.0.1", port, backlog=4096)
    return server, int(server.sockets[0].getsockname()[1])


@contextmanager
def start_server() -> Iterator[str]:
    """Run the server in a child process; yields its base URL (``http://127.0.0.1:PORT``)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = proc.stdout.readline()
        while not line.startswith("READY") and line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError("the fixed-latency server did not start")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible server with a fixed latency per request")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def run() -> Any:
        server, port = await serve(args.port)
        print(f"READY {port}", flush=True)
        async with server:
            await server.serve_forever()

    with suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
