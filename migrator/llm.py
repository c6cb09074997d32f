"""Calling models: one async client over litellm, with cache, retries and accounting.

litellm is imported here and nowhere else; its exceptions become ours in
``_mapped_errors``. The client enforces the call and USD budgets before each paid
call, so a run never spends more than its budget plus the calls already in flight.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from migrator.cache import ResponseCache, request_key
from migrator.errors import (
    BudgetExhausted,
    LLMBadRequestError,
    LLMError,
    LLMProviderError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from migrator.models import model_info
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


def import_litellm() -> Any:
    """litellm, configured to stay offline and quiet (no price-map download, no telemetry)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


@dataclass(frozen=True)
class Endpoint:
    """How to reach a model: its id, endpoint mode and, for self-hosted servers, where."""

    model: str
    mode: Mode = "chat"
    api_base: str | None = None
    api_key_env: str | None = None
    litellm_model: str | None = None

    def call_model(self) -> str:
        return self.litellm_model or self.model


@dataclass(frozen=True)
class LLMRequest:
    endpoint: Endpoint
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def cache_key(self) -> str:
        # The endpoint address is left out on purpose: a local server gets a new port
        # each run, and the model id already says which model answers.
        return request_key(
            {
                "model": self.endpoint.model,
                "mode": self.endpoint.mode,
                "messages": [list(m) for m in self.messages],
                "prompt": self.prompt,
                "params": dict(self.params),
            }
        )


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
    """Counters of one client: what this invocation made, reused, lost and spent."""

    made: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("in_flight")
        return out


@dataclass(frozen=True)
class Limits:
    calls: int | None = None
    usd: float | None = None


class LLMClient(Protocol):
    stats: CallStats

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None) or {}
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@contextmanager
def _mapped_errors(model: str) -> Iterator[None]:
    """The one place litellm's exceptions become ours (with secrets redacted)."""
    litellm = import_litellm()
    try:
        yield
    except LLMError:
        raise
    except TimeoutError as exc:
        raise LLMTimeoutError("no answer within the timeout", model=model) from exc
    except litellm.RateLimitError as exc:
        raise LLMRateLimitError(redact(str(exc)), model=model, retry_after=_retry_after(exc)) from exc
    except litellm.Timeout as exc:
        raise LLMTimeoutError(redact(str(exc)), model=model) from exc
    except (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError) as exc:
        raise LLMBadRequestError(redact(str(exc)), model=model) from exc
    except litellm.BadRequestError as exc:
        raise LLMBadRequestError(redact(str(exc)), model=model) from exc
    except litellm.APIError as exc:
        raise LLMProviderError(redact(str(exc)), model=model) from exc
    except Exception as exc:  # connection resets, malformed JSON and the like from below litellm
        raise LLMProviderError(redact(f"{type(exc).__name__}: {exc}"), model=model) from exc


class LiteLLMClient:
    """Async litellm client with a response cache, bounded concurrency and retries.

    Args:
        cache: where replies are kept; ``None`` disables caching.
        limits: call and USD budgets, checked before every paid call.
        concurrency: calls in flight at once.
        timeout_s: per-attempt timeout.
        max_retries: retries of a retryable fault (429, 5xx, timeouts, bad replies).
        seed: seeds the backoff jitter.
    """

    def __init__(
        self,
        *,
        cache: ResponseCache | None = None,
        limits: Limits = Limits(),
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.cache = cache
        self.limits = limits
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.stats = CallStats()
        self._rng = random.Random(seed)
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self._litellm = import_litellm()

    def _semaphore(self) -> asyncio.Semaphore:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._semaphores:
            self._semaphores = {loop_id: asyncio.Semaphore(self.concurrency)}
        return self._semaphores[loop_id]

    def _check_budget(self) -> None:
        if self.limits.calls is not None and self.stats.made + self.stats.in_flight >= self.limits.calls:
            raise BudgetExhausted("calls", f"the call budget ({self.limits.calls}) is spent")
        if self.limits.usd is not None and self.stats.cost_usd >= self.limits.usd:
            raise BudgetExhausted("usd", f"the USD budget ({self.limits.usd:g}) is spent")

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One reply, from the cache when this exact request was answered before."""
        key = request.cache_key()
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cached += 1
                return LLMResponse(**{**hit, "cached": True})
        async with self._semaphore():
            attempt = 0
            while True:
                self._check_budget()
                self.stats.in_flight += 1
                try:
                    response = await self._call_once(request)
                except LLMError as exc:
                    if not exc.retryable or attempt >= self.max_retries:
                        self.stats.failed += 1
                        raise
                    attempt += 1
                    self.stats.retried += 1
                    await asyncio.sleep(self._backoff(attempt, exc))
                    continue
                finally:
                    self.stats.in_flight -= 1
                break
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
        return min(self.backoff_s * 2 ** (attempt - 1) * (0.5 + self._rng.random()), _MAX_BACKOFF_S)

    def _kwargs(self, request: LLMRequest) -> dict[str, Any]:
        endpoint = request.endpoint
        kwargs: dict[str, Any] = {"model": endpoint.call_model(), "timeout": self.timeout_s, "num_retries": 0}
        kwargs.update(dict(request.params))
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
            kwargs["api_key"] = "none"
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                raise LLMBadRequestError(f"environment variable {endpoint.api_key_env} is not set", model=endpoint.model)
            kwargs["api_key"] = key
        return kwargs

    async def _call_once(self, request: LLMRequest) -> LLMResponse:
        endpoint = request.endpoint
        litellm = self._litellm
        with _mapped_errors(endpoint.model):
            kwargs = self._kwargs(request)
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
            if text is None:
                raise LLMProviderError("the reply has no text", model=endpoint.model)
            usage = getattr(raw, "usage", None)
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = model_info(endpoint.model, api_base=endpoint.api_base).cost(prompt_tokens, completion_tokens)
            return LLMResponse(
                text=str(text),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                latency_s=latency,
                finish_reason=getattr(choice, "finish_reason", None),
            )
