"""The one loopback OpenAI-compatible server of the tests and benchmarks.

``with LoopbackServer(plan) as server:`` serves on ``127.0.0.1`` from a background
thread's event loop:

- ``POST .../chat/completions`` and ``POST .../completions`` are answered by a
  :data:`~migrator.testing._replies.Responder` (by default the sentiment reader of
  :mod:`migrator.testing._replies`), after the plan's latency plus the one in the
  address: ``http://127.0.0.1:PORT/lat/0.2/v1`` waits 0.2 s per request, so one server
  serves every latency a benchmark needs. A waiting request holds a timer, not a
  worker: N requests in flight take one latency, not N.
- Faults come from the :class:`~migrator.testing._faults.FaultPlan`; ``then()``
  scripts the next replies outright (a status, headers, a body, a delay).
- What it received is recorded: ``attempts`` (path, Authorization header, request JSON,
  fault), ``error_bodies``, and the counts ``served``, ``in_flight``, ``max_in_flight``,
  also as JSON at ``GET /stats`` (``POST /reset`` zeroes them) for a server in another
  process. ``GET .../models`` lists no models, as an empty server does.

With ``echo_key`` error bodies quote the bearer token back, as some providers do
("Incorrect API key provided: sk-...").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from migrator.testing._faults import ERRORS, FaultDraws, FaultPlan
from migrator.testing._http import Connection, Request
from migrator.testing._replies import (
    Attempt,
    Completion,
    Responder,
    completion_document,
    request_messages,
    sentiment_reply,
)

__all__ = ["LoopbackServer", "Reply"]

_NO_FAULTS = FaultPlan()
_HOLD_S = 120.0
_RAMBLE = "\nThe reviewer seems to feel that the"
_MALFORMED = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass(frozen=True)
class Reply:
    """A scripted answer to one request (see ``LoopbackServer.then``)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # None: the responder's completion; a str is sent as it is, else as JSON
    delay_s: float = 0.0


def _path_latency(path: str) -> float | None:
    """The seconds a ``/lat/<s>/`` segment of the path asks for (0 without one); None if not a number."""
    parts = path.strip("/").split("/")
    if "lat" not in parts[:-1]:
        return 0.0
    try:
        return max(0.0, float(parts[parts.index("lat") + 1]))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Exchange:
    """One completion request on its way to an answer."""

    connection: Connection
    request: Request
    body: Any
    latency_s: float
    close: bool


class LoopbackServer:
    """An OpenAI-compatible server with latency, faults and a record of what it received.

    Args:
        plan: the faults, holds and latency.
        reply: answers each request that is not faulted or scripted.
        record: keep every attempt in ``attempts`` (a benchmark's millions need not be).
        port: where to listen; 0 picks a free port.
    """

    def __init__(
        self, plan: FaultPlan = _NO_FAULTS, *, reply: Responder = sentiment_reply, record: bool = True, port: int = 0
    ) -> None:
        self.plan = plan
        self.reply = reply
        self.record = record
        self.attempts: list[Attempt] = []
        self.error_bodies: list[str] = []
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._draws = FaultDraws(plan)
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._arrived = 0
        self._numbered = 0
        self._held: list[str | None] = []
        self._want_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release_waiters: asyncio.Event | None = None
        self._connections: set[Connection] = set()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._port is not None, "the server is not running"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def then(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, whatever the plan says."""
        self._script.extend(replies)

    def faults(self) -> Counter[str]:
        """How many attempts got each fault."""
        with self._lock:
            return Counter(a.fault for a in self.attempts if a.fault)

    def release(self) -> None:
        """Let held requests (``FaultPlan.hold_after``) through, and all later ones."""
        self._released.set()
        loop, waiters = self._loop, self._release_waiters
        if loop is not None and waiters is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just stopped
                loop.call_soon_threadsafe(waiters.set)

    def held(self) -> Counter[str | None]:
        """Requests held for ``release()`` (now or before), by Authorization header."""
        with self._lock:
            return Counter(self._held)

    def stats(self) -> dict[str, int]:
        return {"served": self.served, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    # ------------------------------------------------------------------ running

    def __enter__(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._serve, name="loopback-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._port is None:
            raise RuntimeError("the loopback server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(self._listen(loop))
        except BaseException:
            loop.close()
            raise
        finally:
            self._ready.set()  # __enter__ reports a server that did not start
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.reset()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        self._release_waiters = asyncio.Event()
        if self._released.is_set():
            self._release_waiters.set()
        server = await loop.create_server(
            lambda: Connection(self._handle, self._connections), "127.0.0.1", self._want_port, backlog=4096
        )
        self._loop, self._port = loop, int(server.sockets[0].getsockname()[1])
        return server

    # ------------------------------------------------------------------ requests

    def _handle(self, connection: Connection, request: Request) -> None:
        close = not request.keep_alive
        if request.method == "GET":
            self._get(connection, request.path, close)
        elif request.method == "POST" and request.path.rstrip("/") == "/reset":
            self.served, self.max_in_flight = 0, self.in_flight
            connection.send(200, json.dumps(self.stats()).encode(), close=close)
        elif request.method == "POST":
            self._post(connection, request, close)
        else:
            connection.send(405, b'{"error": {"message": "method not allowed"}}', close=close)

    def _get(self, connection: Connection, path: str, close: bool) -> None:
        if path.rstrip("/") == "/stats":
            connection.send(200, json.dumps(self.stats()).encode(), close=close)
        elif path.rstrip("/").endswith("/models"):
            connection.send(200, json.dumps({"object": "list", "data": []}).encode(), close=close)
        else:
            connection.send(404, b'{"error": {"message": "not found"}}', close=close)

    def _post(self, connection: Connection, request: Request, close: bool) -> None:
        try:
            body = json.loads(request.body)
        except ValueError:
            connection.send(400, b'{"error": {"message": "request body is not JSON"}}', close=close)
            return
        if not request.path.rstrip("/").endswith("/completions"):
            message = b'{"error": {"message": "only /v1/chat/completions and /v1/completions are served"}}'
            connection.send(404, message, close=close)
            return
        latency = _path_latency(request.path)
        if latency is None:
            connection.send(404, b'{"error": {"message": "bad latency"}}', close=close)
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        exchange = _Exchange(connection, request, body, latency, close)
        if self._holds(request.headers.get("authorization")):
            asyncio.get_running_loop().create_task(self._after_hold(exchange))
        else:
            self._answer(exchange)

    def _holds(self, authorization: str | None) -> bool:
        """Whether this request waits for ``release()``; counts it if the plan counts it."""
        plan = self.plan
        if plan.hold_key is not None and authorization != f"Bearer {plan.hold_key}":
            return False
        with self._lock:
            self._arrived += 1
            hold = plan.hold_after is not None and self._arrived > plan.hold_after and not self._released.is_set()
            if hold:
                self._held.append(authorization)
        return hold

    async def _after_hold(self, exchange: _Exchange) -> None:
        assert self._release_waiters is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release_waiters.wait(), timeout=_HOLD_S)
        self._answer(exchange)

    def _answer(self, exchange: _Exchange) -> None:
        scripted = self._script.popleft() if self._script else None
        fault = None if scripted is not None else self._fault(exchange)
        attempt = Attempt(exchange.request.path, exchange.request.headers.get("authorization"), exchange.body, fault)
        number = self._record(attempt)
        if scripted is not None:
            self._scripted(exchange, scripted, attempt, number)
        elif fault == "reset":
            self._drop(exchange)
        elif fault == "hang":
            self._drop(exchange, after_s=self.plan.hang_s)
        elif fault in ERRORS:
            self._error(exchange, fault)
        elif fault == "malformed":
            self._send(exchange, 200, _MALFORMED)
        else:
            payload = json.dumps(self._completion(attempt, number, fault)).encode()
            self._send(exchange, 200, payload, after_s=self.plan.latency_s + exchange.latency_s)

    def _fault(self, exchange: _Exchange) -> str | None:
        body = exchange.body
        return self._draws.decide(
            exchange.request.body,
            str(body.get("model")),
            lambda: json.dumps(request_messages(body), ensure_ascii=False),
        )

    def _record(self, attempt: Attempt) -> int:
        """Keep the attempt; its number, counting from 1 (a reply's id)."""
        with self._lock:
            self._numbered += 1
            if self.record:
                self.attempts.append(attempt)
            return self._numbered

    def _completion(self, attempt: Attempt, number: int, fault: str | None) -> dict[str, Any]:
        completion, finish = self.reply(attempt), "stop"
        if fault == "truncated":
            completion = _truncated(completion)
            finish = "length"
        return completion_document(attempt.body, completion, number=number, finish=finish, empty=fault == "empty")

    def _scripted(self, exchange: _Exchange, reply: Reply, attempt: Attempt, number: int) -> None:
        if reply.body is None:
            payload = json.dumps(self._completion(attempt, number, None)).encode()
        else:
            payload = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
        self._send(exchange, reply.status, payload, reply.headers, after_s=reply.delay_s)

    def _error(self, exchange: _Exchange, fault: str) -> None:
        status, message, kind = ERRORS[fault]
        authorization = exchange.request.headers.get("authorization") or ""
        if self.plan.echo_key and authorization:
            message += f" (Incorrect API key provided: {authorization.removeprefix('Bearer ')})"
        body = json.dumps({"error": {"message": message, "type": kind, "code": status}})
        with self._lock:
            self.error_bodies.append(body)
        headers = {"Retry-After": self.plan.retry_after} if fault == "rate_limit" else {}
        self._send(exchange, status, body.encode(), headers)

    def _send(
        self,
        exchange: _Exchange,
        status: int,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        after_s: float = 0.0,
    ) -> None:
        if after_s > 0:
            asyncio.get_running_loop().call_later(after_s, self._send, exchange, status, payload, headers)
            return
        self._done()
        exchange.connection.send(status, payload, headers, close=exchange.close)

    def _drop(self, exchange: _Exchange, *, after_s: float = 0.0) -> None:
        """End the request with a TCP reset instead of a reply."""
        if after_s > 0:
            asyncio.get_running_loop().call_later(after_s, self._drop, exchange)
            return
        self._done()
        exchange.connection.reset()

    def _done(self) -> None:
        self.in_flight -= 1
        self.served += 1


def _truncated(completion: Completion) -> Completion:
    """The completion cut off mid-ramble, as at a ``max_tokens`` limit."""
    text = completion.text + _RAMBLE
    return replace(completion, text=text, completion_tokens=completion.completion_tokens + len(_RAMBLE.split()))
