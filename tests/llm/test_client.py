"""The model client against the loopback OpenAI-compatible server (scripted) and the fake provider.

Most tests run on both roads out of the client: ``direct`` (migrator's own HTTP session,
used for self-hosted OpenAI-compatible endpoints) and ``litellm`` (every other provider),
so the two behave the same way where a user can tell.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import BudgetExhausted, LLMBadRequestError, LLMProviderError, LLMRateLimitError, LLMTimeoutError
from migrator.llm import (
    Endpoint,
    Limits,
    LiteLLMClient,
    LLMRequest,
    LLMResponse,
    ResponseCache,
    StoredLedger,
    open_cache,
)
from migrator.testing import Attempt, Completion, FaultPlan, LoopbackServer, RecordingSleep, Reply

ROADS = ("direct", "litellm")


def _echo(attempt: Attempt) -> Completion:
    """Answers "re: " and what was asked, with a fixed usage, so a test can tell it was parsed."""
    body = attempt.body
    asked = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
    return Completion(f"re: {asked}", prompt_tokens=7, completion_tokens=1)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(reply=_echo) as s:
        yield s


def _client(road: str, **kwargs: Any) -> LiteLLMClient:
    return LiteLLMClient(**{"direct": road == "direct", "max_retries": 3, "timeout_s": 5.0, **kwargs})


def _endpoint(server: LoopbackServer, **kwargs: Any) -> Endpoint:
    return Endpoint("openai/scripted", api_base=server.api_base, **kwargs)


def _ask(client: LiteLLMClient, endpoint: Endpoint, text: str = "hello") -> LLMResponse:
    return asyncio.run(client.complete(LLMRequest(endpoint, messages=(("user", text),), params=(("max_tokens", 5),))))


@pytest.mark.parametrize("road", ROADS)
def test_a_chat_reply_is_parsed_with_its_usage(server: LoopbackServer, road: str) -> None:
    response = _ask(_client(road), _endpoint(server), "hello")
    assert (response.text, response.prompt_tokens, response.completion_tokens, response.finish_reason) == ("re: hello", 7, 1, "stop")
    assert server.attempts[0].path == "/v1/chat/completions"
    assert server.attempts[0].body["model"] == "scripted" and server.attempts[0].body["max_tokens"] == 5


def test_a_completion_endpoint_gets_the_prompt(server: LoopbackServer) -> None:
    endpoint = Endpoint("local/base", mode="completion", api_base=server.api_base, litellm_model="text-completion-openai/base")
    request = LLMRequest(endpoint, prompt="Review: fine\nAnswer:", params=(("max_tokens", 3),))
    response = asyncio.run(_client("direct").complete(request))
    assert response.text == "re: Review: fine\nAnswer:"
    assert server.attempts[0].path == "/v1/completions" and server.attempts[0].body["prompt"] == "Review: fine\nAnswer:"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_cache_hit_makes_no_call_and_survives_a_new_client(
    server: LoopbackServer, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path / "cache.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    first = _client("direct", cache=open_cache(location))
    original = _ask(first, _endpoint(server))
    second = _client("direct", cache=open_cache(location))  # another process's, or another machine's
    again = _ask(second, _endpoint(server))
    assert len(server.attempts) == 1
    assert again.cached and not original.cached
    assert (again.text, again.prompt_tokens, again.cost_usd) == (original.text, original.prompt_tokens, original.cost_usd)
    assert (second.stats.made, second.stats.cached) == (0, 1)


def test_identical_requests_at_once_are_sent_once_and_both_get_the_reply(tmp_path: Path) -> None:
    with LoopbackServer(FaultPlan(latency_s=0.2), reply=_echo) as server:
        client = _client("direct", cache=open_cache(tmp_path / "cache.db"))
        request = LLMRequest(_endpoint(server), messages=(("user", "same"),), params=(("max_tokens", 5),))
        other = LLMRequest(_endpoint(server), messages=(("user", "other"),), params=(("max_tokens", 5),))

        async def at_once() -> list[LLMResponse]:
            return list(await asyncio.gather(client.complete(request), client.complete(request), client.complete(other)))

        first, second, third = asyncio.run(at_once())
    assert sorted(a.body["messages"][-1]["content"] for a in server.attempts) == ["other", "same"]
    assert first.text == second.text == "re: same" and third.text == "re: other"
    assert [r.cached for r in (first, second)].count(True) == 1
    assert (client.stats.made, client.stats.cached) == (2, 1)


def test_a_waiting_identical_request_shares_a_failure_but_sends_itself_after_a_cancel(tmp_path: Path) -> None:
    with LoopbackServer(FaultPlan(latency_s=0.3), reply=_echo) as server:
        client = _client("direct", cache=open_cache(tmp_path / "cache.db"), max_retries=0)
        request = LLMRequest(_endpoint(server), messages=(("user", "same"),), params=(("max_tokens", 5),))

        async def first_cancelled() -> LLMResponse:
            first = asyncio.ensure_future(client.complete(request))
            while not server.attempts:  # cancel only once the first is on the wire, however slow the machine
                await asyncio.sleep(0.01)
            waiting = asyncio.ensure_future(client.complete(request))
            await asyncio.sleep(0.05)
            assert not waiting.done() and len(server.attempts) == 1, "the identical request waits for the first"
            first.cancel()
            return await waiting

        reply = asyncio.run(first_cancelled())
    assert reply.text == "re: same" and not reply.cached
    assert len(server.attempts) == 2, "the waiter sent the request itself once the first was cancelled"

    missing = LLMRequest(Endpoint("openai/scripted", api_base="http://127.0.0.1:9/v1"), messages=(("user", "x"),))
    client = _client("direct", cache=open_cache(tmp_path / "cache2.db"), max_retries=0)

    async def both_fail() -> list[Any]:
        return list(await asyncio.gather(client.complete(missing), client.complete(missing), return_exceptions=True))

    errors = asyncio.run(both_fail())
    assert all(isinstance(e, LLMProviderError) for e in errors) and client.stats.sent == 1


@pytest.mark.parametrize("road", ROADS)
@pytest.mark.parametrize(("header", "value", "wait"), [("Retry-After", "7", 7.0), ("retry-after-ms", "1500", 1.5)])
def test_a_429_is_retried_after_the_wait_the_server_asks_for(
    server: LoopbackServer, road: str, header: str, value: str, wait: float
) -> None:
    server.then(Reply(429, {header: value}, {"error": {"message": "slow down"}}))
    sleep = RecordingSleep()
    client = _client(road, sleep=sleep, backoff_s=30.0)  # were Retry-After ignored, this backoff would show
    assert _ask(client, _endpoint(server)).text == "re: hello"
    assert sleep.waits == [wait]
    assert len(server.attempts) == 2 and (client.stats.made, client.stats.retried) == (1, 1)


@pytest.mark.parametrize("road", ROADS)
def test_server_errors_are_retried_with_exponential_backoff(server: LoopbackServer, road: str) -> None:
    server.then(Reply(500, body={"error": {"message": "oops"}}), Reply(503, body={"error": {"message": "busy"}}))
    sleep = RecordingSleep()
    client = _client(road, sleep=sleep, backoff_s=1.0)
    assert _ask(client, _endpoint(server)).text == "re: hello"
    assert len(server.attempts) == 3
    # jittered: backoff_s * 2**(retry - 1) * [0.5, 1.5)
    assert len(sleep.waits) == 2 and 0.5 <= sleep.waits[0] < 1.5 and 1.0 <= sleep.waits[1] < 3.0


@pytest.mark.parametrize("road", ROADS)
@pytest.mark.parametrize(("status", "error"), [(503, LLMProviderError), (429, LLMRateLimitError)])
def test_a_fault_that_stays_fails_after_max_retries(server: LoopbackServer, road: str, status: int, error: type) -> None:
    server.then(*[Reply(status, body={"error": {"message": "busy"}})] * 5)
    client = _client(road, sleep=RecordingSleep(), max_retries=2)
    with pytest.raises(error, match="busy"):
        _ask(client, _endpoint(server))
    assert len(server.attempts) == 3
    assert (client.stats.made, client.stats.retried, client.stats.failed) == (0, 2, 1)


@pytest.mark.parametrize("road", ROADS)
def test_a_400_is_not_retried(server: LoopbackServer, road: str) -> None:
    server.then(Reply(400, body={"error": {"message": "max_tokens is too large"}}))
    client = _client(road, sleep=RecordingSleep())
    with pytest.raises(LLMBadRequestError, match="max_tokens is too large"):
        _ask(client, _endpoint(server))
    assert len(server.attempts) == 1
    assert (client.stats.retried, client.stats.failed) == (0, 1)


@pytest.mark.parametrize("road", ROADS)
def test_no_answer_within_the_timeout_is_a_timeout_error(server: LoopbackServer, road: str) -> None:
    server.then(Reply(delay_s=1.0))
    client = _client(road, timeout_s=0.2, max_retries=0)
    with pytest.raises(LLMTimeoutError):
        _ask(client, _endpoint(server))
    assert client.stats.failed == 1


@pytest.mark.parametrize("road", ROADS)
def test_concurrency_bound_is_respected(server: LoopbackServer, road: str) -> None:
    server.then(*[Reply(delay_s=0.05)] * 12)
    client = _client(road, concurrency=3)
    endpoint = _endpoint(server)

    async def many() -> list[LLMResponse]:
        return await asyncio.gather(*(client.complete(LLMRequest(endpoint, messages=(("user", f"q{i}"),))) for i in range(12)))

    assert len(asyncio.run(many())) == 12
    assert server.max_in_flight == 3


@pytest.mark.parametrize("road", ROADS)
def test_a_call_budget_refuses_new_calls_and_counts_those_in_flight(server: LoopbackServer, road: str) -> None:
    server.then(*[Reply(delay_s=0.02)] * 10)
    client = _client(road, concurrency=4, limits=Limits(calls=5))
    endpoint = _endpoint(server)

    async def many() -> list[Any]:
        calls = (client.complete(LLMRequest(endpoint, messages=(("user", f"q{i}"),))) for i in range(10))
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(many())
    refused = [o for o in outcomes if isinstance(o, BudgetExhausted)]
    assert len(server.attempts) == 5 and client.stats.made == 5
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
def test_the_key_is_sent_but_never_shown_in_errors(server: LoopbackServer, road: str, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert [s.authorization for s in server.attempts] == [f"Bearer {secret}"] * 2


def test_a_missing_key_variable_fails_without_a_call(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATOR_TEST_UNSET_KEY", raising=False)
    client = _client("direct")
    with pytest.raises(LLMBadRequestError, match="MIGRATOR_TEST_UNSET_KEY is not set"):
        _ask(client, _endpoint(server, api_key_env="MIGRATOR_TEST_UNSET_KEY"))
    assert server.attempts == [] and client.stats.failed == 1


@pytest.mark.parametrize("road", ROADS)
def test_stats_count_exactly_what_happened(server: LoopbackServer, road: str, tmp_path: Path) -> None:
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
    assert len(server.attempts) == 4 == stats["sent"]  # made + retried + failed: every request sent counts


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


def test_a_client_leaves_no_unclosed_session_and_works_on_a_new_loop(server: LoopbackServer) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", _REUSE_SCRIPT, server.api_base],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "made 16"
    assert "Unclosed" not in done.stderr and "unclosed" not in done.stderr
    assert len(server.attempts) == 17


def test_the_reply_carries_the_latency_of_the_call(server: LoopbackServer) -> None:
    server.then(Reply(delay_s=0.05))
    started = time.perf_counter()
    response = _ask(_client("direct"), _endpoint(server))
    assert 0 < response.latency_s <= time.perf_counter() - started


def test_the_ledger_is_written_off_the_event_loop_before_the_request_leaves(server: LoopbackServer, tmp_path: Path) -> None:
    client = _client("direct", ledger=StoredLedger(f"sqlite:///{tmp_path / 'study.db'}", "s"))
    other = sqlite3.connect(tmp_path / "study.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker writing the study: the reservation waits for it

    async def meanwhile() -> tuple[int, int, str]:
        call = asyncio.create_task(client.complete(LLMRequest(_endpoint(server), messages=(("user", "hello"),))))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += not call.done()  # a reservation blocking the loop would leave no tick
        sent_unreserved = len(server.attempts)
        other.execute("COMMIT")
        return ticks, sent_unreserved, (await call).text

    assert asyncio.run(meanwhile()) == (10, 0, "re: hello")
    assert client.ledger.spent().calls == 1
    other.close()
