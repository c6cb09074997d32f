"""One reader for every road: decoded JSON and litellm's objects give the same response."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.errors import LLMProviderError
from migrator.llm import Endpoint, RawReply
from migrator.llm._reply import read_reply
from migrator.models import import_litellm

CHAT = Endpoint("fake/oracle")
TEXT = Endpoint("fake/base", mode="completion")


def _chat_json(content: Any = "positive") -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
    }


def test_json_and_litellm_objects_read_the_same() -> None:
    import_litellm()
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    as_object = ModelResponse(
        choices=[Choices(message=Message(content="positive", role="assistant"), finish_reason="stop", index=0)],
        usage=Usage(prompt_tokens=12, completion_tokens=1, total_tokens=13),
    )
    from_json = read_reply(RawReply(_chat_json(), 0.25), CHAT)
    from_object = read_reply(RawReply(as_object, 0.25), CHAT)
    assert from_json == from_object
    assert (from_json.text, from_json.prompt_tokens, from_json.completion_tokens, from_json.latency_s) == (
        "positive",
        12,
        1,
        0.25,
    )
    assert from_json.cost_usd == pytest.approx(12 * 1e-6 + 1 * 2e-6)


def test_a_text_completion_is_read_from_its_text() -> None:
    body = {"choices": [{"text": "negative", "finish_reason": "length"}]}
    response = read_reply(RawReply(body, 0.0), TEXT)
    assert (response.text, response.finish_reason, response.prompt_tokens) == ("negative", "length", 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"choices": []}, "no choices"),
        ({"choices": ["positive"]}, "no choices"),
        (["positive"], "no choices"),
        ({"choices": [{"message": {"role": "assistant"}}]}, "no text"),
        ({**_chat_json(), "usage": {"prompt_tokens": "many"}}, "not a token count"),
    ],
)
def test_a_reply_that_is_not_a_completion_is_a_provider_fault(body: Any, message: str) -> None:
    with pytest.raises(LLMProviderError, match=message):
        read_reply(RawReply(body, 0.0), CHAT)
