"""How a request leaves: the transport interface, its two roads and a mock.

A transport sends one request and returns the reply unread (:class:`RawReply`), or
raises an :class:`~migrator.errors.LLMError`: each runs its work inside
:func:`~migrator.llm._errors.mapped_errors`, the one place foreign exceptions are
translated. Retries, budgets, the cache and reading the reply are the client's.

- :class:`HTTPTransport`, the direct road: a self-hosted OpenAI-compatible endpoint (an
  ``api_base`` with an ``openai/`` chat model or a ``text-completion-openai/`` completion
  model: llama.cpp, vLLM, the local models) called over one pooled aiohttp session per
  event loop, opened on first use and closed with the transport or the loop.
- :class:`LiteLLMTransport`: every provider litellm supports.
- :class:`DefaultTransport`: the direct road where it applies, litellm elsewhere.
- :class:`MockTransport`: answers from a function, for tests (as httpx's does).

The direct road exists because litellm spends about 10 ms of CPU on each call (its
cost calculator, its logging objects and callbacks, the OpenAI SDK and httpx on top of
its aiohttp transport), which caps one process at roughly 100 calls/s, below what a
local server or a search at concurrency 128 needs; and its text-completion path opens
an aiohttp session per call that it never closes. The direct road costs well under
1 ms per call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from migrator.errors import LLMBadRequestError
from migrator.llm._errors import HTTPStatusError, mapped_errors
from migrator.llm._types import LLMRequest, RawReply
from migrator.models import import_litellm

__all__ = ["DefaultTransport", "HTTPTransport", "LiteLLMTransport", "MockHandler", "MockTransport", "Transport"]

# litellm's own deadline is the timeout; this guards against a litellm path that ignores it.
_LITELLM_GRACE_S = 5.0


class Transport(Protocol):
    """Sends one request to its endpoint."""

    async def send(self, request: LLMRequest, *, api_key: str | None, timeout_s: float) -> RawReply:
        """The reply, or an ``LLMError`` (never another exception) for a failed attempt."""
        ...

    async def aclose(self) -> None:
        """Release the connections opened on the running loop."""
        ...


class _LoopSession:
    """The aiohttp session of one event loop, closed by ``aclose()`` or else by the loop's end."""

    def __init__(self) -> None:
        import aiohttp  # comes with litellm; loaded only once the direct road is taken

        self.loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession(
            # The client's semaphore bounds the calls; a connector limit would only queue
            # them a second time (aiohttp's default is 100).
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._closer: AsyncGenerator[None, None] | None = _close_when_the_loop_ends(self.session)

    async def start(self) -> None:
        assert self._closer is not None
        await self._closer.__anext__()

    def post(self, url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> Any:
        import aiohttp

        return self.session.post(
            url, data=json.dumps(body), headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        )

    async def aclose(self) -> None:
        closer, self._closer = self._closer, None
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


class HTTPTransport:
    """The direct road: OpenAI-compatible JSON over one pooled HTTP session per event loop.

    A transport used on a new loop (each asyncio.run / Runner) opens a new session; the
    old loop's was closed when that loop ended.
    """

    def __init__(self) -> None:
        self._current: _LoopSession | None = None

    async def send(self, request: LLMRequest, *, api_key: str | None, timeout_s: float) -> RawReply:
        endpoint = request.endpoint
        url = self._url(request)
        headers = {"Authorization": f"Bearer {api_key or 'none'}", "Content-Type": "application/json"}
        with mapped_errors(endpoint.model, api_key):
            session = await self._session()
            start = time.perf_counter()
            async with session.post(url, _body(request), headers, timeout_s) as http:
                raw = await http.read()
                status, reply_headers = http.status, http.headers
            latency = time.perf_counter() - start
            if status >= 400:
                raise HTTPStatusError(status, reply_headers, raw)
            return RawReply(json.loads(raw), latency)

    async def aclose(self) -> None:
        if self._current is not None and self._current.loop is asyncio.get_running_loop():
            await self._current.aclose()
            self._current = None

    async def _session(self) -> _LoopSession:
        if self._current is None or self._current.loop is not asyncio.get_running_loop():
            self._current = _LoopSession()
            await self._current.start()
        return self._current

    @staticmethod
    def _url(request: LLMRequest) -> str:
        endpoint = request.endpoint
        path = endpoint.direct_path()
        if path is None:
            raise LLMBadRequestError(
                f"{endpoint.call_model()!r} in {endpoint.mode} mode is not an OpenAI-compatible endpoint with an api_base",
                model=endpoint.model,
            )
        return f"{(endpoint.api_base or '').rstrip('/')}/{path}"


def _body(request: LLMRequest) -> dict[str, Any]:
    """The JSON an OpenAI-compatible server takes: the model without its provider prefix."""
    endpoint = request.endpoint
    body: dict[str, Any] = {"model": endpoint.call_model().partition("/")[2], **dict(request.params)}
    if endpoint.mode == "completion":
        body["prompt"] = request.prompt or ""
    else:
        body["messages"] = request.openai_messages()
    return body


class LiteLLMTransport:
    """Every provider litellm supports; litellm is imported by the first call."""

    def __init__(self) -> None:
        self._litellm: Any = None

    async def send(self, request: LLMRequest, *, api_key: str | None, timeout_s: float) -> RawReply:
        endpoint = request.endpoint
        if self._litellm is None:
            self._litellm = import_litellm()
        kwargs = self._kwargs(request, api_key, timeout_s)
        with mapped_errors(endpoint.model, api_key):
            start = time.perf_counter()
            if endpoint.mode == "completion":
                call = self._litellm.atext_completion(prompt=request.prompt or "", **kwargs)
            else:
                call = self._litellm.acompletion(messages=request.openai_messages(), **kwargs)
            raw = await asyncio.wait_for(call, timeout=timeout_s + _LITELLM_GRACE_S)
            return RawReply(raw, time.perf_counter() - start)

    async def aclose(self) -> None:
        return None

    @staticmethod
    def _kwargs(request: LLMRequest, api_key: str | None, timeout_s: float) -> dict[str, Any]:
        endpoint = request.endpoint
        # litellm retrying on its own would send requests no budget counted
        kwargs: dict[str, Any] = {"model": endpoint.call_model(), "timeout": timeout_s, "num_retries": 0}
        kwargs.update(dict(request.params))
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
            kwargs["api_key"] = "none"  # a self-hosted server without a key still needs one sent
        if api_key:
            kwargs["api_key"] = api_key
        return kwargs


class DefaultTransport:
    """The direct road for the endpoints it serves, litellm for every other.

    Args:
        direct: take the direct road where it applies; ``False`` sends everything through litellm.
        litellm: the road for every other endpoint (default: a ``LiteLLMTransport``); a test
            passes a ``MockTransport`` to see which road a request took.
    """

    def __init__(self, *, direct: bool = True, litellm: Transport | None = None) -> None:
        self.http = HTTPTransport() if direct else None
        self.litellm: Transport = litellm if litellm is not None else LiteLLMTransport()

    async def send(self, request: LLMRequest, *, api_key: str | None, timeout_s: float) -> RawReply:
        road: Transport = self.litellm
        if self.http is not None and request.endpoint.direct_path() is not None:
            road = self.http
        return await road.send(request, api_key=api_key, timeout_s=timeout_s)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self.litellm.aclose()


MockHandler = Callable[[LLMRequest], "str | Mapping[str, Any] | Awaitable[str | Mapping[str, Any]]"]


class MockTransport:
    """Answers every request from ``handler``, for tests: ``LiteLLMClient(transport=MockTransport(f))``.

    ``handler(request)`` (a function or a coroutine function) returns the reply's text,
    or a whole OpenAI-shaped reply (a dict with ``choices`` and ``usage``), or raises:
    an ``LLMError`` as it is, any other exception as a real transport's would be mapped
    (``ConnectionResetError`` becomes a retryable ``LLMProviderError``).
    """

    def __init__(self, handler: MockHandler) -> None:
        self.handler = handler

    async def send(self, request: LLMRequest, *, api_key: str | None, timeout_s: float) -> RawReply:
        with mapped_errors(request.endpoint.model, api_key):
            start = time.perf_counter()
            answer = self.handler(request)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, timeout=timeout_s)
            body = answer if isinstance(answer, Mapping) else _completion(request, str(answer))
            return RawReply(body, time.perf_counter() - start)

    async def aclose(self) -> None:
        return None


def _completion(request: LLMRequest, text: str) -> dict[str, Any]:
    """A reply carrying ``text`` in the shape of the request's endpoint mode, with no usage."""
    if request.endpoint.mode == "completion":
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return {"choices": [choice], "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
