"""The verdict on the held-out test split: each target's naive migration, the finalists, the
winner, the legacy app as it runs today, and paired tests of the winner against them.

A config at a temperature above 0 gives a different reply each time, and the search saw
one sample per example: a finalist that samples is scored again on dev with more seeded
samples, and on test with as many, each example's score the mean over its samples. Its
dev mean decides its rank; if it leads the best config at temperature 0 by no more than
the spread of its samples, the config at 0 wins instead (a lead within the noise is not
a lead).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.evaluate import (
    Config,
    ExampleResult,
    Summary,
    evaluate_samples,
    merge_samples,
    sampled,
    summarize,
)
from migrator.judge import agreement_on, judge_of, judge_prompt
from migrator.llm import LLMClient
from migrator.migration._legacy import LegacyCall, legacy_call
from migrator.migration._prepare import Prepared, judged
from migrator.models import is_local
from migrator.search import SearchResult, SearchSetup, TrialOutcome, best_trials
from migrator.stats import PairedTest, bootstrap_ci, paired_test

__all__ = ["SAMPLES", "Evaluated", "Noise", "Verdict", "judge_on_test", "judge_report", "sample_count", "score_samples", "scored"]

Progress = Callable[[str, Mapping[str, Any]], None]

# seeded samples per example for a config at a temperature above 0, on dev and on test
SAMPLES = 3


def sample_count(config: Config) -> int:
    """How many samples per example a config is scored with: several when it samples."""
    return SAMPLES if sampled(config) else 1


@dataclass(frozen=True)
class Noise:
    """A sampled config's mean score per sample: on dev (the search's own sample first) and on test."""

    dev: tuple[float, ...] = ()
    test: tuple[float, ...] = ()

    @staticmethod
    def spread(scores: Sequence[float]) -> float:
        """The standard deviation of the per-sample scores (0 for fewer than two)."""
        return statistics.stdev(scores) if len(scores) > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": max(len(self.dev), len(self.test))}
        for split, scores in (("dev", self.dev), ("test", self.test)):
            if scores:
                out[split] = {"scores": list(scores), "mean": statistics.fmean(scores), "spread": self.spread(scores)}
        return out


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
    noise: Noise | None = None

    @property
    def dev_score(self) -> float | None:
        """The dev score it is ranked by: the mean over its samples when it was sampled."""
        if self.noise is not None and self.noise.dev:
            return statistics.fmean(self.noise.dev)
        return self.dev.score if self.dev is not None else None


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
    # why the winner is not the finalist with the best dev score (a lead within sampling noise)
    sampling_note: str = ""


def scored(
    role: str,
    config: Config,
    dev: Summary | None,
    results: Sequence[ExampleResult],
    seed: int,
    trial: int | None,
    noise: Noise | None = None,
) -> Evaluated:
    """Per-example results as an :class:`Evaluated`, with a bootstrap CI drawn with ``seed``."""
    ci = bootstrap_ci([r.score for r in results], seed=seed)
    return Evaluated(role, config, dev, summarize(results), ci, tuple(results), trial, noise)


def scored_samples(
    role: str,
    outcome: TrialOutcome,
    per_sample: Sequence[Sequence[ExampleResult]],
    seed: int,
    dev_samples: Sequence[float] = (),
) -> Evaluated:
    """A trial's config scored once per sample: each example's score is the mean over its samples,
    and the per-sample means (with ``dev_samples``, its dev score per sample) are the noise."""
    test = tuple(summarize(s).score for s in per_sample) if len(per_sample) > 1 else ()
    noise = Noise(tuple(dev_samples), test) if test or len(dev_samples) > 1 else None
    return scored(role, outcome.config, outcome.summary, merge_samples(per_sample), seed, outcome.number, noise)


def score_samples(
    client: LLMClient, setup: SearchSetup, config: Config, examples: Sequence[Example], samples: Sequence[int]
) -> Awaitable[list[list[ExampleResult]]]:
    """The config's results on ``examples``, once per seeded sample in ``samples``."""
    template = setup.prompts[config.prompt_id].template
    return evaluate_samples(
        client, config, setup.endpoints[config.model], template, examples, setup.metric, setup.demos_for(config),
        samples=samples, seed=setup.spec.seed,
    )  # fmt: skip


def judge_on_test(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, search: SearchResult, test: Sequence[Example], on_progress: Progress
) -> Verdict:
    """Score each target's warm start and the best configs on test, then pick winner and baseline.

    The evaluations run at once, as one batch at the client's concurrency, so no evaluation
    waits for another's last reply; the legacy model, last, is scored for information.
    They run one after another on local models, or when the calls budget cannot pay for
    the legacy model's calls beside the others (or the budget is in USD).
    """
    seed = setup.spec.seed
    warm, top = _first_per_target(_warm_starts(search)), best_trials(search, setup.spec.budget.finalists)
    # several samples of a config above temperature 0 only when the budget pays for them beside the rest
    extra = sum((SAMPLES - 1) * (len(setup.dev) + len(test)) for o in top if sampled(o.config))
    extra += sum((SAMPLES - 1) * len(test) for o in warm if sampled(o.config))
    sample = extra == 0 or _fits(client, setup, len(test) * (len(warm) + len(top) + 1) + extra, sampled_too=True)
    if sample:
        ranked, dev_noise, sampling_note, dev_stopped = _rank_finalists(runner, client, setup, search, top, on_progress)
    else:
        ranked, dev_noise, dev_stopped = top, {}, None
        sampling_note = f"configs at a temperature above 0 were scored on one sample each: the budget could not pay for {SAMPLES}"
    on_progress("final", {"what": "scoring baseline and finalists on the test split"})
    jobs = [(o, "baseline") for o in warm] + [(o, "finalist") for o in ranked]
    legacy = _Legacy.of(setup, test)
    scoring: list[Callable[[], Awaitable[Any]]] = [
        functools.partial(score_samples, client, setup, o.config, test, range(sample_count(o.config) if sample else 1))
        for o, _ in jobs
    ]
    called = legacy if legacy is not None and legacy.lacking is None else None
    if called is not None:
        scoring.append(functools.partial(called.scores, client))
    judge = setup.spec.metric.model
    models = [outcome.config.model for outcome, _ in jobs] + ([called.config.model] if called else [])
    models += [judge.model] if judge is not None else []
    # one after another: llama.cpp servers share the cores, and a legacy model that
    # does not fit the budget beside the others must not take the finalists' calls
    one_at_a_time = any(is_local(m) for m in models) or (
        called is not None and not _fits(client, setup, sum(len(test) * sample_count(o.config) for o, _ in jobs) + len(test))
    )
    done = _run_all(runner, scoring, one_at_a_time)
    baselines: dict[str, Evaluated] = {}
    finalists: list[Evaluated] = []
    stopped_by = search.stopped_by or dev_stopped
    for (outcome, role), results in zip(jobs, done, strict=False):
        if isinstance(results, BudgetExhausted):
            # configs scored before the budget ran out keep their verdict; the rest are reported as not scored
            stopped_by = stopped_by or results.which
            continue
        dev_samples = dev_noise.get(outcome.number, ()) if role == "finalist" else ()
        evaluated = scored_samples(role, outcome, results, seed, dev_samples)
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
        _paired(winner, baseline, seed), _paired(winner, same, seed), stopped_by, sampling_note,
    )  # fmt: skip


def _rank_finalists(
    runner: asyncio.Runner,
    client: LLMClient,
    setup: SearchSetup,
    search: SearchResult,
    top: Sequence[TrialOutcome],
    on_progress: Progress,
) -> tuple[list[TrialOutcome], dict[int, tuple[float, ...]], str, str | None]:
    """The finalists in the order they win: (finalists, dev score per sample by trial, note, budget spent).

    A finalist that samples is scored again on dev (``SAMPLES`` in all, the search's
    sample first) and ranked by its mean. If the one that leads samples and leads the best
    config at temperature 0 by no more than its spread, that config (a finalist or not) goes first.
    """
    to_sample = [o for o in top if sampled(o.config)]
    dev_noise: dict[int, tuple[float, ...]] = {}
    stopped_by = None
    if to_sample:
        on_progress("final", {"what": f"scoring {len(to_sample)} finalists at a temperature above 0 with {SAMPLES} samples on dev"})
        scoring = [functools.partial(score_samples, client, setup, o.config, setup.dev, range(1, SAMPLES)) for o in to_sample]
        done = _run_all(runner, scoring, any(is_local(o.config.model) for o in to_sample))
        for outcome, per_sample in zip(to_sample, done, strict=True):
            if isinstance(per_sample, BudgetExhausted):  # ranked on its one sample, as the search saw it
                stopped_by = stopped_by or per_sample.which
                continue
            dev_noise[outcome.number] = (outcome.summary.score, *(summarize(s).score for s in per_sample))

    def mean(o: TrialOutcome) -> float:
        return statistics.fmean(dev_noise[o.number]) if o.number in dev_noise else o.summary.score

    ranked = sorted(top, key=lambda o: -mean(o))  # stable: a tie keeps best_trials' order
    if not ranked or ranked[0].number not in dev_noise:
        return ranked, dev_noise, "", stopped_by
    lead = ranked[0]
    calm = best_trials(replace(search, trials=tuple(o for o in search.trials if not sampled(o.config))), 1)
    if not calm:
        return ranked, dev_noise, "", stopped_by
    steady, spread = calm[0], Noise.spread(dev_noise[lead.number])
    margin = mean(lead) - steady.summary.score
    if margin > spread:
        return ranked, dev_noise, "", stopped_by
    note = (
        f"{lead.config.label()} scored {mean(lead):.3f} on dev over {SAMPLES} samples (spread {spread:.3f}), "
        f"{margin:+.3f} against {steady.config.label()} at temperature 0: within the noise, so the config at "
        "temperature 0 wins"
    )
    return [steady, *(o for o in ranked if o.config != steady.config)], dev_noise, note, stopped_by


def _run_all(runner: asyncio.Runner, scoring: Sequence[Callable[[], Awaitable[Any]]], one_at_a_time: bool) -> list[Any]:
    """Each evaluation's results, or the BudgetExhausted it ran into: all at once, or one after another."""
    if one_at_a_time:
        return [runner.run(_batch([score()]))[0] for score in scoring]
    return runner.run(_batch([score() for score in scoring]))


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


def _fits(client: LLMClient, setup: SearchSetup, calls: int, *, sampled_too: bool = False) -> bool:
    """Whether the budget (the spec's, or the client's own) pays for ``calls`` more answers, each
    with its judge's call where the metric is an LLM judge.

    Under a USD budget the price of another model's calls is never known beforehand (the
    legacy model's); more samples of the targets (``sampled_too``) cost what their calls
    have cost on average so far.
    """
    budget, limits = setup.spec.budget, getattr(client, "limits", None)
    spent = client.ledger.spent()
    calls *= 1 + setup.metric.calls_per_answer
    usd_caps = [c for c in (budget.usd, limits.usd if limits is not None else None) if c is not None]
    if usd_caps:
        if not sampled_too or not spent.calls:
            return False
        if spent.usd + calls * spent.usd / spent.calls > min(usd_caps):
            return False
    caps = [c for c in (budget.calls, limits.calls if limits is not None else None) if c is not None]
    return not caps or spent.calls + calls <= min(caps)


def _warm_starts(search: SearchResult) -> list[TrialOutcome]:
    """The warm starts (legacy prompt per target) that have a dev score.

    A warm start pruned on dev still gets its test verdict (the test calls are reserved for
    it), so every target shows its naive migration.
    """
    return [
        o for o in search.trials
        if o.warm_start and (o.state == "complete" or (o.state == "pruned" and o.summary.n > 0))
    ]  # fmt: skip


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
        if setup.spec.app.model in setup.endpoints:
            return None
        call = legacy_call(setup.spec)
        return cls(call.config, call.endpoint, setup, test, call.lacking)

    async def scores(self, client: LLMClient) -> list[ExampleResult]:
        call = LegacyCall(self.config, self.endpoint, self.lacking)
        return await call.replies(client, self.setup.prompts["original"].template, self.test, self.setup.metric)

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


def judge_report(prepared: Prepared, verdict: Verdict) -> dict[str, Any] | None:
    """What the judge metric did: its model, criteria and whole prompt, and how often its pass/fail
    matches an exact comparison with the expected reply on the test replies of the verdict's
    configs (those scored on one sample each, so that reply and score belong together)."""
    judge = judge_of(judged(prepared.metric, {}).grader)
    if judge is None:
        return None
    shown = {"model": judge.endpoint.model, "criteria": judge.criteria, "reference": judge.reference, "prompt": judge_prompt(judge)}
    if not judge.reference:  # graded on criteria alone (an llm-rubric): there is no expected reply to match
        return {**shown, "agreement_with_exact": None, "agreement_note": "the judge sees no expected reply to compare with"}
    # the legacy model's replies are the labels under labels: legacy: they would match by construction
    legacy = None if prepared.spec.dataset.labels == "legacy" else verdict.legacy
    evaluations = [verdict.winner, verdict.baseline, legacy, *verdict.finalists, *verdict.baselines_by_target.values()]
    replies = [
        (r.example_id, r.output, r.score)
        for ev in evaluations
        if ev is not None and ev.noise is None
        for r in ev.results
        if r.error is None
    ]
    found = agreement_on(replies, {ex.id: ex.expected for ex in prepared.splits.test})
    note = None
    if found is None:
        note = "no test reply was judged"
    elif found.exact_matches in (0, found.n):
        # kappa needs both kinds: with none exact (free text, mostly) agreement is only the judge's fail rate
        note = f"{'no' if found.exact_matches == 0 else 'every'} judged test reply is exactly the expected one: agreement says nothing"
    return {
        **shown,
        "agreement_with_exact": found.as_dict() if found is not None and note is None else None,
        "agreement_note": note,
    }
