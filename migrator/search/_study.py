"""The Optuna study: search space, objective, pruning, budgets, warm start, resume.

The only module that imports optuna. The loop is ask/tell rather than
``study.optimize`` so that budgets stop it between chunks, and so that the sampler is
re-seeded from the trial count: the next suggestion depends only on the stored
history, and a resumed study continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from migrator.candidates import DemoPool, PromptCandidate
from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.evaluate import Config, ExampleResult, Summary, build_request, evaluate, seeded, summarize
from migrator.llm import SQLITE_ENGINE_KWARGS, Endpoint, LLMClient, wal_on_connect
from migrator.metrics import Metric
from migrator.models import is_local
from migrator.search._planner import Planner, Space
from migrator.spec import MigrationSpec, SearchSpace
from migrator.stats import chance_to_match

__all__ = [
    "SearchResult",
    "SearchSetup",
    "TrialOutcome",
    "best_trials",
    "config_from_params",
    "open_storage",
    "pareto_front",
    "rendered_prompt",
    "run_search",
    "space_points",
    "study_trials",
]

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


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

    @property
    def space(self) -> SearchSpace:
        return self.spec.search_space

    def legacy_params(self, model: str) -> dict[str, Any]:
        """The app's params that this model accepts (the rest cannot be sent to it), and the request seed."""
        accepts = self.accepts[model]
        params = {k: v for k, v in self.spec.app.params.items() if k in accepts or k not in ("temperature", "top_p", "seed")}
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


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str) -> Any:
    """Optuna storage for a URL ("memory" for none); SQLite gets WAL and no fsync per commit.

    Each intermediate report is a commit, and an fsync per commit costs more than the
    LLM call it records. WAL with synchronous=NORMAL still survives a killed process;
    only a power cut can lose the last commits.
    """
    optuna = _optuna()
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if not url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    storage = optuna.storages.RDBStorage(url, engine_kwargs=SQLITE_ENGINE_KWARGS)
    wal_on_connect(storage.engine)
    storage.engine.dispose()
    return storage


def _grid_value(value: float, low: float, high: float, step: float | None) -> float:
    value = min(max(float(value), low), high)
    if step:
        n = round((value - low) / step)
        if low + n * step > high + 1e-9:  # a step that does not divide the range
            n -= 1
        value = low + n * step
    return round(value, 6)


def config_from_params(setup: SearchSetup, params: Mapping[str, Any]) -> Config:
    """The config a trial's parameters stand for."""
    model = str(params["model"])
    merged = setup.legacy_params(model)
    for name in ("temperature", "top_p", "max_tokens"):
        if name in params and name in setup.accepts[model]:
            value = params[name]
            # Optuna's step grid gives 0.7000000000000001; requests and lockfiles want 0.7
            merged[name] = round(value, 6) if isinstance(value, float) else value
    demos = int(params.get("demos", 0))
    return Config(
        model=model,
        prompt_id=str(params.get("prompt", "original")),
        demos=demos,
        demo_strategy=str(params.get("demo_strategy", "none")) if demos else "none",
        params=tuple(sorted(merged.items())),
        mode=setup.endpoints[model].mode,
    )


def _suggest(trial: Any, setup: SearchSetup) -> Config:
    space = setup.space
    model = trial.suggest_categorical("model", list(setup.endpoints))
    trial.suggest_categorical("prompt", list(setup.prompts))
    k = trial.suggest_categorical("demos", list(space.demos.k))
    if k > 0:
        trial.suggest_categorical("demo_strategy", list(space.demos.strategies))
    accepts = setup.accepts[model]
    for name in ("temperature", "top_p"):
        rng = getattr(space, name)
        if rng is not None and name in accepts:
            trial.suggest_float(name, rng.low, rng.high, step=rng.step)
    if space.max_tokens is not None and "max_tokens" in accepts:
        trial.suggest_categorical("max_tokens", list(space.max_tokens.choices))
    return config_from_params(setup, trial.params)


def _warm_start_params(setup: SearchSetup, model: str) -> dict[str, Any]:
    space = setup.space
    legacy = setup.spec.app.params
    params: dict[str, Any] = {"model": model, "prompt": "original", "demos": 0}
    if 0 not in space.demos.k:
        params["demos"] = min(space.demos.k)
        params["demo_strategy"] = space.demos.strategies[0]
    for name, default in (("temperature", 0.0), ("top_p", 1.0)):
        rng = getattr(space, name)
        if rng is not None and name in setup.accepts[model]:
            params[name] = _grid_value(legacy.get(name, default), rng.low, rng.high, rng.step)
    if space.max_tokens is not None and "max_tokens" in setup.accepts[model]:
        wanted = int(legacy.get("max_tokens", space.max_tokens.choices[0]))
        params["max_tokens"] = min(space.max_tokens.choices, key=lambda c: abs(c - wanted))
    return params


_MATCH_THRESHOLD = 0.1


def _improvement_pruner(optuna: Any, min_steps: int) -> Any:
    """Prunes a trial once it has under a 10% chance of ending level with the best one.

    Both report one score per dev example (step = the example's index), so the pair is
    compared on the same examples; see ``stats.chance_to_match`` for the model.
    """

    class ImprovementPruner(optuna.pruners.BasePruner):  # type: ignore[misc]
        def prune(self, study: Any, trial: Any) -> bool:
            seen = trial.intermediate_values
            if len(seen) < min_steps:
                return False
            try:
                best = study.best_trial
            except ValueError:  # no complete trial yet
                return False
            reference = best.intermediate_values
            if len(reference) <= len(seen) or any(step not in reference for step in seen):
                return False
            ordered = sorted(reference)
            scores = [seen[step] for step in sorted(seen)]
            return chance_to_match(scores, [reference[step] for step in ordered]) < _MATCH_THRESHOLD

    return ImprovementPruner()


def _make_pruner(optuna: Any, space: SearchSpace, multi_objective: bool) -> Any:
    if multi_objective or space.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.pruner == "improvement":
        return _improvement_pruner(optuna, space.chunk_size)
    if space.pruner == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=space.chunk_size)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _make_sampler(optuna: Any, setup: SearchSetup, n_done: int, planned: bool) -> Any:
    seed = (setup.spec.seed * 100_003 + n_done) % 2**32  # numpy's seeds are 32-bit
    if setup.space.sampler == "random" or planned:
        # a planned trial fixes every parameter; Optuna's sampler has nothing left to choose
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        n_startup_trials=max(5, len(setup.endpoints) + 2),
        constant_liar=True,
    )


def _space(setup: SearchSetup) -> Space:
    space = setup.space
    floats: dict[str, dict[str, tuple[float, float, float | None]]] = {}
    tokens: dict[str, list[int]] = {}
    for model, accepts in setup.accepts.items():
        floats[model] = {
            name: (rng.low, rng.high, rng.step)
            for name in ("temperature", "top_p")
            if (rng := getattr(space, name)) is not None and name in accepts
        }
        tokens[model] = list(space.max_tokens.choices) if space.max_tokens is not None and "max_tokens" in accepts else []
    return Space(list(setup.endpoints), list(setup.prompts), space.demos.k, space.demos.strategies, floats, tokens)


def space_points(setup: SearchSetup) -> list[dict[str, Any]]:
    """Every point of the search space, as trial parameters."""
    return _space(setup).points()


# The planner lists the space; past this many configs (fine float steps on several
# parameters) the listing itself would cost seconds per trial, and TPE takes over.
MAX_PLANNED_SPACE = 200_000


def _planner(setup: SearchSetup) -> Planner | None:
    """The linear planner, when it picks the trials (it ranks by dev score: one objective only)."""
    if setup.space.sampler != "linear" or len(setup.spec.objective) != 1:
        return None
    space = _space(setup)
    return Planner(space.points()) if space.size() <= MAX_PLANNED_SPACE else None


def _planned(study: Any, planner: Planner, seed: int) -> dict[str, Any] | None:
    """The planner's next config (see planner.py), from every finished trial."""
    observed = [
        (
            dict(t.params),
            float(t.user_attrs.get("dev_score", 0.0)),
            int(t.user_attrs.get("n_evaluated", 0)),
            t.state.name != "FAIL",
        )
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not str(t.user_attrs.get("note", "")).startswith("interrupted")
    ]
    return planner.propose(observed, seed=seed)


def _objectives(summary: Summary, spec: MigrationSpec) -> list[float]:
    values = {"quality": summary.score, "cost": summary.cost_usd_per_example, "latency": summary.latency_p50_s}
    return [values[name] for name in spec.objective]


def rendered_prompt(setup: SearchSetup, config: Config) -> str:
    """What the config sends for the first dev example, as a reviewer reads it."""
    example = setup.dev[0]
    template = setup.prompts[config.prompt_id].template
    request = build_request(config, setup.endpoints[config.model], template, example, setup.demos_for(config)(example))
    if request.prompt is not None:
        return request.prompt
    return "\n\n".join(f"[{role}]\n{content}" for role, content in request.messages)


def _trial_outcome(frozen: Any, setup: SearchSetup, results: Sequence[ExampleResult] = ()) -> TrialOutcome:
    attrs = frozen.user_attrs
    summary = Summary(
        score=float(attrs.get("dev_score", 0.0)),
        n=int(attrs.get("n_evaluated", 0)),
        failed=int(attrs.get("failed_examples", 0)),
        cost_usd=float(attrs.get("cost_usd", 0.0)),
        cost_usd_per_example=float(attrs.get("cost_usd_per_example", 0.0)),
        latency_p50_s=float(attrs.get("latency_p50_s", 0.0)),
        prompt_tokens=int(attrs.get("prompt_tokens", 0)),
        completion_tokens=int(attrs.get("completion_tokens", 0)),
        calls=int(attrs.get("calls", 0)),
    )
    return TrialOutcome(
        number=frozen.number,
        state=_STATES.get(frozen.state.name, frozen.state.name.lower()),
        config=config_from_params(setup, frozen.params),
        summary=summary,
        results=tuple(results),
        warm_start=bool(attrs.get("warm_start", False)),
        note=str(attrs.get("note", "")),
    )


def study_trials(storage: str, study_name: str, setup: SearchSetup) -> list[TrialOutcome]:
    """Finished trials of a stored study (for reports and resumed runs)."""
    optuna = _optuna()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return [_trial_outcome(t, setup) for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


class _Budget:
    """Soft limits of the search; the client enforces the hard ones.

    What was spent is read from the client's ledger, which a resumed run shares with
    the run it resumes: calls, USD and the seconds the search has run, all runs together.
    """

    def __init__(self, setup: SearchSetup, client: LLMClient, reserve_calls: int) -> None:
        self.budget = setup.spec.budget
        self.ledger = client.ledger
        self.ledger.start_clock()
        self.stats = client.stats
        self.reserve_calls = reserve_calls
        # one llama.cpp server answers one request at a time, whatever we send
        local = all(is_local(m) for m in setup.endpoints)
        self.concurrency = 1 if local else setup.space.concurrency
        self.latencies: list[float] = []

    def observe(self, results: Sequence[ExampleResult]) -> None:
        """Learn how long a paid call takes, to keep time back for the test verdict."""
        self.latencies += [r.latency_s for r in results if not r.cached and r.error is None]

    def spent(self, *, keep_reserve: bool = True, upcoming: int = 0) -> str | None:
        """The budget that is spent, if any.

        Args:
            keep_reserve: count what the test verdict will need as spent already. Off
                while the warm-start trials run: without them there is no baseline.
            upcoming: calls about to be sent (the next chunk); a budget that cannot pay
                for them all is spent, so a chunk never eats into the verdict's reserve.
        """
        budget, spent = self.budget, self.ledger.spent()
        # retries count too: the verdict will need its calls times the attempts per answer seen so far
        attempts_per_answer = max(1.0, self.stats.sent / self.stats.made) if self.stats.made else 1.0
        kept = math.ceil(self.reserve_calls * attempts_per_answer) if keep_reserve else 0
        reserve = kept + max(upcoming - 1, 0)
        if budget.minutes is not None:
            # the median, because a model's first calls include loading it
            per_call = statistics.median(self.latencies) if self.latencies else 0.0
            reserve_s = reserve * per_call / max(1, self.concurrency)
            if spent.seconds + reserve_s >= budget.minutes * 60:
                return "minutes"
        if budget.calls is not None and spent.calls + reserve >= budget.calls:
            return "calls"
        if budget.usd is not None and spent.calls:
            per_call = spent.usd / spent.calls
            if spent.usd + per_call * reserve >= budget.usd:
                return "usd"
        return None


def run_search(
    setup: SearchSetup,
    client: LLMClient,
    runner: asyncio.Runner,
    *,
    storage: str,
    study_name: str,
    reserve_calls: int = 0,
    callbacks: Sequence[Callable[[TrialOutcome], None]] = (),
    on_progress: Callable[[str, Mapping[str, Any]], None] = lambda *_: None,
) -> SearchResult:
    """Run (or resume) the study until the trial budget or another budget is spent.

    Args:
        runner: the event loop the evaluations run on (kept for the whole run).
        reserve_calls: calls kept back for the final test evaluation.
        callbacks: called with each finished trial (tracking, progress).
    """
    optuna = _optuna()
    spec = setup.spec
    multi = len(spec.objective) > 1
    directions = ["maximize"] + ["minimize"] * (len(spec.objective) - 1)
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        directions=directions,
        pruner=_make_pruner(optuna, setup.space, multi),
        load_if_exists=True,
    )
    trials = study.get_trials(deepcopy=False)
    if not trials:
        for model in setup.endpoints:
            study.enqueue_trial(_warm_start_params(setup, model), user_attrs={"warm_start": True})
    else:
        # Trials in flight when a run was killed: fail them and queue them again, so the
        # resumed study runs the same configurations an uninterrupted one would have.
        for stale in (t for t in trials if t.state.name == "RUNNING"):
            study._storage.set_trial_user_attr(stale._trial_id, "note", "interrupted; re-queued")
            study._storage.set_trial_state_values(stale._trial_id, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(stale.params, user_attrs={**stale.user_attrs, "requeued": True}, skip_if_exists=False)

    budget = _Budget(setup, client, reserve_calls)
    try:
        outcomes, stopped_by, exhausted = _search_loop(setup, client, runner, study, budget, callbacks, on_progress)
    finally:
        client.ledger.stop_clock()  # budget.minutes counts the search, not the verdict or the report
    counts = {
        "total": len(outcomes),
        "complete": sum(o.state == "complete" for o in outcomes),
        "pruned": sum(o.state == "pruned" for o in outcomes),
        "failed": sum(o.state == "failed" for o in outcomes),
    }
    return SearchResult(tuple(outcomes), stopped_by, study_name, storage, counts, exhausted)


def _search_loop(
    setup: SearchSetup,
    client: LLMClient,
    runner: asyncio.Runner,
    study: Any,
    budget: _Budget,
    callbacks: Sequence[Callable[[TrialOutcome], None]],
    on_progress: Callable[[str, Mapping[str, Any]], None],
) -> tuple[list[TrialOutcome], str | None, bool]:
    """Trials until a budget is spent or the space is: (finished trials, the budget that stopped it, exhausted)."""
    optuna = _optuna()
    spec = setup.spec
    multi = len(spec.objective) > 1
    dev = setup.dev
    # a chunk smaller than the concurrency would cap the calls in flight at its size
    chunk = max(setup.space.chunk_size, setup.space.concurrency)
    stopped_by: str | None = None
    exhausted = False
    planner = _planner(setup)

    def counted() -> int:
        # Trials re-queued after an interruption are counted once, when they rerun.
        return sum(
            t.state.is_finished() and not str(t.user_attrs.get("note", "")).startswith("interrupted")
            for t in study.get_trials(deepcopy=False)
        )

    while True:
        if counted() >= spec.budget.trials:
            break
        warm_pending = any(t.state.name == "WAITING" and t.user_attrs.get("warm_start") for t in study.get_trials(deepcopy=False))
        stopped_by = budget.spent(keep_reserve=not warm_pending, upcoming=min(chunk, len(dev)))
        if stopped_by:
            break
        # seeded by the trials an uninterrupted run would have had at this point
        n_seen = sum(not str(t.user_attrs.get("note", "")).startswith("interrupted") for t in study.get_trials(deepcopy=False))
        study.sampler = _make_sampler(optuna, setup, n_seen, planned=planner is not None)
        if planner is not None and not any(t.state.name == "WAITING" for t in study.get_trials(deepcopy=False)):
            planned = _planned(study, planner, seed=setup.spec.seed * 100_003 + n_seen)
            if planned is None:
                # Every config has been scored: more trials would only repeat them.
                exhausted = True
                break
            study.enqueue_trial(planned)
        trial = study.ask()
        config = _suggest(trial, setup)
        warm = bool(trial.user_attrs.get("warm_start", False))
        template = setup.prompts[config.prompt_id].template
        endpoint = setup.endpoints[config.model]
        results: list[ExampleResult] = []
        state = optuna.trial.TrialState.COMPLETE
        note = ""
        on_progress("trial_start", {"number": trial.number, "label": config.label()})
        try:
            for start in range(0, len(dev), chunk):
                part = dev[start : start + chunk]
                reason = budget.spent(keep_reserve=not warm, upcoming=len(part))
                if reason:
                    stopped_by = reason
                    state = optuna.trial.TrialState.PRUNED
                    note = f"stopped by the {reason} budget after {len(results)} of {len(dev)} examples"
                    break
                chunk_results = runner.run(evaluate(client, config, endpoint, template, part, setup.metric, setup.demos_for(config)))
                budget.observe(chunk_results)
                results += chunk_results
                on_progress("chunk", {"number": trial.number, "evaluated": len(results), "of": len(dev)})
                if not multi:
                    if setup.space.pruner in ("wilcoxon", "improvement"):
                        for i, r in enumerate(results[start:], start=start):
                            trial.report(r.score, step=i)
                    else:
                        trial.report(sum(r.score for r in results) / len(results), step=start // chunk)
                    if len(results) < len(dev) and trial.should_prune():
                        state = optuna.trial.TrialState.PRUNED
                        note = f"pruned after {len(results)} of {len(dev)} dev examples"
                        break
        except BudgetExhausted as exc:
            stopped_by = exc.which
            state = optuna.trial.TrialState.PRUNED
            note = f"stopped by the {exc.which} budget after {len(results)} of {len(dev)} examples"
        summary = summarize(results)
        if results and summary.failed == summary.n and state == optuna.trial.TrialState.COMPLETE:
            state = optuna.trial.TrialState.FAIL
            first_error = next(r.error for r in results if r.error)
            note = f"every call failed: {first_error}"
        attrs = {
            "dev_score": summary.score,
            "n_evaluated": summary.n,
            "failed_examples": summary.failed,
            "cost_usd": summary.cost_usd,
            "cost_usd_per_example": summary.cost_usd_per_example,
            "latency_p50_s": summary.latency_p50_s,
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
            "calls": summary.calls,
            "label": config.label(),
            "note": note,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if state == optuna.trial.TrialState.COMPLETE:
            frozen = study.tell(trial, _objectives(summary, spec))
        else:
            frozen = study.tell(trial, state=state)
        outcome = replace(_trial_outcome(frozen, setup, results), prompt_text=rendered_prompt(setup, config))
        for callback in callbacks:
            callback(outcome)
        if stopped_by:
            break

    outcomes = [
        _trial_outcome(t, setup)
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not str(t.user_attrs.get("note", "")).startswith("interrupted")
    ]
    return outcomes, stopped_by, exhausted


def best_trials(result: SearchResult, n: int = 3) -> list[TrialOutcome]:
    """Complete trials ranked by dev score, then cost, then trial number (dev only, never test)."""
    complete = [o for o in result.trials if o.state == "complete" and o.summary.n > 0]
    # Ties go to the cheaper config, then the earlier trial: never to wall-clock latency,
    # which is noise and would make the winner change between identical runs.
    ranked = sorted(complete, key=lambda o: (-o.summary.score, round(o.summary.cost_usd_per_example, 12), o.number))
    unique: list[TrialOutcome] = []
    for outcome in ranked:
        if all(outcome.config != u.config for u in unique):
            unique.append(outcome)
        if len(unique) == n:
            break
    return unique


def pareto_front(result: SearchResult) -> list[TrialOutcome]:
    """Complete trials no other trial beats on both dev score and cost per example."""
    complete = [o for o in result.trials if o.state == "complete"]

    def dominated(a: TrialOutcome) -> bool:
        return any(
            b.summary.score >= a.summary.score
            and b.summary.cost_usd_per_example <= a.summary.cost_usd_per_example
            and (b.summary.score > a.summary.score or b.summary.cost_usd_per_example < a.summary.cost_usd_per_example)
            for b in complete
        )

    return sorted((o for o in complete if not dominated(o)), key=lambda o: o.summary.cost_usd_per_example)

