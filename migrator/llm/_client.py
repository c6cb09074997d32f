"""Calling models: one async client with cache, retries, budgets and accounting.

Two roads lead out of :class:`LiteLLMClient`:

- a self-hosted OpenAI-compatible endpoint (an ``api_base`` with an ``openai/`` chat
  model or a ``text-completion-openai/`` completion model: llama.cpp, vLLM, the local
  models) is called over one pooled HTTP session per event loop, opened by the client
  and closed with it;
- every other model goes through litellm, so every provider litellm supports works.

The first road exists because litellm spends about 10 ms of CPU on each call (its
cost calculator, its logging objects and callbacks, the OpenAI SDK and httpx on top of
its aiohttp transport), which caps one process at roughly 100 calls/s, below what a
local server or a search at concurrency 128 needs; and its text-completion path opens
an aiohttp session per call that it never closes. The direct road costs well under
1 ms per call. Cost comes from :mod:`migrator.models` on both roads.

litellm is imported here and nowhere else, and only when a call needs it. Foreign
exceptions become ours in two places: ``_mapped_errors`` (litellm and the transport)
and ``_status_error`` (HTTP statuses of the direct road)::

    LLMError
    ├── LLMRateLimitError     429; retried after Retry-After when the provider says
    ├── LLMTimeoutError       no answer within timeout_s; retried
    ├── LLMProviderError      5xx, dropped connection, malformed reply; retried
    └── LLMBadRequestError    4xx, missing key; not retried
    BudgetExhausted           a call or USD budget is spent; raised before the call

Budgets are enforced before each attempt that leaves for a provider (a first try, a
retry, an attempt that then fails: every request sent counts), against a ``Ledger``
kept with the study (:mod:`migrator.llm._ledger`), so a resumed run continues the count of
the run it resumes. A run never sends more requests than ``Limits.calls`` and never
spends more than ``Limits.usd`` plus the cost of the calls already in flight.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from migrator.errors import (
    BudgetExhausted,
    LLMBadRequestError,
    LLMError,
    LLMProviderError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from migrator.llm._cache import ResponseCache, request_key
from migrator.llm._ledger import Ledger, MemoryLedger
from migrator.models import import_litellm, model_info
from migrator.redaction import redact

__all__ = [
    "CallStats",
    "Endpoint",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "Limits",
    "LiteLLMClient",
    "import_litellm",
]

Mode = Literal["chat", "completion"]
_MAX_BACKOFF_S = 60.0
_ERROR_BODY_CHARS = 500
# (litellm provider, endpoint mode) pairs whose requests are plain OpenAI JSON, so
# sending them ourselves changes nothing but the cost of sending them.
_DIRECT = {("openai", "chat"): "chat/completions", ("text-completion-openai", "completion"): "completions"}


@dataclass(frozen=True)
class Endpoint:
    """How to reach a model: its id, endpoint mode and, for self-hosted servers, where.

    ``served_by`` says which server or weights answer, where the model id alone does
    not: the address of a self-hosted endpoint, or the sha256 of a managed local
    model's weights (its port changes every run). Replies are cached under it, so
    pointing ``openai/my-model`` at another server never returns the old one's replies.
    """

    model: str
    mode: Mode = "chat"
    api_base: str | None = None
    api_key_env: str | None = None
    litellm_model: str | None = None
    served_by: str | None = None

    def call_model(self) -> str:
        return self.litellm_model or self.model

    def direct_path(self) -> str | None:
        """The path under ``api_base`` this endpoint is called on directly, if it is."""
        if not self.api_base:
            return None
        provider = self.call_model().partition("/")[0]
        return _DIRECT.get((provider, self.mode))


@dataclass(frozen=True)
class LLMRequest:
    endpoint: Endpoint
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def cache_key(self) -> str:
        # Who serves the model, not its address: a managed local server gets a new port
        # each run, and a hosted model id already names its provider.
        payload: dict[str, Any] = {
            "model": self.endpoint.model,
            "mode": self.endpoint.mode,
            "messages": [list(m) for m in self.messages],
            "prompt": self.prompt,
            "params": dict(self.params),
        }
        if self.endpoint.served_by is not None:
            payload["served_by"] = self.endpoint.served_by
        return request_key(payload)


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    finish_reason: str | None = None
    cached: bool = False


@dataclass
class CallStats:
    """Counters of one client: what this invocation made, reused, lost and spent.

    ``made`` counts calls answered, ``sent`` every request sent to a provider (retries
    and failed attempts too: what a budget counts).
    """

    made: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0
    sent: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    calls: int | None = None
    usd: float | None = None


class LLMClient(Protocol):
    stats: CallStats
    ledger: Ledger

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None) or {}
    return _retry_after_header(headers)


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    # redact() knows secrets by their variable's name; the key this call sent is
    # removed whatever its variable is called.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return redact(text)


@contextmanager
def _mapped_errors(model: str, litellm: Any | None, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Where litellm's and the transport's exceptions become ours, with secrets redacted."""
    try:
        yield
    except LLMError:
        raise
    except TimeoutError as exc:  # asyncio's and aiohttp's timeouts are TimeoutError
        raise LLMTimeoutError(f"no answer within the timeout ({type(exc).__name__})", model=model) from exc
    except Exception as exc:
        if litellm is not None:
            if isinstance(exc, litellm.RateLimitError):
                raise LLMRateLimitError(_clean(str(exc), secrets), model=model, retry_after=_retry_after(exc)) from exc
            if isinstance(exc, litellm.Timeout):
                raise LLMTimeoutError(_clean(str(exc), secrets), model=model) from exc
            if isinstance(exc, (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError)):
                raise LLMBadRequestError(_clean(str(exc), secrets), model=model) from exc
            if isinstance(exc, litellm.BadRequestError):
                raise LLMBadRequestError(_clean(str(exc), secrets), model=model) from exc
            if isinstance(exc, litellm.APIError):
                raise LLMProviderError(_clean(str(exc), secrets), model=model) from exc
        # connection resets, malformed JSON and the like from below litellm or from aiohttp
        raise LLMProviderError(_clean(f"{type(exc).__name__}: {exc}", secrets), model=model) from exc


def _status_error(status: int, headers: Mapping[str, str], body: bytes, model: str, secrets: tuple[str, ...]) -> LLMError:
    """The error an HTTP error status of an OpenAI-compatible server stands for."""
    text = body.decode("utf-8", errors="replace")
    try:
        detail = json.loads(text)["error"]
        text = str(detail.get("message", detail) if isinstance(detail, dict) else detail)
    except (ValueError, KeyError, TypeError):
        pass
    message = _clean(f"HTTP {status}: {text[:_ERROR_BODY_CHARS]}", secrets)
    if status == 429:
        return LLMRateLimitError(message, model=model, retry_after=_retry_after_header(headers))
    if status == 408:
        return LLMTimeoutError(message, model=model)
    if status == 409 or status >= 500:
        return LLMProviderError(message, model=model)
    return LLMBadRequestError(message, model=model)


class _LoopState:
    """What the client keeps per event loop: the concurrency bound and the HTTP session."""

    def __init__(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop
        self.semaphore = asyncio.Semaphore(concurrency)
        self.session: Any = None
        self.closer: AsyncGenerator[None, None] | None = None

    async def open_session(self, timeout_s: float) -> Any:
        """The pooled session, opened on first use (aiohttp comes with litellm)."""
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession(
                # The client's semaphore bounds the calls; a connector limit would only
                # queue them a second time (aiohttp's default is 100).
                connector=aiohttp.TCPConnector(limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            )
            self.closer = _close_when_the_loop_ends(self.session)
            await self.closer.__anext__()
        return self.session

    async def aclose(self) -> None:
        closer, self.closer, self.session = self.closer, None, None
        if closer is not None:
            await closer.aclose()


async def _close_when_the_loop_ends(session: Any) -> AsyncGenerator[None, None]:
    """Parked until the session is closed: by ``aclose()``, or else by the loop's end.

    asyncio.run() and asyncio.Runner finalise a loop's pending async generators before
    closing it, so a caller that never calls ``aclose()`` still leaves no unclosed
    session behind (aiohttp would print "Unclosed client session" at exit).
    """
    try:
        yield
    finally:
        await session.close()


class LiteLLMClient:
    """Async model client with a response cache, bounded concurrency, retries and budgets.

    Use it as ``async with LiteLLMClient(...) as client`` or call ``await client.aclose()``
    when done; a client whose loop ends under asyncio.run()/asyncio.Runner closes its
    connections then, and is usable again on a later loop.

    Args:
        cache: where replies are kept; ``None`` disables caching.
        limits: call and USD budgets, checked before every attempt sent to a provider.
        ledger: where what was spent is counted (default: in memory); a ledger kept
            with the study makes the budgets hold across resumed runs.
        concurrency: calls in flight at once.
        timeout_s: per-attempt timeout.
        max_retries: retries of a retryable fault (429, 5xx, timeouts, bad replies).
        backoff_s: first backoff when the provider gives no Retry-After; doubles per retry.
        seed: seeds the backoff jitter.
        direct: call self-hosted OpenAI-compatible endpoints over the client's own HTTP
            session (see the module docstring); ``False`` sends every call through litellm.
        sleep: waits out a backoff (tests pass a recording one).
    """

    def __init__(
        self,
        *,
        cache: ResponseCache | None = None,
        limits: Limits = Limits(),
        ledger: Ledger | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        seed: int = 0,
        direct: bool = True,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.cache = cache
        self.limits = limits
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.direct = direct
        self._sleep = sleep
        self.stats = CallStats()
        self._rng = random.Random(seed)
        self._state: _LoopState | None = None
        self._litellm: Any = None

    async def __aenter__(self) -> LiteLLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened on the running loop."""
        if self._state is not None and self._state.loop is asyncio.get_running_loop():
            await self._state.aclose()

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            # A new loop (each asyncio.run / Runner): the old loop's session was closed
            # when that loop ended; its semaphore cannot be awaited here.
            self._state = _LoopState(loop, self.concurrency)
        return self._state

    def _reserve_call(self) -> None:
        """Count the attempt about to be sent, or raise if a budget is spent."""
        over = self.ledger.reserve_call(self.limits.calls, self.limits.usd)
        if over == "calls":
            raise BudgetExhausted("calls", f"the call budget ({self.limits.calls}) is spent")
        if over is not None:
            raise BudgetExhausted("usd", f"the USD budget ({self.limits.usd:g}) is spent")
        self.stats.sent += 1

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One reply, from the cache when this exact request was answered before."""
        key = request.cache_key()
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cached += 1
                return LLMResponse(**{**hit, "cached": True})
        state = self._loop_state()
        try:
            api_key = self._api_key(request.endpoint)
        except LLMError:
            self.stats.failed += 1
            raise
        async with state.semaphore:
            attempt = 0
            while True:
                self._reserve_call()
                try:
                    response = await self._call_once(request, state, api_key)
                except LLMError as exc:
                    if not exc.retryable or attempt >= self.max_retries:
                        self.stats.failed += 1
                        raise
                    attempt += 1
                    self.stats.retried += 1
                    await self._sleep(self._backoff(attempt, exc))
                    continue
                break
        self.ledger.add_cost(response.cost_usd)
        self.stats.made += 1
        self.stats.cost_usd += response.cost_usd
        self.stats.prompt_tokens += response.prompt_tokens
        self.stats.completion_tokens += response.completion_tokens
        if self.cache is not None:
            value = asdict(response)
            value.pop("cached")
            self.cache.put(key, request.endpoint.model, value)
        return response

    def _backoff(self, attempt: int, exc: LLMError) -> float:
        if isinstance(exc, LLMRateLimitError) and exc.retry_after is not None:
            return min(exc.retry_after, _MAX_BACKOFF_S)
        return min(self.backoff_s * 2.0 ** (attempt - 1) * (0.5 + self._rng.random()), _MAX_BACKOFF_S)

    def _api_key(self, endpoint: Endpoint) -> str | None:
        if not endpoint.api_key_env:
            return None
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise LLMBadRequestError(f"environment variable {endpoint.api_key_env} is not set", model=endpoint.model)
        return key

    async def _call_once(self, request: LLMRequest, state: _LoopState, key: str | None) -> LLMResponse:
        endpoint = request.endpoint
        path = endpoint.direct_path() if self.direct else None
        if path is not None:
            return await self._call_direct(request, state, path, key)
        return await self._call_litellm(request, key)

    async def _call_direct(self, request: LLMRequest, state: _LoopState, path: str, key: str | None) -> LLMResponse:
        """One attempt on an OpenAI-compatible server, over the loop's pooled session."""
        endpoint = request.endpoint
        body: dict[str, Any] = {"model": endpoint.call_model().partition("/")[2], **dict(request.params)}
        if endpoint.mode == "completion":
            body["prompt"] = request.prompt or ""
        else:
            body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
        headers = {"Authorization": f"Bearer {key or 'none'}", "Content-Type": "application/json"}
        url = f"{(endpoint.api_base or '').rstrip('/')}/{path}"
        secrets = (key,) if key else ()
        with _mapped_errors(endpoint.model, None, secrets):
            session = await state.open_session(self.timeout_s)
            start = time.perf_counter()
            async with session.post(url, data=json.dumps(body), headers=headers) as http:
                raw = await http.read()
                status, reply_headers = http.status, http.headers
            latency = time.perf_counter() - start
            if status >= 400:
                raise _status_error(status, reply_headers, raw, endpoint.model, secrets)
            reply = json.loads(raw)
            choices = reply.get("choices") if isinstance(reply, dict) else None
            if not choices or not isinstance(choices[0], dict):
                raise LLMProviderError("the reply has no choices", model=endpoint.model)
            choice = choices[0]
            text = choice.get("text") if endpoint.mode == "completion" else (choice.get("message") or {}).get("content")
            usage = reply.get("usage") or {}
            return self._response(
                endpoint, text, usage.get("prompt_tokens"), usage.get("completion_tokens"), latency, choice.get("finish_reason")
            )

    async def _call_litellm(self, request: LLMRequest, key: str | None) -> LLMResponse:
        endpoint = request.endpoint
        if self._litellm is None:
            self._litellm = import_litellm()
        litellm = self._litellm
        kwargs: dict[str, Any] = {"model": endpoint.call_model(), "timeout": self.timeout_s, "num_retries": 0}
        kwargs.update(dict(request.params))
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
            kwargs["api_key"] = "none"
        if key:
            kwargs["api_key"] = key
        with _mapped_errors(endpoint.model, litellm, (key,) if key else ()):
            start = time.perf_counter()
            if endpoint.mode == "completion":
                coro = litellm.atext_completion(prompt=request.prompt or "", **kwargs)
            else:
                coro = litellm.acompletion(messages=[{"role": r, "content": c} for r, c in request.messages], **kwargs)
            raw = await asyncio.wait_for(coro, timeout=self.timeout_s + 5)
            latency = time.perf_counter() - start
            choices = getattr(raw, "choices", None)
            if not choices:
                raise LLMProviderError("the reply has no choices", model=endpoint.model)
            choice = choices[0]
            if endpoint.mode == "completion":
                text = getattr(choice, "text", None)
            else:
                text = getattr(getattr(choice, "message", None), "content", None)
            usage = getattr(raw, "usage", None)
            return self._response(
                endpoint,
                text,
                getattr(usage, "prompt_tokens", 0),
                getattr(usage, "completion_tokens", 0),
                latency,
                getattr(choice, "finish_reason", None),
            )

    def _response(
        self, endpoint: Endpoint, text: Any, prompt_tokens: Any, completion_tokens: Any, latency: float, finish: Any
    ) -> LLMResponse:
        if text is None:
            raise LLMProviderError("the reply has no text", model=endpoint.model)
        prompt = int(prompt_tokens or 0)
        completion = int(completion_tokens or 0)
        return LLMResponse(
            text=str(text),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=model_info(endpoint.model, api_base=endpoint.api_base).cost(prompt, completion),
            latency_s=latency,
            finish_reason=None if finish is None else str(finish),
        )
