"""The loopback server itself: what it answers, how late, and what it records."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest

from migrator.testing import Attempt, Completion, FaultPlan, LoopbackServer, Reply

CHAT = {"model": "fault-oracle", "messages": [{"role": "user", "content": "Review: the staff was great"}]}


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def test_a_chat_and_a_text_completion_are_answered_and_recorded() -> None:
    with LoopbackServer() as server:
        status, chat = _post(f"{server.api_base}/chat/completions", CHAT, {"Authorization": "Bearer sk-1"})
        _, text = _post(f"{server.api_base}/completions", {"model": "fault-oracle", "prompt": "Review: awful\nAnswer:"})
    assert status == 200 and chat["choices"][0]["message"]["content"] == "positive"
    assert chat["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "negative"
    assert server.attempts == [
        Attempt("/v1/chat/completions", "Bearer sk-1", CHAT, None),
        Attempt("/v1/completions", None, {"model": "fault-oracle", "prompt": "Review: awful\nAnswer:"}, None),
    ]


def test_the_latency_in_the_address_is_one_wait_however_many_are_in_flight() -> None:
    async def many(url: str, n: int) -> float:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.post(url, json=CHAT) as reply:
                    assert reply.status == 200

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - started

    # a long latency, so the claim (all 20 wait at once) holds on a busy machine: served one
    # by one they would take 20 s, concurrently a little over 1 s
    n, latency = 20, 1.0
    with LoopbackServer(record=False) as server:
        took = asyncio.run(many(f"{server.base_url}/lat/{latency}/v1/chat/completions", n))
        stats = _get(f"{server.base_url}/stats")
        assert latency <= took < n * latency / 2
        assert stats == {"served": n, "in_flight": 0, "max_in_flight": n}
        assert _post(f"{server.base_url}/reset", b"")[1] == {"served": 0, "in_flight": 0, "max_in_flight": 0}
    assert server.attempts == []  # not recorded


def test_scripted_replies_come_first_then_the_responder() -> None:
    def echo(attempt: Attempt) -> Completion:
        return Completion(f"re: {attempt.body['messages'][-1]['content']}", 7, 1)

    with LoopbackServer(reply=echo) as server:
        server.then(Reply(429, {"Retry-After": "7"}, {"error": {"message": "slow down"}}), Reply(body="not json"))
        url = f"{server.api_base}/chat/completions"
        limited = urllib.request.Request(url, data=json.dumps(CHAT).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(limited, timeout=10)
        assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "7"
        with urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(CHAT).encode()), timeout=10) as raw:
            assert raw.read() == b"not json"
        _, reply = _post(url, CHAT)
    assert reply["choices"][0]["message"]["content"] == "re: Review: the staff was great"
    assert reply["usage"]["prompt_tokens"] == 7
    assert len(server.attempts) == 3 and not server.faults()


def test_a_fault_is_answered_and_counted() -> None:
    with LoopbackServer(FaultPlan(rates={"unavailable": 1.0}, max_consecutive=None)) as server:
        status, body = _post(f"{server.api_base}/chat/completions", CHAT)
    assert (status, body["error"]["type"]) == (503, "service_unavailable")
    assert server.faults() == {"unavailable": 1} and len(server.error_bodies) == 1


def test_what_is_not_a_completion_request_is_refused() -> None:
    with LoopbackServer() as server:
        assert _post(f"{server.api_base}/chat/completions", b"{not json")[0] == 400
        assert _post(f"{server.api_base}/embeddings", {"model": "x", "input": "y"})[0] == 404
        assert _post(f"{server.base_url}/lat/soon/v1/chat/completions", CHAT)[0] == 404
        assert _get(f"{server.api_base}/models") == {"object": "list", "data": []}
    assert server.attempts == []
