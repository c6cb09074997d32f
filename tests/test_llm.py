"""The model client against a scripted loopback OpenAI-compatible server and the fake provider.

Most tests run on both roads out of the client: ``direct`` (migrator's own HTTP session,
used for self-hosted OpenAI-compatible endpoints) and ``litellm`` (every other provider),
so the two behave the same way where a user can tell.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from migrator.errors import BudgetExhausted, LLMBadRequestError, LLMProviderError, LLMRateLimitError, LLMTimeoutError
from migrator.llm import Endpoint, Limits, LiteLLMClient, LLMRequest, LLMResponse, ResponseCache

ROADS = ("direct", "litellm")


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # None: a normal completion
    delay_s: float = 0.0


@dataclass(frozen=True)
class Seen:
    path: str
    authorization: str | None
    body: Any


class ScriptedServer:
    """An OpenAI-compatible server on a background thread that answers from a script.

    Requests take the next scripted ``Reply`` (a normal completion once the script is
    empty, after ``delay_s`` seconds); every request and the most requests ever in
    flight at once are recorded.
    """

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.delay_s = 0.0
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(Seen(request.path, request.headers.get("Authorization"), body))
        reply = self.script.popleft() if self.script else Reply(delay_s=self.delay_s)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(reply.delay_s)
        finally:
            self.in_flight -= 1
        payload = reply.body if reply.body is not None else self._completion(request.path, body)
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return web.Response(status=reply.status, text=text, headers=reply.headers, content_type="application/json")

    @staticmethod
    def _completion(path: str, body: dict[str, Any]) -> dict[str, Any]:
        usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        if path.endswith("/chat/completions"):
            echo = body["messages"][-1]["content"]
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": f"re: {echo}"}, "finish_reason": "stop"}
            return {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": f"re: {body['prompt']}", "finish_reason": "stop", "logprobs": None}
        return {"id": "t1", "object": "text_completion", "created": 0, "model": body["model"], "choices": [choice], "usage": usage}

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


class RecordingSleep:
    """Stands in for asyncio.sleep: records each backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _client(road: str, **kwargs: Any) -> LiteLLMClient:
    return LiteLLMClient(**{"direct": road == "direct", "max_retries": 3, "timeout_s": 5.0, **kwargs})


def _endpoint(server: ScriptedServer, **kwargs: Any) -> Endpoint:
    return Endpoint("openai/scripted", api_base=server.api_base, **kwargs)


def _ask(client: LiteLLMClient, endpoint: Endpoint, text: str = "hello") -> LLMResponse:
    return asyncio.run(client.complete(LLMRequest(endpoint, messages=(("user", text),), params=(("max_tokens", 5),))))


@pytest.mark.parametrize("road", ROADS)
def test_a_chat_reply_is_parsed_with_its_usage(server: ScriptedServer, road: str) -> None:
    response = _ask(_client(road), _endpoint(server), "hello")
    assert (response.text, response.prompt_tokens, response.completion_tokens, response.finish_reason) == ("re: hello", 7, 1, "stop")
    assert server.seen[0].path == "/v1/chat/completions"
    assert server.seen[0].body["model"] == "scripted" and server.seen[0].body["max_tokens"] == 5


def test_a_completion_endpoint_gets_the_prompt(server: ScriptedServer) -> None:
    endpoint = Endpoint("local/base", mode="completion", api_base=server.api_base, litellm_model="text-completion-openai/base")
    request = LLMRequest(endpoint, prompt="Review: fine\nAnswer:", params=(("max_tokens", 3),))
    response = asyncio.run(_client("direct").complete(request))
    assert response.text == "re: Review: fine\nAnswer:"
    assert server.seen[0].path == "/v1/completions" and server.seen[0].body["prompt"] == "Review: fine\nAnswer:"


def test_a_cache_hit_makes_no_call_and_survives_a_new_client(server: ScriptedServer, tmp_path: Path) -> None:
    first = _client("direct", cache=ResponseCache(tmp_path / "cache.db"))
    original = _ask(first, _endpoint(server))
    second = _client("direct", cache=ResponseCache(tmp_path / "cache.db"))
    again = _ask(second, _endpoint(server))
    assert len(server.seen) == 1
    assert again.cached and not original.cached
    assert (again.text, again.prompt_tokens, again.cost_usd) == (original.text, original.prompt_tokens, original.cost_usd)
    assert (second.stats.made, second.stats.cached) == (0, 1)


@pytest.mark.parametrize("road", ROADS)
@pytest.mark.parametrize(("header", "value", "wait"), [("Retry-After", "7", 7.0), ("retry-after-ms", "1500", 1.5)])
def test_a_429_is_retried_after_the_wait_the_server_asks_for(
    server: ScriptedServer, road: str, header: str, value: str, wait: float
) -> None:
    server.then(Reply(429, {header: value}, {"error": {"message": "slow down"}}))
    sleep = RecordingSleep()
    client = _client(road, sleep=sleep, backoff_s=30.0)  # were Retry-After ignored, this backoff would show
    assert _ask(client, _endpoint(server)).text == "re: hello"
    assert sleep.waits == [wait]
    assert len(server.seen) == 2 and (client.stats.made, client.stats.retried) == (1, 1)


@pytest.mark.parametrize("road", ROADS)
def test_server_errors_are_retried_with_exponential_backoff(server: ScriptedServer, road: str) -> None:
    server.then(Reply(500, body={"error": {"message": "oops"}}), Reply(503, body={"error": {"message": "busy"}}))
    sleep = RecordingSleep()
    client = _client(road, sleep=sleep, backoff_s=1.0)
    assert _ask(client, _endpoint(server)).text == "re: hello"
    assert len(server.seen) == 3
    # jittered: backoff_s * 2**(retry - 1) * [0.5, 1.5)
    assert len(sleep.waits) == 2 and 0.5 <= sleep.waits[0] < 1.5 and 1.0 <= sleep.waits[1] < 3.0


@pytest.mark.parametrize("road", ROADS)
@pytest.mark.parametrize(("status", "error"), [(503, LLMProviderError), (429, LLMRateLimitError)])
def test_a_fault_that_stays_fails_after_max_retries(server: ScriptedServer, road: str, status: int, error: type) -> None:
    server.then(*[Reply(status, body={"error": {"message": "busy"}})] * 5)
    client = _client(road, sleep=RecordingSleep(), max_retries=2)
    with pytest.raises(error, match="busy"):
        _ask(client, _endpoint(server))
    assert len(server.seen) == 3
    assert (client.stats.made, client.stats.retried, client.stats.failed) == (0, 2, 1)


@pytest.mark.parametrize("road", ROADS)
def test_a_400_is_not_retried(server: ScriptedServer, road: str) -> None:
    server.then(Reply(400, body={"error": {"message": "max_tokens is too large"}}))
    client = _client(road, sleep=RecordingSleep())
    with pytest.raises(LLMBadRequestError, match="max_tokens is too large"):
        _ask(client, _endpoint(server))
    assert len(server.seen) == 1
    assert (client.stats.retried, client.stats.failed) == (0, 1)


@pytest.mark.parametrize("road", ROADS)
def test_no_answer_within_the_timeout_is_a_timeout_error(server: ScriptedServer, road: str) -> None:
    server.then(Reply(delay_s=1.0))
    client = _client(road, timeout_s=0.2, max_retries=0)
    with pytest.raises(LLMTimeoutError):
        _ask(client, _endpoint(server))
    assert client.stats.failed == 1


@pytest.mark.parametrize("road", ROADS)
def test_concurrency_bound_is_respected(server: ScriptedServer, road: str) -> None:
    server.delay_s = 0.05
    client = _client(road, concurrency=3)
    endpoint = _endpoint(server)

    async def many() -> list[LLMResponse]:
        return await asyncio.gather(*(client.complete(LLMRequest(endpoint, messages=(("user", f"q{i}"),))) for i in range(12)))

    assert len(asyncio.run(many())) == 12
    assert server.max_in_flight == 3


@pytest.mark.parametrize("road", ROADS)
def test_a_call_budget_refuses_new_calls_and_counts_those_in_flight(server: ScriptedServer, road: str) -> None:
    server.delay_s = 0.02
    client = _client(road, concurrency=4, limits=Limits(calls=5))
    endpoint = _endpoint(server)

    async def many() -> list[Any]:
        calls = (client.complete(LLMRequest(endpoint, messages=(("user", f"q{i}"),))) for i in range(10))
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(many())
    refused = [o for o in outcomes if isinstance(o, BudgetExhausted)]
    assert len(server.seen) == 5 and client.stats.made == 5
    assert len(refused) == 5 and all(o.which == "calls" for o in refused)


def test_a_usd_budget_is_exceeded_by_at_most_the_calls_in_flight() -> None:
    # fake/... ids go through litellm (the fake provider); they cost 1e-6 per prompt
    # token and 2e-6 per completion token (one token per word).
    usd, concurrency = 4e-5, 4
    client = LiteLLMClient(concurrency=concurrency, limits=Limits(usd=usd), max_retries=0)
    endpoint = Endpoint("fake/oracle@0.01")
    review = "Review: the staff was great, honestly wonderful."

    async def many() -> list[Any]:
        calls = (client.complete(LLMRequest(endpoint, messages=(("user", f"{review} ({i})"),))) for i in range(30))
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(many())
    answered = [o for o in outcomes if isinstance(o, LLMResponse)]
    refused = [o for o in outcomes if isinstance(o, BudgetExhausted)]
    assert refused and all(o.which == "usd" for o in refused)
    most_per_call = max(o.cost_usd for o in answered)
    assert usd <= client.stats.cost_usd <= usd + concurrency * most_per_call
    assert client.stats.cost_usd == pytest.approx(sum(o.cost_usd for o in answered))
    assert client.stats.cost_usd == pytest.approx(client.stats.prompt_tokens * 1e-6 + client.stats.completion_tokens * 2e-6)
    with pytest.raises(BudgetExhausted):
        asyncio.run(client.complete(LLMRequest(endpoint, messages=(("user", "one more"),))))


@pytest.mark.parametrize("road", ROADS)
def test_the_key_is_sent_but_never_shown_in_errors(server: ScriptedServer, road: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a variable whose name does not say "key" and a value that does not look like one:
    # only the client knowing what it sent can keep it out of the message
    secret = "hunter2-correct-horse-battery"
    monkeypatch.setenv("MIGRATOR_TEST_CREDS_VAR", secret)
    endpoint = _endpoint(server, api_key_env="MIGRATOR_TEST_CREDS_VAR")
    server.then(Reply(401, body={"error": {"message": f"Incorrect API key provided: {secret}"}}))
    with pytest.raises(LLMBadRequestError) as refused:
        _ask(_client(road), endpoint)
    assert secret not in str(refused.value) and "Incorrect API key" in str(refused.value)
    assert _ask(_client(road), endpoint).text == "re: hello"
    assert [s.authorization for s in server.seen] == [f"Bearer {secret}"] * 2


def test_a_missing_key_variable_fails_without_a_call(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATOR_TEST_UNSET_KEY", raising=False)
    client = _client("direct")
    with pytest.raises(LLMBadRequestError, match="MIGRATOR_TEST_UNSET_KEY is not set"):
        _ask(client, _endpoint(server, api_key_env="MIGRATOR_TEST_UNSET_KEY"))
    assert server.seen == [] and client.stats.failed == 1


@pytest.mark.parametrize("road", ROADS)
def test_stats_count_exactly_what_happened(server: ScriptedServer, road: str, tmp_path: Path) -> None:
    client = _client(road, cache=ResponseCache(tmp_path / "cache.db"), sleep=RecordingSleep())
    endpoint = _endpoint(server)
    server.then(Reply(500, body={"error": {"message": "oops"}}))  # the first call is retried once
    _ask(client, endpoint, "a")
    _ask(client, endpoint, "b")
    _ask(client, endpoint, "a")  # from the cache
    server.then(Reply(404, body={"error": {"message": "no such model"}}))
    with pytest.raises(LLMBadRequestError):
        _ask(client, endpoint, "c")
    stats = client.stats.as_dict()
    assert {k: stats[k] for k in ("made", "cached", "failed", "retried")} == {"made": 2, "cached": 1, "failed": 1, "retried": 1}
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (14, 2)
    assert len(server.seen) == 4 == stats["sent"]  # made + retried + failed: every request sent counts


def test_fake_provider_calls_go_through_litellm_and_are_priced_by_migrator() -> None:
    client = LiteLLMClient()
    response = asyncio.run(client.complete(LLMRequest(Endpoint("fake/oracle"), messages=(("user", "Review: it was awful"),))))
    assert response.text == "negative"
    assert response.cost_usd == pytest.approx(response.prompt_tokens * 1e-6 + response.completion_tokens * 2e-6)


_REUSE_SCRIPT = """
import asyncio, sys
from migrator.llm import Endpoint, LiteLLMClient, LLMRequest
endpoint = Endpoint("local/scripted", api_base=sys.argv[1], litellm_model="openai/scripted")
client = LiteLLMClient(concurrency=4)
async def some(n):
    return await asyncio.gather(*(client.complete(LLMRequest(endpoint, messages=(("user", f"q{i}"),))) for i in range(n)))
asyncio.run(some(8))               # no aclose(): the loop's end closes the session
with asyncio.Runner() as runner:   # the same client on a new loop, as the pipeline uses it
    runner.run(some(8))
async def scoped():
    async with LiteLLMClient() as scoped_client:
        await scoped_client.complete(LLMRequest(endpoint, messages=(("user", "x"),)))
asyncio.run(scoped())
print("made", client.stats.made)
"""


def test_a_client_leaves_no_unclosed_session_and_works_on_a_new_loop(server: ScriptedServer) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", _REUSE_SCRIPT, server.api_base],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "made 16"
    assert "Unclosed" not in done.stderr and "unclosed" not in done.stderr
    assert len(server.seen) == 17


def test_the_cache_key_is_who_serves_the_model_not_where() -> None:
    from migrator.migration import endpoint_for
    from migrator.spec import TargetSpec

    def key(target: TargetSpec, api_bases: dict[str, str]) -> str:
        return LLMRequest(endpoint_for(target, api_bases), messages=(("user", "x"),)).cache_key()

    # a managed local server gets a new port each run: its weights say who answers
    local = TargetSpec(model="local/qwen2.5-coder-0.5b-instruct")
    port_1 = key(local, {local.model: "http://127.0.0.1:1/v1"})
    assert port_1 == key(local, {local.model: "http://127.0.0.1:2/v1"})
    # a self-hosted model id says nothing of the server behind it
    vllm_a = key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.1:8000/v1"), {})
    vllm_b = key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.2:8000/v1"), {})
    assert vllm_a != vllm_b
    assert vllm_a == key(TargetSpec(model="openai/my-model", api_base="http://10.0.0.1:8000/v1/"), {})
    # a hosted model is its provider's: the same key as ever
    hosted = LLMRequest(Endpoint("openai/gpt-4o-mini"), messages=(("user", "x"),))
    assert hosted.cache_key() == key(TargetSpec(model="openai/gpt-4o-mini"), {})


def test_the_reply_carries_the_latency_of_the_call(server: ScriptedServer) -> None:
    server.delay_s = 0.05
    started = time.perf_counter()
    response = _ask(_client("direct"), _endpoint(server))
    assert 0 < response.latency_s <= time.perf_counter() - started
