"""The plan of a migration before its first call (``migrator run --dry-run``): the candidates,
the size of the search space, the budget, and the calls and USD each step may spend.

Every step is counted at its most, for a run from scratch: pruning stops trials early, a
reply the cache holds is no call, and retries (which ``budget.calls`` counts) are not
foreseen. The search gets what the calls (or USD) budget leaves after the other steps and
the verdict's reserve, as ``run_search`` keeps it. Tokens are estimated from the original
prompt rendered on the dev rows (characters / 4, no demos); output tokens are the
``max_tokens`` a call may use, else the expected answers' length.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from migrator.dataset import Example
from migrator.evaluate import Config, build_request
from migrator.judge import MAX_TOKENS as JUDGE_MAX_TOKENS
from migrator.judge import judge_of
from migrator.llm import Endpoint
from migrator.metrics import Metric
from migrator.migration._legacy import legacy_call
from migrator.migration._prepare import Prepared, build_setup, endpoint_for
from migrator.migration._rewrites import _FAILURE_SAMPLE
from migrator.migration._shared import verdict_reserve
from migrator.migration._verdict import SAMPLES
from migrator.models import family, is_local, model_info
from migrator.prompts import PromptTemplate, format_answer
from migrator.search import MAX_PLANNED_SPACE, REFLECTION_SAMPLE, SearchSetup, Space
from migrator.spec import Budget, FloatRange, MigrationSpec, SearchSpace

__all__ = [
    "CallPrice",
    "Plan",
    "PromptPlan",
    "Stage",
    "TargetPlan",
    "calls_per_scored_example",
    "offered_space",
    "plan_migration",
]

# A rewrite may take two framings (rewrite, then direct), and each framing two calls where
# DSPy's chat adapter cannot parse the reply and its JSON adapter asks again (candidates._rewrites).
_CALLS_PER_REWRITE = 4
# A reflection: GEPA's proposal, then the direct framing with the same two adapters (search._loop).
_CALLS_PER_REFLECTION = 3
# the larger of the proposer's output caps (600 tokens for a rewrite, 700 for a reflection)
_PROPOSER_MAX_TOKENS = 700
_CHARS_PER_TOKEN = 4
_FLOATS = ("temperature", "top_p")
# Temperatures above 0 are searched only if the samples of a sampled finalist (the noise rule)
# leave the search at least this share of the calls it has with temperature fixed at 0. On
# review-sentiment at 652 calls they left 37%: 4 trials instead of 21, dev 0.931 against 0.958.
_SAMPLED_SEARCH_SHARE = 0.75


@dataclass(frozen=True)
class CallPrice:
    """What one call to a model is estimated to cost; ``usd`` is None when the model has no known price."""

    model: str
    input_tokens: int
    output_tokens: int
    usd: float | None


@dataclass(frozen=True)
class TargetPlan:
    """One target: how it is called, what is searched for it, how many configs it offers."""

    model: str
    mode: str
    sampling: tuple[str, ...]
    # distinct configs: with no rewrite accepted, and with every planned one
    configs: tuple[int, int]
    price: CallPrice


@dataclass(frozen=True)
class PromptPlan:
    """A prompt candidate (or a planned group of them); ``count`` prompts stand behind it."""

    id: str
    kind: str
    note: str = ""
    count: int = 1


@dataclass(frozen=True)
class Stage:
    """One step of the run: at most ``calls`` requests costing at most ``usd`` (None: a price is unknown)."""

    name: str
    calls: int
    usd: float | None
    detail: str


@dataclass(frozen=True)
class Plan:
    """What ``migrator run`` would do with a spec, computed without a call."""

    name: str
    splits: tuple[int, int, int]
    targets: tuple[TargetPlan, ...]
    prompts: tuple[PromptPlan, ...]
    demo_k: tuple[int, ...]
    demo_strategies: tuple[str, ...]
    demo_options: int
    sampler: str
    # the whole space: with no rewrite accepted, and with every planned one
    configs: tuple[int, int]
    # float parameters searched without a step: listed on the planner's points, else sampled continuously
    continuous: tuple[str, ...]
    budget: Budget
    # why temperature is fixed at 0 though the spec searches it ("": it is searched as written)
    space_note: str
    # the budget that ends the search first as far as it can be foreseen, why, and what may end it sooner
    binds: str
    binds_why: str
    caveats: tuple[str, ...]
    stages: tuple[Stage, ...]
    calls: int
    usd: float | None
    unpriced: tuple[str, ...]

    def stage(self, name: str) -> Stage:
        """The step of this name: labels, rewrites, search, reflections, verdict, legacy or judge."""
        return next(s for s in self.stages if s.name == name)


def calls_per_scored_example(metric: Metric) -> int:
    """The model calls ``metric`` makes to score one answer: 1 for the LLM judge, 0 for the rest."""
    return metric.calls_per_answer


def plan_migration(prepared: Prepared) -> Plan:
    """The plan of a prepared migration: candidates, search space, budget, and calls and USD per step."""
    spec = prepared.spec
    setup = build_setup(prepared, {})
    splits = prepared.splits
    n_dev, n_test = len(splits.dev), len(splits.test)
    prompt_space = spec.search_space.prompt
    proposer = endpoint_for(prompt_space.proposer, {}) if prompt_space.proposer is not None else None
    rewrites = prompt_space.rewrites if proposer is not None else 0
    reflections = prompt_space.reflections
    families = _families(setup)

    rows = splits.dev or prepared.examples
    output_tokens = _output_tokens(spec, rows, prepared.metric)
    prices = {
        model: _price(endpoint, prepared.template, setup.legacy_params(model), rows, output_tokens)
        for model, endpoint in setup.endpoints.items()
    }
    # every prompt is offered to every target: the original, the transforms, the reflection
    # slots (listed from the first trial on) and, at most, every rewrite planned
    fewest = len(prepared.prompts) + reflections
    most = fewest + rewrites * len(families)
    targets = tuple(
        TargetPlan(
            m, e.mode, _sampling(setup, m), (fewest * _per_prompt(setup, m), most * _per_prompt(setup, m)), prices[m]
        )
        for m, e in setup.endpoints.items()
    )
    configs = (sum(t.configs[0] for t in targets), sum(t.configs[1] for t in targets))
    sampler = _sampler(spec, configs[1])

    proposer_price = _proposer_price(proposer, prepared) if proposer is not None else None
    legacy_price = _legacy_price(setup, prepared)
    dearest = _dearest(prices.values())
    reserve, sampling = verdict_reserve(prepared, setup)
    # only the planner reflects (a space too large to list goes to TPE, whose slots stay unwritten)
    reflecting = reflections if sampler == "linear planner" else 0
    others = (
        _labels_stage(setup, prepared, legacy_price),
        _rewrites_stage(prepared, families, prices, rewrites, proposer_price),
        _reflections_stage(prepared, dearest, reflecting, proposer_price),
        _verdict_stage(spec, prices, dearest, n_test, reserve, sampling),
        _legacy_stage(setup, prepared, legacy_price),
    )
    trials = _planned_trials(spec, sampler, configs[1])
    per_answer = 1 + calls_per_scored_example(prepared.metric)
    judge_price = _judge_price(setup, rows)
    search, binding = _search_stage(
        spec, trials, configs[1], len(targets), n_dev, reserve + sampling, dearest, others, per_answer, judge_price
    )
    steps = (*others[:2], search, *others[2:])
    stages = (*steps, _judge_stage(prepared, steps, families, rewrites, reflecting, judge_price))

    calls = sum(s.calls for s in stages)
    usd = _sum(*(s.usd for s in stages))
    if spec.budget.calls is not None:
        calls = min(calls, spec.budget.calls)
    if usd is not None and spec.budget.usd is not None:
        usd = min(usd, spec.budget.usd)
    called = [*prices.values(), proposer_price, legacy_price, judge_price]
    unpriced = tuple(dict.fromkeys(p.model for p in called if p is not None and p.usd is None))
    return Plan(
        name=spec.name,
        splits=(len(splits.train), n_dev, n_test),
        targets=targets,
        prompts=_prompts(prepared, families, rewrites, reflections, proposer.model if proposer else None),
        demo_k=tuple(spec.search_space.demos.k),
        demo_strategies=tuple(spec.search_space.demos.strategies),
        demo_options=_demo_options(spec),
        sampler=sampler,
        configs=configs,
        continuous=tuple(
            dict.fromkeys(n for m in setup.endpoints for n, r in _float_ranges(setup, m).items() if r[2] is None)
        ),
        budget=spec.budget,
        space_note=prepared.space_note,
        binds=binding.budget,
        binds_why=binding.why,
        caveats=binding.caveats,
        stages=stages,
        calls=calls,
        usd=usd,
        unpriced=unpriced,
    )


def offered_space(prepared: Prepared) -> tuple[SearchSpace, str]:
    """The space the run searches: the spec's, or with temperature fixed at 0 where the budget cannot pay for sampling.

    A finalist above temperature 0 is scored on several samples on dev and on test, and the
    search keeps those calls back from its start (``verdict_reserve``). Where a calls or USD
    budget binds and that reserve would leave the search less than ``_SAMPLED_SEARCH_SHARE``
    of the calls it has at temperature 0, temperature is not searched, and the note says why
    and what budget would search it. An app that samples (its temperature above 0) keeps the
    spec's space: its naive migration runs at its own temperature.
    """
    space, spec = prepared.space, prepared.spec
    rng = space.temperature
    if rng is None or rng.high <= 0 or (spec.budget.calls is None and spec.budget.usd is None):
        return space, ""
    if float(spec.app.params.get("temperature") or 0) > 0:
        return space, ""
    sampled = plan_migration(prepared)
    if sampled.binds not in ("calls", "usd"):
        return space, ""
    fixed = space.model_copy(update={"temperature": FloatRange(low=0.0, high=0.0)})
    at_zero = plan_migration(replace(prepared, space=fixed))
    searched, whole = sampled.stage("search").calls, at_zero.stage("search").calls
    if searched >= _SAMPLED_SEARCH_SHARE * whole:
        return space, ""
    # d more calls for the search raise both counts alike (searched + d >= share x (whole + d)),
    # until the search at 0 has all its trials want
    share, wanted = _SAMPLED_SEARCH_SHARE, at_zero.splits[1] * _planned_trials(spec, at_zero.sampler, at_zero.configs[1])
    more = (share * whole - searched) / (1 - share)
    if whole + more > wanted:
        more = share * wanted - searched
    more = math.ceil(more)
    per_answer = 1 + calls_per_scored_example(prepared.metric)
    if sampled.binds == "calls" and spec.budget.calls is not None:
        enough = f"budget.calls {spec.budget.calls + more * per_answer} or more would search it"
    else:
        per_call = (at_zero.stage("search").usd or 0.0) / max(1, whole)
        enough = f"about {more * per_call:.2g} USD more in budget.usd would search it"
    note = (
        f"temperature fixed at 0: a finalist above it is scored on {SAMPLES} samples on dev and test, which would keep back "
        f"{whole - searched} of the {whole} calls budget.{sampled.binds} leaves the search; {enough}"
    )
    return fixed, note


# -- candidates and the space ------------------------------------------------------------------


def _families(setup: SearchSetup) -> dict[str, str]:
    """Each target family, with the target its rewrites are grounded on (the first of it)."""
    by_family: dict[str, str] = {}
    for model in setup.endpoints:
        by_family.setdefault(family(model), model)
    return by_family


def _prompts(
    prepared: Prepared, families: Mapping[str, str], rewrites: int, reflections: int, proposer: str | None
) -> tuple[PromptPlan, ...]:
    out = [PromptPlan(pid, "original" if pid == "original" else "transform") for pid in prepared.prompts]
    for fam in families:
        if rewrites:
            out.append(
                PromptPlan(
                    f"rewrites for {fam}",
                    "rewrite",
                    f"by {proposer}, before the search (each kept or rejected)",
                    rewrites,
                )
            )
    out += [
        PromptPlan(f"reflect-{i}", "reflection", f"by {proposer}, during the search") for i in range(1, reflections + 1)
    ]
    return tuple(out)


def _planned_trials(spec: MigrationSpec, sampler: str, configs: int) -> int:
    """The trials the search can run: the planner ends it once it has scored every config."""
    return min(spec.budget.trials, configs) if sampler == "linear planner" else spec.budget.trials


def _demo_options(spec: MigrationSpec) -> int:
    demos = spec.search_space.demos
    return sum(1 if k == 0 else len(demos.strategies) for k in demos.k)


def _float_ranges(setup: SearchSetup, model: str) -> dict[str, tuple[float, float, float | None]]:
    """The float parameters the search offers this model (the ones it accepts), as the planner lists them."""
    space, accepts = setup.space, setup.accepts[model]
    return {n: (r.low, r.high, r.step) for n in _FLOATS if (r := getattr(space, n)) is not None and n in accepts}


def _token_choices(setup: SearchSetup, model: str) -> list[int]:
    space = setup.space
    return (
        list(space.max_tokens.choices) if space.max_tokens is not None and "max_tokens" in setup.accepts[model] else []
    )


def _per_prompt(setup: SearchSetup, model: str) -> int:
    """How many configs one prompt gives this model: demo options x its sampling values (the planner's listing)."""
    space = setup.space
    listed = Space(
        [model],
        ["one"],
        space.demos.k,
        space.demos.strategies,
        {model: _float_ranges(setup, model)},
        {model: _token_choices(setup, model)},
    )
    return listed.size()


def _points(model: str, rng: tuple[float, float, float | None]) -> int:
    """How many values the planner lists for one float range."""
    return Space([model], ["one"], [0], [], {model: {"x": rng}}, {}).size()


def _sampling(setup: SearchSetup, model: str) -> tuple[str, ...]:
    """What is searched besides prompt and demos for this model, one line per parameter."""
    space, accepts = setup.space, setup.accepts[model]
    lines = []
    for name in _FLOATS:
        rng = getattr(space, name)
        if rng is None:
            continue
        if name not in accepts:
            lines.append(f"{name}: not searched (the model takes none)")
            continue
        points = _points(model, (rng.low, rng.high, rng.step))
        if rng.step:
            lines.append(f"{name} {rng.low:g} to {rng.high:g} step {rng.step:g} ({points} values)")
        else:
            lines.append(f"{name} {rng.low:g} to {rng.high:g}, continuous ({points} points counted)")
    if tokens := _token_choices(setup, model):
        lines.append(f"max_tokens {', '.join(map(str, tokens))}")
    return tuple(lines)


def _sampler(spec: MigrationSpec, most: int) -> str:
    """Who picks the trials: the linear planner (one objective, a space it can list), else Optuna's sampler."""
    space = spec.search_space
    if space.sampler != "linear":
        return space.sampler
    if len(spec.objective) > 1:
        return "tpe (several objectives)"
    return "linear planner" if most <= MAX_PLANNED_SPACE else "tpe (the space is too large to list)"


# -- prices ------------------------------------------------------------------------------------


def _request_chars(config: Config, endpoint: Endpoint, template: PromptTemplate, rows: Sequence[Example]) -> float:
    """The mean length of what ``config`` sends for each row, in characters."""
    lengths = []
    for ex in rows:
        request = build_request(config, endpoint, template, ex, ())
        lengths.append(len(request.prompt) if request.prompt is not None else sum(len(c) for _, c in request.messages))
    return statistics.fmean(lengths)


def _tokens(chars: float) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN)


def _output_tokens(spec: MigrationSpec, rows: Sequence[Example], metric: Metric) -> int:
    """The output tokens a call may use: the largest max_tokens searched, else the app's, else the expected answers'.

    An expected value with no literal answer (a promptfoo test's checks) counts as what it asks, in words.
    """
    if spec.search_space.max_tokens is not None:
        return max(spec.search_space.max_tokens.choices)
    if spec.app.params.get("max_tokens"):
        return int(spec.app.params["max_tokens"])
    return max(1, _tokens(statistics.fmean(len(_shown(ex.expected, metric)) for ex in rows)))


def _priced(endpoint: Endpoint, input_tokens: int, output_tokens: int) -> CallPrice:
    """One call's price from litellm's map (models.model_info); local and self-hosted models cost 0.

    A hosted model that litellm does not know, or knows without a price, has none: free
    is not assumed.
    """
    info = model_info(endpoint.model, api_base=endpoint.api_base)
    free = is_local(endpoint.model) or endpoint.api_base is not None
    priced = free or (info.known and (info.input_cost_per_token > 0 or info.output_cost_per_token > 0))
    return CallPrice(
        endpoint.model, input_tokens, output_tokens, info.cost(input_tokens, output_tokens) if priced else None
    )


def _price(
    endpoint: Endpoint,
    template: PromptTemplate,
    params: Mapping[str, object],
    rows: Sequence[Example],
    output_tokens: int,
) -> CallPrice:
    """A dev call's price: the original prompt, as this endpoint is sent it, on the dev rows."""
    config = Config(endpoint.model, "original", 0, "none", tuple(sorted(params.items())), endpoint.mode)
    return _priced(endpoint, _tokens(_request_chars(config, endpoint, template, rows)), output_tokens)


def _shown(expected: object, metric: Metric) -> str:
    """An expected value as a prompt shows it: the answer, or what its checks ask."""
    answer = metric.answer(expected)
    return answer if answer is not None else metric.expectation(expected)


def _proposer_price(endpoint: Endpoint, prepared: Prepared) -> CallPrice:
    """A proposer call's price: the original instruction and the train sample it reads, and its output cap."""
    sample = (prepared.splits.train or prepared.splits.dev)[:_FAILURE_SAMPLE]
    chars = sum(len(c) for _, c in prepared.template.messages)
    chars += sum(len(" ".join(str(v) for v in ex.inputs.values())) + len(_shown(ex.expected, prepared.metric)) for ex in sample)
    return _priced(endpoint, _tokens(chars), _PROPOSER_MAX_TOKENS)


def _legacy_price(setup: SearchSetup, prepared: Prepared) -> CallPrice | None:
    """A call's price on the legacy model, when its key is set (the verdict or labels: legacy call it)."""
    legacy = legacy_call(setup.spec)
    if legacy.lacking is not None:
        return None
    rows = prepared.splits.dev or prepared.examples
    tokens = _tokens(_request_chars(legacy.config, legacy.endpoint, prepared.template, rows))
    return _priced(legacy.endpoint, tokens, _output_tokens(setup.spec, rows, prepared.metric))


def _dearest(prices: Iterable[CallPrice]) -> CallPrice:
    """The target call that costs most (an unknown price above any known one): what a trial may cost."""
    listed = list(prices)
    unknown = [p for p in listed if p.usd is None]
    return unknown[0] if unknown else max(listed, key=lambda p: p.usd or 0.0)


def _times(calls: int, price: CallPrice | None) -> float | None:
    if calls == 0:
        return 0.0
    return None if price is None or price.usd is None else calls * price.usd


def _sum(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


# -- the steps ---------------------------------------------------------------------------------


def _rewrite_sample(prepared: Prepared) -> int:
    return len((prepared.splits.train or prepared.splits.dev)[:_FAILURE_SAMPLE])


def _reflection_sample(prepared: Prepared) -> int:
    return min(REFLECTION_SAMPLE, len(prepared.splits.train or prepared.splits.dev))


def _rewrites_stage(
    prepared: Prepared,
    families: Mapping[str, str],
    prices: Mapping[str, CallPrice],
    rewrites: int,
    proposer: CallPrice | None,
) -> Stage:
    """Before the search, per target family: the legacy prompt on a train sample, then the proposer."""
    if not rewrites or proposer is None:
        return Stage("rewrites", 0, 0.0, "none planned")
    sample, asks = _rewrite_sample(prepared), _CALLS_PER_REWRITE * rewrites
    usd = _sum(*(_sum(_times(sample, prices[m]), _times(asks, proposer)) for m in families.values()))
    detail = (
        f"{len(families)} families x ({sample} train rows scored with the original prompt + "
        f"{rewrites} rewrites x up to {_CALLS_PER_REWRITE} calls to {proposer.model})"
    )
    return Stage("rewrites", len(families) * (sample + asks), usd, detail)


def _reflections_stage(prepared: Prepared, dearest: CallPrice, reflections: int, proposer: CallPrice | None) -> Stage:
    """During the search: the best config on a train sample, then the proposer, per reflection."""
    if not reflections or proposer is None:
        return Stage("reflections", 0, 0.0, "none planned")
    sample = _reflection_sample(prepared)
    usd = _sum(_times(reflections * sample, dearest), _times(reflections * _CALLS_PER_REFLECTION, proposer))
    detail = f"{reflections} x ({sample} train rows scored by the best config + up to {_CALLS_PER_REFLECTION} calls to {proposer.model})"
    return Stage("reflections", reflections * (sample + _CALLS_PER_REFLECTION), usd, detail)


def _verdict_stage(
    spec: MigrationSpec, prices: Mapping[str, CallPrice], dearest: CallPrice, n_test: int, reserve: int, sampling: int
) -> Stage:
    """Each target's naive migration and the finalists on test, and the re-samples of a finalist above temperature 0.

    The counts are the search's reserve for the verdict (``verdict_reserve``), without the
    legacy model's probe (its own step).
    """
    finalists = spec.budget.finalists * n_test
    baselines = reserve - 1 - finalists
    per_target = baselines // max(1, len(prices))
    usd = _sum(*(_times(per_target, p) for p in prices.values()), _times(finalists + sampling, dearest))
    detail = f"{len(prices)} baselines + {spec.budget.finalists} finalists on {n_test} test rows = {baselines + finalists}"
    if baselines > len(prices) * n_test:
        detail += f" (the app samples: its baselines x {SAMPLES})"
    if sampling:
        detail += f", and {sampling} if a finalist samples ({SAMPLES} samples on dev and test, and the config at temperature 0)"
    return Stage("verdict", baselines + finalists + sampling, usd, detail)


def _labels_stage(setup: SearchSetup, prepared: Prepared, price: CallPrice | None) -> Stage:
    """dataset.labels: legacy: the legacy model on every row, before anything else (a probe first)."""
    spec = setup.spec
    if spec.dataset.labels != "legacy":
        return Stage("labels", 0, 0.0, "the dataset's own expected outputs")
    legacy = legacy_call(spec)
    if legacy.lacking is not None:
        return Stage("labels", 0, 0.0, f"{spec.app.model} cannot label: {legacy.lacking} is not set (the run stops, exit 2)")
    n = len(prepared.examples)
    return Stage("labels", n, _times(n, price), f"{spec.app.model} replies to each of {n} rows: the expected outputs")


def _legacy_stage(setup: SearchSetup, prepared: Prepared, price: CallPrice | None) -> Stage:
    """The app as it runs today on test: called when it is no target and its key is set."""
    n_test = len(prepared.splits.test)
    legacy = legacy_call(setup.spec)
    if setup.spec.app.model in setup.endpoints:
        return Stage("legacy", 0, 0.0, "the legacy model is a target: its baseline stands for it")
    if legacy.lacking is not None:
        return Stage("legacy", 0, 0.0, f"{legacy.config.model} not called: {legacy.lacking} is not set")
    detail = f"{legacy.config.model} on {n_test} test rows (a probe first: no more if it does not answer)"
    return Stage("legacy", n_test, _times(n_test, price), detail)


def _judge_price(setup: SearchSetup, rows: Sequence[Example]) -> CallPrice | None:
    """A judge call's price: its prompt with the row and a reply as long as the expected one, and its output cap."""
    judge = judge_of(setup.metric.grader)
    if judge is None:
        return None
    requests = [judge.request(ex, format_answer(ex.expected)) for ex in rows]
    chars = statistics.fmean(
        len(r.prompt) if r.prompt is not None else sum(len(c) for _, c in r.messages) for r in requests
    )
    return _priced(judge.endpoint, _tokens(chars), JUDGE_MAX_TOKENS)


def _judge_stage(
    prepared: Prepared,
    stages: Sequence[Stage],
    families: Mapping[str, str],
    rewrites: int,
    reflections: int,
    price: CallPrice | None,
) -> Stage:
    """The metric's own calls on every answer the run scores: an LLM judge's (``judge`` metric)."""
    per_answer = calls_per_scored_example(prepared.metric)
    by_name = {s.name: s.calls for s in stages}
    scored = by_name["search"] + by_name["verdict"] + by_name["legacy"]
    scored += len(families) * _rewrite_sample(prepared) if rewrites else 0
    scored += reflections * _reflection_sample(prepared)
    name = prepared.metric.name
    if not per_answer:
        return Stage("judge", 0, 0.0, f"metric {name} scores without a model call")
    model = price.model if price is not None else "the judge"
    calls = per_answer * scored
    return Stage(
        "judge", calls, _times(calls, price), f"{model}: {per_answer} call per scored answer x {scored} answers"
    )


@dataclass(frozen=True)
class _Binding:
    budget: str
    why: str
    caveats: tuple[str, ...]


def _search_stage(
    spec: MigrationSpec,
    trials: int,
    most: int,
    n_targets: int,
    n_dev: int,
    kept: int,
    dearest: CallPrice,
    others: Sequence[Stage],
    per_answer: int = 1,
    judge: CallPrice | None = None,
) -> tuple[Stage, _Binding]:
    """The trials on dev, as many as the budgets leave; which budget binds, and why.

    ``kept`` is what the search keeps back for the verdict; the warm starts (the legacy
    prompt on each target) run on it all the same: without them there is no baseline.
    ``per_answer``: calls per scored answer (2 where an LLM judge scores each), so a calls
    budget pays for that many fewer answers.
    """
    budget = spec.budget
    wanted = trials * n_dev
    # (calls the search may make under it, the budget, why): the smallest binds
    if trials < budget.trials:
        why = f"the space has {most} configs, fewer than budget.trials {budget.trials}: the search ends once each is scored"
        limits = [(wanted, "space", why)]
    else:
        limits = [
            (wanted, "trials", f"{budget.trials} trials x {n_dev} dev rows = {wanted} calls fit the other budgets")
        ]
    # labels are not judged; the rewrites' and reflections' checks on samples are (their proposer calls counted as if too)
    before_search = sum(s.calls * (1 if s.name == "labels" else per_answer) for s in others if s.name in ("labels", "rewrites", "reflections"))
    if budget.calls is not None:
        left = (budget.calls - before_search) // per_answer - kept
        warm = min(n_targets * n_dev, (budget.calls - before_search) // per_answer)
        spent = f"the verdict's {kept}" + (
            f" and {before_search} before the search (labels, rewrites, reflections)" if before_search else ""
        )
        judged = f" answers (each with its judge's call: {per_answer} calls)" if per_answer > 1 else ""
        why = f"budget.calls {budget.calls} leaves {left}{judged} for the search after {spent}, fewer than {trials} trials x {n_dev} dev rows = {wanted}"
        if left < warm:
            left = max(0, warm)
            why = f"budget.calls {budget.calls} pays for the warm starts only ({left} calls, on the verdict's reserve of {kept})"
        limits.append((left, "calls", why))
    other_usd = _sum(*(s.usd for s in others if s.name != "legacy"))
    # an answer's price: the dearest target's call, and its judge's where an LLM judge scores it
    judged_usd = None if judge is not None and judge.usd is None else (judge.usd if judge is not None else 0.0)
    answer_usd = dearest.usd + judged_usd if dearest.usd and judged_usd is not None else None
    if other_usd is not None and judged_usd:
        other_usd += judged_usd * sum(s.calls for s in others if s.name in ("verdict", "rewrites", "reflections"))
    if budget.usd is not None and other_usd is not None and answer_usd:
        left = math.floor((budget.usd - other_usd) / answer_usd)
        rewrites_usd = next(s.usd or 0.0 for s in others if s.name == "rewrites")
        warm = min(n_targets * n_dev, math.floor((budget.usd - rewrites_usd) / answer_usd))
        why = f"budget.usd {budget.usd:g} pays for about {left} dev calls to {dearest.model} after the other steps, fewer than {wanted}"
        if left < warm:
            left = max(0, warm)
            why = f"budget.usd {budget.usd:g} pays for the warm starts only (about {left} calls, on the verdict's reserve)"
        limits.append((left, "usd", why))
    calls, binds, why = min(limits, key=lambda limit: limit[0])
    caveats = []
    if budget.usd is not None and (other_usd is None or answer_usd is None):
        caveats.append("budget.usd is not checked: a price is unknown")
    if budget.minutes is not None:
        caveats.append(f"budget.minutes {budget.minutes:g} may stop it sooner (time is not estimated)")
    detail = f"trials x dev rows, at the dearest target's price ({dearest.model}); an upper bound: pruning stops trials early"
    return Stage("search", calls, _times(calls, dearest), detail), _Binding(binds, why, tuple(caveats))
