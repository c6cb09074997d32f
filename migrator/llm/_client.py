"""Calling models: one async client with cache, retries, budgets and accounting.

:class:`LiteLLMClient` sends each attempt through a transport
(:mod:`migrator.llm._transports`): by default the direct road for self-hosted
OpenAI-compatible endpoints and litellm for every other provider; a test passes a
``MockTransport``. The transport maps every failure to one of these::

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
spends more than ``Limits.usd`` plus the cost of the calls already in flight. Cost
comes from :mod:`migrator.models` on every road.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace

from migrator.errors import BudgetExhausted, LLMBadRequestError, LLMError, LLMRateLimitError
from migrator.llm._cache import Cache
from migrator.llm._ledger import Ledger, MemoryLedger
from migrator.llm._reply import read_reply
from migrator.llm._transports import DefaultTransport, Transport
from migrator.llm._types import CallStats, Endpoint, Limits, LLMRequest, LLMResponse

__all__ = ["LiteLLMClient"]

_MAX_BACKOFF_S = 60.0
_NO_LIMITS = Limits()


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
            session (see :mod:`migrator.llm._transports`); ``False`` sends every call
            through litellm. Ignored when ``transport`` is given.
        sleep: waits out a backoff (tests pass a recording one).
        transport: sends each attempt (default: ``DefaultTransport(direct=direct)``).
    """

    def __init__(
        self,
        *,
        cache: Cache | None = None,
        limits: Limits = _NO_LIMITS,
        ledger: Ledger | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        seed: int = 0,
        direct: bool = True,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        transport: Transport | None = None,
    ) -> None:
        self.cache = cache
        self.limits = limits
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.transport: Transport = transport if transport is not None else DefaultTransport(direct=direct)
        self.stats = CallStats()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._in_flight: dict[str, asyncio.Future[tuple[LLMResponse | None, BaseException | None]]] = {}

    async def __aenter__(self) -> LiteLLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened on the running loop."""
        await self.transport.aclose()

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One reply, from the cache when this exact request was answered before.

        With a cache, an identical request already on its way is not sent again: this one
        waits for that reply (counted as cached), so two evaluations at once pay once.
        """
        key = request.cache_key()
        if self.cache is None:
            return await self._paid(key, request)
        # registered before the first await, so an identical request that comes next waits for this one
        in_flight = self._in_flight_of_loop()
        if key in in_flight:
            response, error = await asyncio.shield(in_flight[key])
            if error is None and response is None:  # the first one was cancelled: send it ourselves
                return await self.complete(request)
            if error is not None:
                raise error
            assert response is not None
            self.stats.cached += 1
            return replace(response, cached=True)
        shared: asyncio.Future[tuple[LLMResponse | None, BaseException | None]] = asyncio.get_running_loop().create_future()
        in_flight[key] = shared
        try:
            hit = await self._cached(key)
            response = hit if hit is not None else await self._paid(key, request)
        except asyncio.CancelledError:
            shared.set_result((None, None))
            raise
        except BaseException as exc:
            shared.set_result((None, exc))
            raise
        finally:
            del in_flight[key]
        shared.set_result((response, None))
        return response

    def _in_flight_of_loop(self) -> dict[str, asyncio.Future[tuple[LLMResponse | None, BaseException | None]]]:
        self._bound()  # a new loop starts with nothing in flight
        return self._in_flight

    async def _paid(self, key: str, request: LLMRequest) -> LLMResponse:
        """Send the request (with retries, within the budget), count its cost and store the reply."""
        semaphore = self._bound()
        try:
            api_key = self._api_key(request.endpoint)
        except LLMError:
            self.stats.failed += 1
            raise
        async with semaphore:
            response = await self._with_retries(request, api_key)
        await self.ledger.aadd_cost(response.cost_usd)  # written even if this call is cancelled meanwhile
        self.stats.add_reply(response)
        await self._store(key, request, response)
        return response

    async def _cached(self, key: str) -> LLMResponse | None:
        if self.cache is None:
            return None
        hit = await self.cache.aget(key)
        if hit is None:
            return None
        self.stats.cached += 1
        return LLMResponse(**{**hit, "cached": True})

    async def _store(self, key: str, request: LLMRequest, response: LLMResponse) -> None:
        if self.cache is None:
            return
        value = asdict(response)
        value.pop("cached")
        await self.cache.aput(key, request.endpoint.model, value)

    def _bound(self) -> asyncio.Semaphore:
        """The concurrency bound of the running loop."""
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            # A new loop (each asyncio.run / Runner): the old loop's semaphore cannot be awaited here.
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.concurrency)
            self._in_flight = {}
        return self._semaphore

    async def _with_retries(self, request: LLMRequest, api_key: str | None) -> LLMResponse:
        attempt = 0
        while True:
            await self._reserve_call()
            try:
                reply = await self.transport.send(request, api_key=api_key, timeout_s=self.timeout_s)
                return read_reply(reply, request.endpoint)
            except LLMError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    self.stats.failed += 1
                    raise
                attempt += 1
                self.stats.retried += 1
                await self._sleep(self._backoff(attempt, exc))

    async def _reserve_call(self) -> None:
        """Count the attempt about to be sent, or raise if a budget is spent."""
        over = await self.ledger.areserve_call(self.limits.calls, self.limits.usd)
        if over == "calls":
            raise BudgetExhausted("calls", f"the call budget ({self.limits.calls}) is spent")
        if over is not None:
            raise BudgetExhausted("usd", f"the USD budget ({self.limits.usd:g}) is spent")
        self.stats.sent += 1

    def _backoff(self, attempt: int, exc: LLMError) -> float:
        if isinstance(exc, LLMRateLimitError) and exc.retry_after is not None:
            return min(exc.retry_after, _MAX_BACKOFF_S)
        return min(self.backoff_s * 2.0 ** (attempt - 1) * (0.5 + self._rng.random()), _MAX_BACKOFF_S)

    @staticmethod
    def _api_key(endpoint: Endpoint) -> str | None:
        if not endpoint.api_key_env:
            return None
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise LLMBadRequestError(f"environment variable {endpoint.api_key_env} is not set", model=endpoint.model)
        return key
