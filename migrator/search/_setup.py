"""What a search is given (``SearchSetup``) and what it gives back (``TrialOutcome``, ``SearchResult``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.candidates import DemoPool, PromptCandidate
from migrator.dataset import Example
from migrator.evaluate import Config, ExampleResult, Summary, build_request, seeded
from migrator.llm import Endpoint
from migrator.metrics import Metric
from migrator.spec import MigrationSpec, SearchSpace


@dataclass(frozen=True)
class SearchSetup:
    """Everything fixed across trials."""

    spec: MigrationSpec
    dev: tuple[Example, ...]
    metric: Metric
    prompts: Mapping[str, PromptCandidate]
    demo_pool: DemoPool
    endpoints: Mapping[str, Endpoint]
    accepts: Mapping[str, frozenset[str]]
    # the spec's search space as the budget lets it be searched (``migration.offered_space``)
    space: SearchSpace

    def legacy_params(self, model: str) -> dict[str, Any]:
        """The app's params that this model accepts (the rest cannot be sent to it), and the request seed."""
        accepts = self.accepts[model]
        legacy = self.spec.app.params
        params = {k: v for k, v in legacy.items() if k in accepts or k not in ("temperature", "top_p", "seed")}
        return seeded(params, accepts, self.spec.seed)

    def demos_for(self, config: Config) -> Callable[[Example], Sequence[Any]]:
        return lambda ex: self.demo_pool.demos(config.demo_strategy, config.demos, ex)


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial as the tracker and the report see it."""

    number: int
    state: str
    config: Config
    summary: Summary
    results: tuple[ExampleResult, ...] = ()
    warm_start: bool = False
    note: str = ""
    prompt_text: str = ""


@dataclass(frozen=True)
class SearchResult:
    trials: tuple[TrialOutcome, ...]
    stopped_by: str | None
    study_name: str
    storage: str
    counts: Mapping[str, int] = field(default_factory=dict)
    # the planner had scored every config of the space, so the search ended early
    exhausted: bool = False


def rendered_prompt(setup: SearchSetup, config: Config) -> str:
    """What the config sends for the first dev example, as a reviewer reads it."""
    example = setup.dev[0]
    template = setup.prompts[config.prompt_id].template
    request = build_request(config, setup.endpoints[config.model], template, example, setup.demos_for(config)(example))
    if request.prompt is not None:
        return request.prompt
    return "\n\n".join(f"[{role}]\n{content}" for role, content in request.messages)
