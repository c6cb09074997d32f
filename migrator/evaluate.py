"""Running one configuration over examples. Returns data; never writes files."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from migrator.dataset import Example
from migrator.errors import LLMError
from migrator.llm import Endpoint, LLMClient, LLMRequest
from migrator.metrics import Metric
from migrator.prompts import Demo, PromptTemplate
from migrator.redaction import redact

__all__ = ["Config", "ExampleResult", "Summary", "build_request", "evaluate", "request_seed", "seeded", "summarize"]


def request_seed(seed: int, sample: int = 0) -> int:
    """The ``seed`` sent with a request: from the spec's seed and which sample of a reply it is.

    The same for every run of a spec, so a rerun, a resume and a run under provider
    faults get the same replies at a temperature above 0 from a provider that honours it.
    """
    digest = hashlib.sha256(f"migrator-request-seed:{seed}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits: every provider takes that


def seeded(params: Mapping[str, Any], accepts: Collection[str], seed: int, sample: int = 0) -> dict[str, Any]:
    """``params`` with the request seed, where the model takes one and the app set none."""
    out = dict(params)
    if "seed" in accepts and "seed" not in out:
        out["seed"] = request_seed(seed, sample)
    return out


@dataclass(frozen=True)
class Config:
    """One point of the search: which model, prompt, demos and sampling params."""

    model: str
    prompt_id: str = "original"
    demos: int = 0
    demo_strategy: str = "none"
    params: tuple[tuple[str, Any], ...] = ()
    mode: Literal["chat", "completion"] = "chat"

    def label(self) -> str:
        """Human-readable name: model · prompt · k demos · sampling params."""
        demos = f"{self.demos} demos ({self.demo_strategy})" if self.demos else "0 demos"
        short = {"temperature": "T", "top_p": "top_p"}
        sampling = " ".join(f"{short[k]}={v:g}" for k, v in self.params if k in short and isinstance(v, (int, float)))
        return f"{self.model} · {self.prompt_id} · {demos}" + (f" · {sampling}" if sampling else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_id": self.prompt_id,
            "demos": self.demos,
            "demo_strategy": self.demo_strategy,
            "params": dict(self.params),
            "mode": self.mode,
        }


@dataclass(frozen=True)
class ExampleResult:
    example_id: str
    output: str
    score: float
    cost_usd: float = 0.0
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Summary:
    """Aggregates of a list of results, as reported for a config."""

    score: float
    n: int
    failed: int
    cost_usd: float
    cost_usd_per_example: float
    latency_p50_s: float
    prompt_tokens: int
    completion_tokens: int
    calls: int = field(default=0)


def summarize(results: Sequence[ExampleResult]) -> Summary:
    n = len(results)
    if n == 0:
        return Summary(0.0, 0, 0, 0.0, 0.0, 0.0, 0, 0)
    cost = sum(r.cost_usd for r in results)
    latencies = [r.latency_s for r in results if r.error is None]
    return Summary(
        score=sum(r.score for r in results) / n,
        n=n,
        failed=sum(r.error is not None for r in results),
        cost_usd=cost,
        cost_usd_per_example=cost / n,
        latency_p50_s=statistics.median(latencies) if latencies else 0.0,
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        calls=sum(not r.cached and r.error is None for r in results),
    )


def build_request(
    config: Config, endpoint: Endpoint, template: PromptTemplate, example: Example, demos: Sequence[Demo]
) -> LLMRequest:
    """The exact request a config sends for one example."""
    if endpoint.mode == "completion":
        return LLMRequest(endpoint, prompt=template.render_text(example.inputs, demos), params=config.params)
    messages = template.render(example.inputs, demos)
    return LLMRequest(endpoint, messages=tuple((m["role"], m["content"]) for m in messages), params=config.params)


async def _one(
    client: LLMClient, request: LLMRequest, example: Example, metric: Metric
) -> ExampleResult:
    try:
        response = await client.complete(request)
    except LLMError as exc:
        # A reply that stays broken after retries is a wrong answer, counted, not a crash.
        return ExampleResult(example.id, "", 0.0, error=redact(str(exc))[:500])
    return ExampleResult(
        example_id=example.id,
        output=response.text,
        score=metric.score(response.text, example.expected),
        cost_usd=response.cost_usd,
        latency_s=response.latency_s,
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        cached=response.cached,
    )


async def evaluate(
    client: LLMClient,
    config: Config,
    endpoint: Endpoint,
    template: PromptTemplate,
    examples: Sequence[Example],
    metric: Metric,
    demos_for: Callable[[Example], Sequence[Demo]] = lambda _: (),
) -> list[ExampleResult]:
    """Score ``config`` on ``examples`` concurrently; results keep the examples' order.

    Budget exhaustion propagates (the caller decides what a partial trial means);
    per-example model failures are scored 0 and carry the error.
    """
    requests = [build_request(config, endpoint, template, ex, demos_for(ex)) for ex in examples]
    tasks = [asyncio.ensure_future(_one(client, req, ex, metric)) for req, ex in zip(requests, examples, strict=True)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
