"""Reading a reply: the one parser of chat and text completions, whichever road they came by.

The direct road hands over decoded JSON (dicts and lists), litellm its response objects
(attributes); both have OpenAI's shape, so one reader that looks a field up either way
serves both, and a ``MockTransport`` handler may return either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.errors import LLMProviderError
from migrator.llm._types import Endpoint, LLMResponse, RawReply
from migrator.models import model_info

__all__ = ["read_reply"]


def read_reply(reply: RawReply, endpoint: Endpoint) -> LLMResponse:
    """The text, usage and cost of a completion; ``LLMProviderError`` if it is not one."""
    choice = _first_choice(reply.body, endpoint.model)
    text = _field(choice, "text") if endpoint.mode == "completion" else _field(_field(choice, "message"), "content")
    if text is None:
        raise LLMProviderError("the reply has no text", model=endpoint.model)
    usage = _field(reply.body, "usage")
    prompt = _count(_field(usage, "prompt_tokens"), endpoint.model)
    completion = _count(_field(usage, "completion_tokens"), endpoint.model)
    finish = _field(choice, "finish_reason")
    return LLMResponse(
        text=str(text),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=model_info(endpoint.model, api_base=endpoint.api_base).cost(prompt, completion),
        latency_s=reply.latency_s,
        finish_reason=None if finish is None else str(finish),
    )


def _field(record: Any, name: str) -> Any:
    """``record[name]`` of decoded JSON, ``record.name`` of a response object; None if absent."""
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _first_choice(body: Any, model: str) -> Any:
    choices = _field(body, "choices")
    if not isinstance(choices, list | tuple) or not choices:
        raise LLMProviderError("the reply has no choices", model=model)
    choice = choices[0]
    # a choice is a JSON object or a response object; JSON's scalars and lists have no __dict__
    if not isinstance(choice, Mapping) and not hasattr(choice, "__dict__"):
        raise LLMProviderError("the reply has no choices", model=model)
    return choice


def _count(value: Any, model: str) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError) as exc:
        raise LLMProviderError(f"the reply's usage is not a token count: {value!r}", model=model) from exc
