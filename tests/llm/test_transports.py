"""Transports: the mock a test hands the client, and which road the default one takes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from migrator.errors import LLMBadRequestError, LLMProviderError, LLMTimeoutError
from migrator.llm import DefaultTransport, Endpoint, HTTPTransport, LiteLLMClient, LLMRequest, MockTransport
from migrator.testing import LoopbackServer, RecordingSleep

CHAT = Endpoint("openai/gpt-4o-mini")


def _ask(client: LiteLLMClient, endpoint: Endpoint = CHAT, **kwargs: Any) -> Any:
    return asyncio.run(client.complete(LLMRequest(endpoint, **kwargs)))


def test_a_mock_handler_answers_with_text_and_sees_the_request() -> None:
    asked: list[LLMRequest] = []

    def handler(request: LLMRequest) -> str:
        asked.append(request)
        return "positive"

    client = LiteLLMClient(transport=MockTransport(handler))
    response = _ask(client, messages=(("user", "Review: great"),))
    assert (response.text, response.finish_reason, response.cached) == ("positive", "stop", False)
    assert [r.messages for r in asked] == [(("user", "Review: great"),)]
    assert client.stats.made == client.stats.sent == 1


def test_a_mock_reply_document_is_read_like_a_provider_reply_and_priced() -> None:
    def handler(request: LLMRequest) -> dict[str, Any]:
        choice = {"index": 0, "text": f"<{request.prompt}>", "finish_reason": "length"}
        return {"choices": [choice], "usage": {"prompt_tokens": 1000, "completion_tokens": 10}}

    completion = Endpoint("fake/base", mode="completion")
    response = _ask(LiteLLMClient(transport=MockTransport(handler)), completion, prompt="Review: x\nAnswer:")
    assert (response.text, response.finish_reason) == ("<Review: x\nAnswer:>", "length")
    assert (response.prompt_tokens, response.completion_tokens) == (1000, 10)
    # fake/ ids cost 1e-6 per prompt token and 2e-6 per completion token (migrator.models)
    assert response.cost_usd == pytest.approx(1000 * 1e-6 + 10 * 2e-6)


def test_an_async_handler_is_awaited_within_the_timeout() -> None:
    async def slow(request: LLMRequest) -> str:
        await asyncio.sleep(1.0)
        return "late"

    client = LiteLLMClient(transport=MockTransport(slow), timeout_s=0.05, max_retries=0)
    with pytest.raises(LLMTimeoutError):
        _ask(client, messages=(("user", "x"),))
    assert client.stats.failed == 1


def test_a_handler_dropping_the_connection_is_retried_as_a_provider_fault() -> None:
    calls = iter([ConnectionResetError("reset by peer"), "positive"])

    def flaky(request: LLMRequest) -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    sleep = RecordingSleep()
    client = LiteLLMClient(transport=MockTransport(flaky), sleep=sleep)
    assert _ask(client, messages=(("user", "x"),)).text == "positive"
    assert (client.stats.retried, client.stats.sent, len(sleep.waits)) == (1, 2, 1)


def test_an_llm_error_from_a_handler_is_raised_as_it_is() -> None:
    def refuse(request: LLMRequest) -> str:
        raise LLMBadRequestError("no such model", model=request.endpoint.model)

    client = LiteLLMClient(transport=MockTransport(refuse))
    with pytest.raises(LLMBadRequestError, match="no such model"):
        _ask(client, messages=(("user", "x"),))
    assert (client.stats.sent, client.stats.retried, client.stats.failed) == (1, 0, 1)


def test_a_reply_without_choices_is_a_provider_fault() -> None:
    client = LiteLLMClient(
        transport=MockTransport(lambda request: {"choices": []}), max_retries=1, sleep=RecordingSleep()
    )
    with pytest.raises(LLMProviderError, match="no choices"):
        _ask(client, messages=(("user", "x"),))
    assert client.stats.sent == 2


def test_the_default_transport_takes_the_direct_road_only_where_it_applies() -> None:
    # the litellm road answers "via litellm", the server the review's label: each reply names its road
    via_litellm = MockTransport(lambda request: "via litellm")
    great = (("user", "Review: great"),)

    def road(endpoint: Endpoint, *, direct: bool = True) -> str:
        transport = DefaultTransport(direct=direct, litellm=via_litellm)
        # a chat endpoint sends the messages, a completion endpoint the prompt
        request = {"messages": great, "prompt": "Review: great\nAnswer:"}
        return str(_ask(LiteLLMClient(transport=transport), endpoint, **request).text)

    with LoopbackServer() as server:
        served = Endpoint("openai/fault-oracle", api_base=server.api_base)
        completions = Endpoint("text-completion-openai/fault-oracle", mode="completion", api_base=server.api_base)
        assert road(served) == "positive"  # sent direct: the server's answer
        assert road(completions) == "positive"
        assert road(served, direct=False) == "via litellm"
        # an OpenAI model on OpenAI's own API, a fake/ id, a chat model asked for a completion
        assert road(Endpoint("openai/gpt-4o-mini")) == "via litellm"
        assert road(Endpoint("fake/oracle")) == "via litellm"
        assert road(Endpoint("openai/fault-oracle", mode="completion", api_base=server.api_base)) == "via litellm"
        # the real litellm road reaches the same server
        assert _ask(LiteLLMClient(transport=DefaultTransport(direct=False)), served, messages=great).text == "positive"
    # fake/ ids are litellm's custom provider: no HTTP at all
    assert (
        _ask(
            LiteLLMClient(transport=DefaultTransport()), Endpoint("fake/oracle"), messages=(("user", "Review: awful"),)
        ).text
        == "negative"
    )
    assert [(a.path, a.body["model"]) for a in server.attempts] == [
        ("/v1/chat/completions", "fault-oracle"),
        ("/v1/completions", "fault-oracle"),
        ("/v1/chat/completions", "fault-oracle"),
    ]


def test_the_http_transport_refuses_an_endpoint_it_cannot_call() -> None:
    client = LiteLLMClient(transport=HTTPTransport())
    with pytest.raises(LLMBadRequestError, match="not an OpenAI-compatible endpoint"):
        _ask(client, Endpoint("anthropic/claude-3-haiku"), messages=(("user", "x"),))
