"""Running one configuration over examples. Returns data; never writes files."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from migrator.dataset import Example
from migrator.errors import LLMError
from migrator.llm import Endpoint, LLMClient, LLMRequest
from migrator.metrics import Metric
from migrator.prompts import Demo, PromptTemplate
from migrator.redaction import redact

__all__ = [
    "Config",
    "ExampleResult",
    "Summary",
    "build_request",
    "evaluate",
    "evaluate_samples",
    "merge_samples",
    "request_seed",
    "sampled",
    "seeded",
    "summarize",
]


_T = TypeVar("_T")


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
    # the judge's reason for its score (the judge metric); empty for every other metric
    judged: str = ""


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


def sampled(config: Config) -> bool:
    """Whether the config samples (a temperature above 0): one reply per example is then noisy."""
    value = dict(config.params).get("temperature")
    return isinstance(value, (int, float)) and value > 0


def _resampled(params: tuple[tuple[str, Any], ...], seed: int, sample: int) -> tuple[tuple[str, Any], ...]:
    """The params of sample ``sample``: migrator's request seed moves on; a seed the app set stays."""
    if not sample or dict(params).get("seed") != request_seed(seed):
        return params
    return tuple((k, request_seed(seed, sample) if k == "seed" else v) for k, v in params)


def build_request(
    config: Config,
    endpoint: Endpoint,
    template: PromptTemplate,
    example: Example,
    demos: Sequence[Demo],
    *,
    sample: int = 0,
    seed: int = 0,
) -> LLMRequest:
    """The exact request a config sends for one example (sample 0: the search's; ``seed``: the spec's)."""
    params = _resampled(config.params, seed, sample)
    if endpoint.mode == "completion":
        return LLMRequest(endpoint, prompt=template.render_text(example.inputs, demos), params=params, sample=sample)
    messages = template.render(example.inputs, demos)
    turns = tuple((m["role"], m["content"]) for m in messages)
    return LLMRequest(endpoint, messages=turns, params=params, sample=sample)


async def _one(
    client: LLMClient, request: LLMRequest, example: Example, metric: Metric
) -> ExampleResult:
    try:
        response = await client.complete(request)
    except LLMError as exc:
        # A reply that stays broken after retries is a wrong answer, counted, not a crash.
        return ExampleResult(example.id, "", 0.0, error=redact(str(exc))[:500])
    if metric.grader is not None:
        try:
            score, judged = await metric.grader.grade(client, example, response.text)
        except LLMError as exc:
            # the judge could not grade it: a failed example (counted as such), not a reply scored 0
            return ExampleResult(example.id, response.text, 0.0, response.cost_usd, response.latency_s, error=redact(str(exc))[:500])
    else:
        score, judged = metric.score(response.text, example.expected), ""
    return ExampleResult(
        example_id=example.id,
        output=response.text,
        score=score,
        judged=judged,
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
    *,
    sample: int = 0,
    seed: int = 0,
) -> list[ExampleResult]:
    """Score ``config`` on ``examples`` concurrently; results keep the examples' order.

    Budget exhaustion propagates (the caller decides what a partial trial means);
    per-example model failures are scored 0 and carry the error. ``sample`` > 0 asks for
    another seeded sample of each reply (``seed``: the spec's).
    """
    requests = [build_request(config, endpoint, template, ex, demos_for(ex), sample=sample, seed=seed) for ex in examples]
    return await _all_of([_one(client, req, ex, metric) for req, ex in zip(requests, examples, strict=True)])


async def _all_of(scoring: Sequence[Awaitable[_T]]) -> list[_T]:
    """Every awaitable's result, run at once, in order; on an error the rest are cancelled and it is raised."""
    tasks = [asyncio.ensure_future(s) for s in scoring]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def evaluate_samples(
    client: LLMClient,
    config: Config,
    endpoint: Endpoint,
    template: PromptTemplate,
    examples: Sequence[Example],
    metric: Metric,
    demos_for: Callable[[Example], Sequence[Demo]] = lambda _: (),
    *,
    samples: Sequence[int],
    seed: int,
) -> list[list[ExampleResult]]:
    """``evaluate`` once per seeded sample in ``samples``, all at once; each sample's results, in that order."""
    return await _all_of(
        [evaluate(client, config, endpoint, template, examples, metric, demos_for, sample=i, seed=seed) for i in samples]
    )


def merge_samples(per_sample: Sequence[Sequence[ExampleResult]]) -> list[ExampleResult]:
    """One result per example from several samples: the mean score, cost, latency and tokens,
    the first sample's output, and an error when every sample failed."""
    if len(per_sample) == 1:
        return list(per_sample[0])
    merged = []
    for rows in zip(*per_sample, strict=True):
        n = len(rows)
        errors = [r.error for r in rows if r.error is not None]
        merged.append(
            ExampleResult(
                example_id=rows[0].example_id,
                output=rows[0].output,
                score=sum(r.score for r in rows) / n,
                cost_usd=sum(r.cost_usd for r in rows) / n,
                latency_s=sum(r.latency_s for r in rows) / n,
                prompt_tokens=round(sum(r.prompt_tokens for r in rows) / n),
                completion_tokens=round(sum(r.completion_tokens for r in rows) / n),
                cached=all(r.cached for r in rows),
                error=errors[0] if len(errors) == n else None,
                judged=rows[0].judged,
            )
        )
    return merged
