"""The boundary objects of a model call: where it goes, what is asked, what comes back.

Everything here is a plain frozen dataclass (``CallStats`` is the one mutable counter),
a Protocol or pure hashing (``request_key``), so the rest of migrator can speak of calls
without loading litellm, aiohttp or SQLite.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from migrator.llm._ledger import Ledger

__all__ = [
    "CallStats",
    "Endpoint",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "Limits",
    "Mode",
    "RawReply",
    "request_key",
]

Mode = Literal["chat", "completion"]

# (litellm provider, endpoint mode) pairs whose requests are plain OpenAI JSON, so
# sending them ourselves changes nothing but the cost of sending them.
_DIRECT = {("openai", "chat"): "chat/completions", ("text-completion-openai", "completion"): "completions"}


def request_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines a reply."""
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Endpoint:
    """How to reach a model: its id, endpoint mode and, for self-hosted servers, where.

    ``served_by`` says which server or weights answer, where the model id alone does
    not: the address of a self-hosted endpoint, or the sha256 of a managed local
    model's weights (its port changes every run). Replies are cached under it, so
    pointing ``openai/my-model`` at another server never returns the old one's replies.
    """

    model: str
    mode: Mode = "chat"
    api_base: str | None = None
    api_key_env: str | None = None
    litellm_model: str | None = None
    served_by: str | None = None

    def call_model(self) -> str:
        return self.litellm_model or self.model

    def direct_path(self) -> str | None:
        """The path under ``api_base`` this endpoint is called on directly, if it is."""
        if not self.api_base:
            return None
        provider = self.call_model().partition("/")[0]
        return _DIRECT.get((provider, self.mode))


@dataclass(frozen=True)
class LLMRequest:
    endpoint: Endpoint
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    # which seeded sample of the reply this is (not sent): sample 1 of a request is a new
    # reply, also from a model that takes no seed; sample 0 keeps the key it always had
    sample: int = 0

    def cache_key(self) -> str:
        # Who serves the model, not its address: a managed local server gets a new port
        # each run, and a hosted model id already names its provider.
        payload: dict[str, Any] = {
            "model": self.endpoint.model,
            "mode": self.endpoint.mode,
            "messages": [list(m) for m in self.messages],
            "prompt": self.prompt,
            "params": dict(self.params),
        }
        if self.endpoint.served_by is not None:
            payload["served_by"] = self.endpoint.served_by
        if self.sample:
            payload["sample"] = self.sample
        return request_key(payload)

    def openai_messages(self) -> list[dict[str, str]]:
        """The messages as OpenAI's chat API takes them."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    finish_reason: str | None = None
    cached: bool = False


@dataclass(frozen=True)
class RawReply:
    """What a transport got back, before it is read.

    ``body`` is an OpenAI-shaped chat or text completion: the decoded JSON of the
    direct road, litellm's response object, or what a ``MockTransport`` handler returned.
    """

    body: Any
    latency_s: float


@dataclass
class CallStats:
    """Counters of one client: what this invocation made, reused, lost and spent.

    ``made`` counts calls answered, ``sent`` every request sent to a provider (retries
    and failed attempts too: what a budget counts).
    """

    made: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0
    sent: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_reply(self, response: LLMResponse) -> None:
        """Count a reply a provider answered (not one from the cache)."""
        self.made += 1
        self.cost_usd += response.cost_usd
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens


@dataclass(frozen=True)
class Limits:
    calls: int | None = None
    usd: float | None = None


class LLMClient(Protocol):
    stats: CallStats
    ledger: Ledger

    async def complete(self, request: LLMRequest) -> LLMResponse: ...
