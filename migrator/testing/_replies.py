"""What the loopback server receives and what it answers.

By default it answers a sentiment task (:func:`sentiment_reply`): it reads the review in
the last user message (a ``/v1/completions`` prompt is read as the fake provider reads
one) and labels it with ``true_label``, right or wrong with the probability of the
``PROFILES`` entry the model id ends with (``fault-fewshot`` behaves like
``fake/fewshot``; anything else like ``fake/oracle``; ``...-echo`` replies with the last
user message). So a migration run against it has something to find. At temperature 0
the reply is a function of the request; above it, of the request and its ``seed``, and a
request without a seed gets a fresh sample each time, as from a real server.

Any other :data:`Responder` can take its place (a test's echo, a benchmark's fixed label).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.testing._fake_provider import PROFILES, hash_unit, last_input, true_label, word_tokens

__all__ = ["Attempt", "Completion", "Responder", "answer", "completion_document", "request_messages", "sentiment_reply"]


@dataclass(frozen=True)
class Attempt:
    """One request as the server received it."""

    path: str
    authorization: str | None
    body: Any
    fault: str | None


@dataclass(frozen=True)
class Completion:
    """What a responder answers one request: the text and the usage the reply reports."""

    text: str
    prompt_tokens: int
    completion_tokens: int


Responder = Callable[[Attempt], Completion]


def request_messages(body: Mapping[str, Any]) -> list[Any]:
    """A chat request's messages; a completion request's prompt as one user message."""
    if "prompt" in body:
        return [{"role": "user", "content": str(body["prompt"])}]
    return list(body.get("messages") or [])


def answer(body: Mapping[str, Any]) -> str:
    """The reply a fault-free server gives to a chat or completion request."""
    model = str(body.get("model", ""))
    messages = request_messages(body)
    # read as the fake provider reads it: a completion prompt's demos are its "Answer:" blocks
    last, n_demos = last_input(messages)
    if model.endswith("-echo"):
        return last
    profile = PROFILES.get(model.rsplit("-", 1)[-1], PROFILES["oracle"])
    temperature = float(body.get("temperature") or 0.0)
    label = true_label(last)
    everything = "\n".join(str(m.get("content", "")) for m in messages)
    # Above temperature 0 a reply is a sample: the same one again only for the same seed,
    # as from a real server (llama.cpp, OpenAI); greedy decoding needs no seed.
    sample = "" if temperature <= 0 else str(body["seed"]) if "seed" in body else str(random.random())
    if hash_unit(model, everything, f"{temperature:.3f}", sample) < profile.p_correct(n_demos, temperature):
        return label
    return "negative" if label == "positive" else "positive"


def sentiment_reply(attempt: Attempt) -> Completion:
    """The default responder: :func:`answer`, one token per word."""
    text = answer(attempt.body)
    prompt_tokens = sum(word_tokens(str(m.get("content", ""))) for m in request_messages(attempt.body))
    return Completion(text, prompt_tokens, word_tokens(text))


def completion_document(
    body: Mapping[str, Any], completion: Completion, *, number: int, finish: str = "stop", empty: bool = False
) -> dict[str, Any]:
    """The OpenAI reply to ``body``: a text completion if it sent a prompt, else a chat completion."""
    is_text = "prompt" in body
    content = {"text": completion.text} if is_text else {"message": {"role": "assistant", "content": completion.text}}
    choices = [] if empty else [{"index": 0, **content, "finish_reason": finish, "logprobs": None}]
    tokens = completion.prompt_tokens + completion.completion_tokens
    return {
        "id": f"chatcmpl-{number}",
        "object": "text_completion" if is_text else "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": tokens,
        },
    }
