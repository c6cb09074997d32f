"""A fault-injecting OpenAI-compatible server on loopback, for tests.

``POST /v1/chat/completions`` answers a sentiment task: it reads the
review in the last user message (a ``/v1/completions`` prompt is read as the fake provider reads one) and labels it with ``migrator.testing.true_label``, right
or wrong with the probability of the ``migrator.testing.PROFILES`` entry the model id
ends with (``fault-fewshot`` behaves like ``fake/fewshot``; anything else like
``fake/oracle``; ``...-echo`` replies with the last user message). So a migration run
against it has something to find. At temperature 0 the reply is a function of the
request; above it, of the request and its ``seed``, and a request without a seed gets
a fresh sample each time, as from a real server.

Faults are decided per request *attempt* by a seeded RNG, so a retry can succeed:

==============  ====================================================================
``rate_limit``   429 with ``Retry-After`` (``FaultPlan.retry_after``)
``server_error`` 500
``unavailable``  503
``reset``        the TCP connection is reset (RST) before any reply
``hang``         no reply for ``FaultPlan.hang_s`` (longer than the client timeout)
``malformed``    200 with a body that is not JSON
``empty``        200 with ``"choices": []``
``truncated``    200, the label then a cut-off ramble, ``finish_reason: "length"``
``auth``         401 (not retryable)
==============  ====================================================================

``hold_after`` makes every request after the first N wait until ``release()`` (or the
server stops): a client is then stuck at a known point, e.g. for a test to kill it.

``max_consecutive`` bounds the faults one request body gets in a row, so with enough
retries every request is eventually answered; ``broken_marker`` makes the requests
whose text contains it fail every time, and ``model_faults`` every request to a model.
With ``echo_key`` error bodies quote the bearer token back, as some providers do
("Incorrect API key provided: sk-...").

Every attempt is recorded in ``FaultServer.attempts`` (path, Authorization header,
request JSON, fault), so tests can assert what the provider really received.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from migrator.testing._fake_provider import PROFILES, last_input, true_label

__all__ = [
    "FAULTS",
    "KEY_ENV",
    "RETRYABLE_FAULTS",
    "Attempt",
    "FaultPlan",
    "FaultServer",
    "answer",
    "server_spec",
]

FAULTS = ("rate_limit", "server_error", "unavailable", "reset", "hang", "malformed", "empty", "truncated", "auth")
RETRYABLE_FAULTS = tuple(f for f in FAULTS if f not in ("truncated", "auth"))


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, and how often.

    Args:
        rates: probability of each fault per attempt (they add up; the rest is answered).
        seed: seeds the per-attempt fault draws.
        retry_after: the ``Retry-After`` header of a 429 (seconds, as text).
        hang_s: how long a ``hang`` keeps the client waiting before dropping it.
        latency_s: added to every answered request.
        max_consecutive: faults one request body can get in a row; ``None``: no bound.
        broken_marker: requests containing this text get ``broken_kind`` every time.
        echo_key: error bodies quote the Authorization bearer token back.
        model_faults: models (as the server sees them) that get this fault every time.
        hold_after: requests after the first N wait until ``FaultServer.release()``.
        hold_key: hold (and count) only the requests that carry this bearer token.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: str = "0"
    hang_s: float = 1.5
    latency_s: float = 0.0
    max_consecutive: int | None = 3
    broken_marker: str | None = None
    broken_kind: str = "server_error"
    echo_key: bool = False
    model_faults: Mapping[str, str] = field(default_factory=dict)
    hold_after: int | None = None
    hold_key: str | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | {self.broken_kind} | set(self.model_faults.values())) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError(f"fault rates add up to more than 1: {dict(self.rates)}")


@dataclass(frozen=True)
class Attempt:
    """One request as the server received it."""

    path: str
    authorization: str | None
    body: Any
    fault: str | None


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _messages(body: Mapping[str, Any]) -> list[Any]:
    """A chat request's messages; a completion request's prompt as one user message."""
    if "prompt" in body:
        return [{"role": "user", "content": str(body["prompt"])}]
    return list(body.get("messages") or [])


def answer(body: Mapping[str, Any]) -> str:
    """The reply a fault-free server gives to a chat or completion request."""
    model = str(body.get("model", ""))
    messages = _messages(body)
    # read as the fake provider reads it: a completion prompt's demos are its "Answer:" blocks
    last, n_demos = last_input(messages)
    if model.endswith("-echo"):
        return last
    profile = PROFILES.get(model.rsplit("-", 1)[-1], PROFILES["oracle"])
    temperature = float(body.get("temperature") or 0.0)
    label = true_label(last)
    everything = "\n".join(str(m.get("content", "")) for m in messages)
    # Above temperature 0 a reply is a sample: the same one again only for the same seed,
    # as from a real server (llama.cpp, OpenAI); greedy decoding needs no seed.
    sample = "" if temperature <= 0 else str(body["seed"]) if "seed" in body else str(random.random())
    if _unit(model, everything, f"{temperature:.3f}", sample) < profile.p_correct(n_demos, temperature):
        return label
    return "negative" if label == "positive" else "positive"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Resets, hangs and killed clients end handlers abruptly; that is the point."""


class FaultServer:
    """The server, run on a background thread: ``with FaultServer(plan) as server: ...``."""

    def __init__(self, plan: FaultPlan = FaultPlan()) -> None:
        self.plan = plan
        self.attempts: list[Attempt] = []
        self.error_bodies: list[str] = []
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._streak: Counter[str] = Counter()
        self._released = threading.Event()
        self._arrived = 0
        self._held: list[str | None] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return int(self._httpd.server_address[1])

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def faults(self) -> Counter[str]:
        """How many attempts got each fault."""
        with self._lock:
            return Counter(a.fault for a in self.attempts if a.fault)

    def release(self) -> None:
        """Let held requests (``FaultPlan.hold_after``) through, and all later ones."""
        self._released.set()

    def held(self) -> Counter[str | None]:
        """Requests held for ``release()`` (now or before), by Authorization header."""
        with self._lock:
            return Counter(self._held)

    def _hold(self, authorization: str | None) -> None:
        if self.plan.hold_key is not None and authorization != f"Bearer {self.plan.hold_key}":
            return
        with self._lock:
            self._arrived += 1
            hold = (
                self.plan.hold_after is not None
                and self._arrived > self.plan.hold_after
                and not self._released.is_set()
            )
            if hold:
                self._held.append(authorization)
        if hold:
            self._released.wait(timeout=120)

    def _decide(self, raw: bytes, model: str, text: str) -> str | None:
        """The fault for this attempt, or None to answer it."""
        plan = self.plan
        key = hashlib.sha256(raw).hexdigest()
        with self._lock:
            if model in plan.model_faults:
                return plan.model_faults[model]
            if plan.broken_marker and plan.broken_marker in text:
                return plan.broken_kind
            draw = self._rng.random()
            if plan.max_consecutive is not None and self._streak[key] >= plan.max_consecutive:
                self._streak[key] = 0
                return None
            edge = 0.0
            for kind in FAULTS:
                edge += plan.rates.get(kind, 0.0)
                if draw < edge:
                    if kind in RETRYABLE_FAULTS:
                        self._streak[key] += 1
                    return kind
            self._streak[key] = 0
            return None

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def __enter__(self) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str] = {}) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _error(self, status: int, message: str, kind: str, headers: Mapping[str, str] = {}) -> None:
                auth = self.headers.get("Authorization") or ""
                if server.plan.echo_key and auth:
                    message += f" (Incorrect API key provided: {auth.removeprefix('Bearer ')})"
                body = json.dumps({"error": {"message": message, "type": kind, "code": status}})
                with server._lock:
                    server.error_bodies.append(body)
                self._send(status, body.encode(), headers)

            def _reset(self) -> None:
                # SO_LINGER with a zero timeout turns close() into a TCP RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": []}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "request body is not JSON"}}')
                    return
                if not self.path.rstrip("/").endswith("/completions"):
                    self._send(404, b'{"error": {"message": "only /v1/chat/completions and /v1/completions are served"}}')
                    return
                server._hold(self.headers.get("Authorization"))
                fault = server._decide(raw, str(body.get("model")), json.dumps(_messages(body), ensure_ascii=False))
                server._record(Attempt(self.path, self.headers.get("Authorization"), body, fault))
                self._respond(body, fault)

            def _respond(self, body: Mapping[str, Any], fault: str | None) -> None:
                plan = server.plan
                if fault == "rate_limit":
                    self._error(
                        429, "Rate limit reached, slow down", "rate_limit_exceeded", {"Retry-After": plan.retry_after}
                    )
                elif fault == "server_error":
                    self._error(500, "The server had an error while processing your request", "server_error")
                elif fault == "unavailable":
                    self._error(503, "The engine is currently overloaded", "service_unavailable")
                elif fault == "auth":
                    self._error(401, "Invalid authentication", "invalid_request_error")
                elif fault == "reset":
                    self._reset()
                elif fault == "hang":
                    time.sleep(plan.hang_s)
                    self._reset()
                elif fault == "malformed":
                    self._send(
                        200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
                    )
                else:
                    if plan.latency_s:
                        time.sleep(plan.latency_s)
                    self._complete(body, fault)

            def _complete(self, body: Mapping[str, Any], fault: str | None) -> None:
                text, finish = answer(body), "stop"
                if fault == "truncated":
                    text, finish = f"{text}\nThe reviewer seems to feel that the", "length"
                completion = "prompt" in body
                reply_text = {"text": text} if completion else {"message": {"role": "assistant", "content": text}}
                choices = (
                    []
                    if fault == "empty"
                    else [{"index": 0, **reply_text, "finish_reason": finish, "logprobs": None}]
                )
                prompt_tokens = sum(_words(str(m.get("content", ""))) for m in _messages(body))
                reply = {
                    "id": f"chatcmpl-{len(server.attempts)}",
                    "object": "text_completion" if completion else "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": _words(text),
                        "total_tokens": prompt_tokens + _words(text),
                    },
                }
                self._send(200, json.dumps(reply).encode())

        httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


KEY_ENV = "FAULT_API_KEY"


def server_spec(api_base: str, dataset: str, **overrides: Any) -> dict[str, Any]:
    """A migration.yaml (as a mapping) whose legacy model and targets live on this server.

    ``fault-fewshot`` is right half the time without demos and always with 2, so the
    search has one best config; ``fault-weak`` is right 40% of the time. Temperature is
    left out of the space so no two configs tie at the top.
    """

    def at_server(model: str) -> dict[str, str]:
        return {"model": model, "api_base": api_base, "api_key_env": KEY_ENV}

    spec: dict[str, Any] = {
        "name": "flaky-provider",
        "app": {
            **at_server("openai/fault-oracle"),
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the review."},
                {"role": "user", "content": "Review: {{ review }}"},
            ],
        },
        "dataset": {"path": dataset, "id_field": "id", "expected_field": "label", "input_fields": ["review"]},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": [at_server("openai/fault-fewshot"), at_server("openai/fault-weak")],
        "search_space": {
            "temperature": None,
            "demos": {"k": [0, 2], "strategies": ["random"]},
            "pruner": "none",
            "chunk_size": 10,
            "max_retries": 4,
            "timeout_s": 2.0,
        },
        "budget": {"trials": 5},
        "seed": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
