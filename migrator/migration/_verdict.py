"""The verdict on the held-out test split: each target's naive migration, the finalists, the
winner, the legacy app as it runs today, and paired tests of the winner against them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.evaluate import Config, ExampleResult, Summary, evaluate, seeded, summarize
from migrator.llm import LLMClient
from migrator.migration._prepare import endpoint_for
from migrator.models import is_local, model_info
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
    """Score each target's warm start and the best configs on test, then pick winner and baseline.

    The evaluations run at once, as one batch at the client's concurrency, so no evaluation
    waits for another's last reply; the legacy model, last, is scored for information.
    They run one after another on local models, or when the calls budget cannot pay for
    the legacy model's calls beside the others (or the budget is in USD).
    """
    on_progress("final", {"what": "scoring baseline and finalists on the test split"})
    seed = setup.spec.seed
    jobs = [(o, "baseline") for o in _first_per_target(_warm_starts(search))]
    jobs += [(o, "finalist") for o in best_trials(search, setup.spec.budget.finalists)]
    legacy = _Legacy.of(setup, test)
    scoring: list[Callable[[], Awaitable[list[ExampleResult]]]] = [
        functools.partial(_on_test, client, setup, outcome, test) for outcome, _ in jobs
    ]
    called = legacy if legacy is not None and legacy.lacking is None else None
    if called is not None:
        scoring.append(functools.partial(called.scores, client))
    models = [outcome.config.model for outcome, _ in jobs] + ([called.config.model] if called else [])
    if any(is_local(m) for m in models) or (called is not None and not _legacy_fits(client, setup, len(jobs), len(test))):
        # one after another: llama.cpp servers share the cores, and a legacy model that
        # does not fit the budget beside the others must not take the finalists' calls
        done = [runner.run(_batch([score()]))[0] for score in scoring]
    else:
        done = runner.run(_batch([score() for score in scoring]))
    baselines: dict[str, Evaluated] = {}
    finalists: list[Evaluated] = []
    stopped_by = search.stopped_by
    for (outcome, role), results in zip(jobs, done, strict=False):
        if isinstance(results, BudgetExhausted):
            # configs scored before the budget ran out keep their verdict; the rest are reported as not scored
            stopped_by = stopped_by or results.which
            continue
        evaluated = scored(role, outcome.config, outcome.summary, results, seed, outcome.number)
        if role == "baseline":
            baselines[outcome.config.model] = evaluated
        else:
            finalists.append(evaluated)
    if stopped_by and stopped_by != search.stopped_by:
        on_progress("final", {"what": f"the {stopped_by} budget ran out during the test verdict"})
    winner = finalists[0] if finalists else None
    baseline = _naive_migration(baselines, len(setup.dev))
    same = baselines.get(winner.config.model) if winner is not None else None
    if legacy is None:
        legacy_scored, legacy_note = _LEGACY_IS_A_TARGET
    elif legacy.lacking is not None:
        legacy_scored, legacy_note = None, (
            f"legacy model {legacy.config.model} was not called: {legacy.lacking} is not set, "
            "so the app as it runs today has no live score"
        )
    else:
        legacy_scored, legacy_note = legacy.verdict(done[len(jobs)], seed)
    return Verdict(
        winner, baseline, legacy_scored, legacy_note, tuple(finalists), baselines,
        _paired(winner, baseline, seed), _paired(winner, same, seed), stopped_by,
    )  # fmt: skip


async def _batch(scoring: Sequence[Awaitable[Any]]) -> list[Any]:
    """Each evaluation's results, or the BudgetExhausted it ran into; any other error is raised."""
    done = await asyncio.gather(*scoring, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BudgetExhausted):
            raise outcome
    return list(done)


def _first_per_target(warm_starts: Sequence[TrialOutcome]) -> list[TrialOutcome]:
    seen: dict[str, TrialOutcome] = {}
    for outcome in warm_starts:
        seen.setdefault(outcome.config.model, outcome)
    return list(seen.values())


def _legacy_fits(client: LLMClient, setup: SearchSetup, evaluations: int, n_test: int) -> bool:
    """Whether the calls budget (the spec's, or the client's own) pays for the legacy model's test calls
    beside the verdict's; under a USD budget that is never known beforehand."""
    budget, limits = setup.spec.budget, getattr(client, "limits", None)
    if budget.usd is not None or (limits is not None and limits.usd is not None):
        return False
    caps = [c for c in (budget.calls, limits.calls if limits is not None else None) if c is not None]
    return not caps or client.ledger.spent().calls + (evaluations + 1) * n_test <= min(caps)


def _warm_starts(search: SearchResult) -> list[TrialOutcome]:
    """The warm starts (legacy prompt per target) that have a dev score.

    A warm start pruned on dev still gets its test verdict (the test calls are reserved for
    it), so every target shows its naive migration.
    """
    return [
        o for o in search.trials
        if o.warm_start and (o.state == "complete" or (o.state == "pruned" and o.summary.n > 0))
    ]  # fmt: skip


def _on_test(client: LLMClient, setup: SearchSetup, outcome: TrialOutcome, test: Sequence[Example]) -> Awaitable[list[ExampleResult]]:
    config = outcome.config
    template = setup.prompts[config.prompt_id].template
    return evaluate(client, config, setup.endpoints[config.model], template, test, setup.metric, setup.demos_for(config))


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


_LEGACY_IS_A_TARGET = (None, "the legacy model is also a target; see its baseline")


@dataclass(frozen=True)
class _Legacy:
    """The app as it runs today: the legacy model with the original prompt, scored if it still answers."""

    config: Config
    endpoint: Any
    setup: SearchSetup
    test: Sequence[Example]
    # the API key variable the legacy model needs and the environment lacks: then it is not called
    lacking: str | None = None

    @classmethod
    def of(cls, setup: SearchSetup, test: Sequence[Example]) -> _Legacy | None:
        """None when the legacy model is also a target (its baseline is the same config)."""
        from migrator.retirement import missing_key

        spec = setup.spec
        app = spec.app
        if app.model in setup.endpoints:
            return None
        endpoint = endpoint_for(app, {})
        params = tuple(sorted(seeded(app.params, model_info(app.model, api_base=endpoint.api_base).accepts, spec.seed).items()))
        lacking = missing_key({"model": app.model, "api_base": endpoint.api_base, "api_key_env": endpoint.api_key_env})
        return cls(Config(app.model, "original", 0, "none", params, endpoint.mode), endpoint, setup, test, lacking)

    async def scores(self, client: LLMClient) -> list[ExampleResult]:
        """One example first: a model that no longer answers costs one failed request, not one per example."""
        template = self.setup.prompts["original"].template
        probe = await evaluate(client, self.config, self.endpoint, template, self.test[:1], self.setup.metric)
        if probe[0].error is not None:
            return probe
        return probe + await evaluate(client, self.config, self.endpoint, template, self.test[1:], self.setup.metric)

    def verdict(self, results: list[ExampleResult] | BaseException, seed: int) -> tuple[Evaluated | None, str]:
        model = self.config.model
        if isinstance(results, BudgetExhausted):  # the legacy score is for information: the run still reports
            return None, f"legacy model {model} was not scored: {results}"
        if isinstance(results, BaseException):  # the batch re-raises any other error before it gets here
            raise results
        if results[0].error is not None:  # the probe: scores() sent nothing more
            reason = results[0].error.removeprefix(f"{model}: ").splitlines()[0][:240]
            return None, f"legacy model {model} is unreachable, so the app as it runs today has no live score ({reason})"
        return scored("legacy", self.config, None, results, seed, None), ""
