"""The verdict on the held-out test split: each target's naive migration, the finalists, the
winner, the legacy app as it runs today, and paired tests of the winner against them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.dataset import Example
from migrator.errors import BudgetExhausted, LLMError
from migrator.evaluate import Config, ExampleResult, Summary, evaluate, seeded, summarize
from migrator.llm import LLMClient
from migrator.migration._prepare import endpoint_for
from migrator.models import model_info
from migrator.search import SearchResult, SearchSetup, TrialOutcome, best_trials
from migrator.stats import PairedTest, bootstrap_ci, paired_test

__all__ = ["Evaluated", "Verdict", "judge_on_test", "scored"]

Progress = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Evaluated:
    """A config scored on the test split."""

    role: str
    config: Config
    dev: Summary | None
    test: Summary
    test_ci: tuple[float, float]
    results: tuple[ExampleResult, ...]
    trial: int | None = None


@dataclass(frozen=True)
class Verdict:
    """What the test split says; ``stopped_by`` names a budget that ran out (in the search or here)."""

    winner: Evaluated | None
    baseline: Evaluated | None
    legacy: Evaluated | None
    legacy_note: str
    finalists: tuple[Evaluated, ...]
    baselines_by_target: Mapping[str, Evaluated]
    paired: PairedTest | None
    paired_same_target: PairedTest | None
    stopped_by: str | None


def scored(role: str, config: Config, dev: Summary | None, results: list[ExampleResult], seed: int, trial: int | None) -> Evaluated:
    """Per-example results as an :class:`Evaluated`, with a bootstrap CI drawn with ``seed``."""
    return Evaluated(role, config, dev, summarize(results), bootstrap_ci([r.score for r in results], seed=seed), tuple(results), trial)


def judge_on_test(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, search: SearchResult, test: Sequence[Example], on_progress: Progress
) -> Verdict:
    """Score each target's warm start and the best configs on test, then pick winner and baseline."""
    on_progress("final", {"what": "scoring baseline and finalists on the test split"})
    seed = setup.spec.seed
    baselines: dict[str, Evaluated] = {}
    finalists: list[Evaluated] = []
    stopped_by = search.stopped_by
    try:
        for outcome in _warm_starts(search):
            if outcome.config.model not in baselines:
                baselines[outcome.config.model] = _on_test(runner, client, setup, outcome, "baseline", test)
        for outcome in best_trials(search, setup.spec.budget.finalists):
            finalists.append(_on_test(runner, client, setup, outcome, "finalist", test))
    except BudgetExhausted as exc:
        # Configs scored so far keep their verdict; the rest are reported as not scored.
        stopped_by = exc.which
        on_progress("final", {"what": f"the {exc.which} budget ran out during the test verdict"})
    winner = finalists[0] if finalists else None
    baseline = _naive_migration(baselines, len(setup.dev))
    same = baselines.get(winner.config.model) if winner is not None else None
    legacy, legacy_note = _evaluate_legacy(runner, client, setup, test)
    return Verdict(
        winner, baseline, legacy, legacy_note, tuple(finalists), baselines,
        _paired(winner, baseline, seed), _paired(winner, same, seed), stopped_by,
    )  # fmt: skip


def _warm_starts(search: SearchResult) -> list[TrialOutcome]:
    """The warm starts (legacy prompt per target) that have a dev score.

    A warm start pruned on dev still gets its test verdict (the test calls are reserved for
    it), so every target shows its naive migration.
    """
    return [
        o for o in search.trials
        if o.warm_start and (o.state == "complete" or (o.state == "pruned" and o.summary.n > 0))
    ]  # fmt: skip


def _on_test(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, outcome: TrialOutcome, role: str, test: Sequence[Example]
) -> Evaluated:
    config = outcome.config
    template = setup.prompts[config.prompt_id].template
    endpoint = setup.endpoints[config.model]
    results = runner.run(evaluate(client, config, endpoint, template, test, setup.metric, setup.demos_for(config)))
    return scored(role, config, outcome.summary, results, setup.spec.seed, outcome.number)


def _naive_migration(baselines: Mapping[str, Evaluated], dev_size: int) -> Evaluated | None:
    """The target that does best on dev with the prompt unchanged (the naive migration),

    among those scored on all of dev: a pruned one's partial score is not comparable.
    """
    full = [e for e in baselines.values() if e.dev is not None and e.dev.n == dev_size] or list(baselines.values())
    if not full:
        return None
    return max(full, key=lambda e: (e.dev.score if e.dev else 0.0, -e.test.cost_usd_per_example))


def _paired(winner: Evaluated | None, other: Evaluated | None, seed: int) -> PairedTest | None:
    if winner is None or other is None:
        return None
    return paired_test([r.score for r in winner.results], [r.score for r in other.results], seed=seed)


def _evaluate_legacy(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, test: Sequence[Example]
) -> tuple[Evaluated | None, str]:
    """The app as it runs today, if its model still answers; reported once otherwise."""
    spec = setup.spec
    app = spec.app
    if app.model in setup.endpoints:
        return None, "the legacy model is also a target; see its baseline"
    endpoint = endpoint_for(app, {})
    params = tuple(sorted(seeded(app.params, model_info(app.model, api_base=endpoint.api_base).accepts, spec.seed).items()))
    config = Config(app.model, "original", 0, "none", params, endpoint.mode)
    template = setup.prompts["original"].template
    try:
        probe = runner.run(evaluate(client, config, endpoint, template, test[:1], setup.metric))
        if probe[0].error is not None:
            reason = probe[0].error.removeprefix(f"{app.model}: ").splitlines()[0][:240]
            return None, f"legacy model {app.model} is unreachable, so the app as it runs today has no live score ({reason})"
        results = probe + runner.run(evaluate(client, config, endpoint, template, test[1:], setup.metric))
    except BudgetExhausted as exc:  # the legacy score is for information: the run still reports
        return None, f"legacy model {app.model} was not scored: {exc}"
    except LLMError as exc:  # pragma: no cover - evaluate scores per-example failures
        return None, f"legacy model {app.model} failed: {exc}"
    return scored("legacy", config, None, results, spec.seed, None), ""
