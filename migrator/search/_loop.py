"""The search loop: ask a trial, evaluate it chunk by chunk, report to the pruner, tell.

The loop is ask/tell rather than ``study.optimize`` so that budgets stop it between
chunks, and so that the sampler is re-seeded from the trial count before each trial
(see ``_pruners``). Each step decides from one scan of the study's trials.

Any number of processes may run this loop on one study (``migrator worker``). Each step
first repairs the trials a lost process left running, then, under the study's lock,
scans, proposes and asks, so two processes never take one config. A running trial counts
as taken: when the trial budget or the space is spoken for, a process waits for the
running trials (one may be lost and queued again) and ends when none is left.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.evaluate import Config, ExampleResult, Summary, evaluate, sampled, summarize
from migrator.llm import LLMClient
from migrator.search._budget import SearchBudget
from migrator.search._optuna import experimental_features, load_optuna, quiet_logs
from migrator.search._planner import Choice, Planner, best_complete, complete_by_score
from migrator.search._pruners import make_sampler, trial_seed
from migrator.search._reflection import (
    REFLECTION_SAMPLE,
    REFLECTIONS_ATTR,
    Reflect,
    due_slot,
    pending_prompts,
    reflection_line,
    stored_entry,
    stored_reflections,
    with_reflections,
)
from migrator.search._setup import SearchResult, SearchSetup, TrialOutcome, rendered_prompt
from migrator.search._space import config_from_params, planner_for, suggest
from migrator.search._storage import SharedStudy, queue_warm_starts, repair_lost_trials, shared_study
from migrator.search._trials import TrialsView, counted_outcomes, scan, summary_attrs, trial_outcome

Progress = Callable[[str, Mapping[str, Any]], None]

# pruners that compare trials example by example, so each dev example is one reported step
_PER_EXAMPLE_PRUNERS = ("wilcoxon", "improvement")
# how often a process with nothing to start looks again at the trials other processes run
_POLL_S = 0.5
# what a reflection may send: a train sample scored by the best config, and the proposals (two
# framings, and DSPy's second adapter where its first cannot parse a reply)
_REFLECTION_CALLS = REFLECTION_SAMPLE + 3


@dataclass
class _Search:
    """What every step of one run of the search works with.

    ``setup`` changes only where a reflection slot is written (see ``_reflection``).
    """

    setup: SearchSetup
    client: LLMClient
    runner: asyncio.Runner
    shared: SharedStudy
    budget: SearchBudget
    planner: Planner | None
    callbacks: Sequence[Callable[[TrialOutcome], None]]
    on_progress: Progress
    reflect: Reflect | None = None

    @property
    def study(self) -> Any:
        return self.shared.study

    @property
    def chunk(self) -> int:
        # a chunk smaller than the concurrency would cap the calls in flight at its size
        return max(self.setup.space.chunk_size, self.setup.space.concurrency)

    @property
    def multi_objective(self) -> bool:
        return len(self.setup.spec.objective) > 1


@dataclass
class _Evaluation:
    """One trial's dev results so far, and how it ended (an Optuna state name, and why)."""

    of: int
    results: list[ExampleResult] = field(default_factory=list)
    state: str = "COMPLETE"
    note: str = ""
    stopped_by: str | None = None

    def stop(self, budget: str) -> None:
        self.state, self.stopped_by = "PRUNED", budget
        self.note = f"stopped by the {budget} budget after {len(self.results)} of {self.of} examples"

    def prune(self) -> None:
        self.state = "PRUNED"
        self.note = f"pruned after {len(self.results)} of {self.of} dev examples"

    def fail_if_every_call_failed(self, summary: Summary) -> None:
        if self.results and summary.failed == summary.n and self.state == "COMPLETE":
            self.state = "FAIL"
            first_error = next(r.error for r in self.results if r.error)
            self.note = f"every call failed: {first_error}"


def run_search(
    setup: SearchSetup,
    client: LLMClient,
    runner: asyncio.Runner,
    *,
    storage: str,
    study_name: str,
    shared: SharedStudy | None = None,
    reserve_calls: int = 0,
    sampling_calls: int = 0,
    callbacks: Sequence[Callable[[TrialOutcome], None]] = (),
    on_progress: Progress = lambda *_: None,
    reflect: Reflect | None = None,
) -> SearchResult:
    """Run (or resume, or join) the study until the trial budget or another budget is spent.

    Args:
        runner: the event loop the evaluations run on (kept for the whole run).
        shared: the study as the caller already holds it (``shared_study``); opened here if None.
        reserve_calls: calls kept back for the final test evaluation.
        sampling_calls: calls kept back, on top, for the verdict's re-samples of finalists above
            temperature 0: kept only while such a config is among the best ``budget.finalists``.
        callbacks: called with each finished trial (tracking, progress).
        reflect: writes the reflection slots of ``search_space.prompt.reflections`` (see
            ``_reflection``), whichever process (run or worker) reaches a checkpoint first; None
            writes none.
    """
    if shared is None:
        with shared_study(setup, storage, study_name) as opened:
            with opened.coordinator.lock():
                queue_warm_starts(opened.study, setup)
            return run_search(
                setup, client, runner, storage=storage, study_name=study_name, shared=opened,
                reserve_calls=reserve_calls, sampling_calls=sampling_calls, callbacks=callbacks,
                on_progress=on_progress, reflect=reflect,
            )
    with quiet_logs():
        client.ledger.start_clock()
        try:
            budget = SearchBudget(setup, client, reserve_calls, sampling_calls)
            planner = planner_for(setup)
            reflecting = reflect if planner is not None and setup.space.prompt.reflections else None
            search = _Search(setup, client, runner, shared, budget, planner, callbacks, on_progress, reflecting)
            stopped_by, exhausted = _trials_until_done(search)
            if shared.coordinator.role == "run":
                # the verdict reads every trial: the workers' last ones (and their MLflow records) first
                shared.coordinator.wait_for_workers()
            outcomes = counted_outcomes(shared.study, setup)
        finally:
            client.ledger.stop_clock()  # budget.minutes counts the search, not the verdict or the report
    counts = {
        "total": len(outcomes),
        "complete": sum(o.state == "complete" for o in outcomes),
        "pruned": sum(o.state == "pruned" for o in outcomes),
        "failed": sum(o.state == "failed" for o in outcomes),
    }
    return SearchResult(tuple(outcomes), stopped_by, study_name, storage, counts, exhausted)


def _trials_until_done(search: _Search) -> tuple[str | None, bool]:
    """Trials until a budget is spent or the space is: (the budget that stopped it, exhausted)."""
    upcoming = min(search.chunk, len(search.setup.dev))
    while True:
        repair_lost_trials(search.study, search.shared.coordinator)
        with search.shared.coordinator.lock():
            view = scan(search.study)
            search.budget.sampling_kept = _finalists_may_sample(search.setup, view)
            if search.setup.space.prompt.reflections:  # what the slots became, whoever wrote them
                search.setup = with_reflections(search.setup, stored_reflections(search.study))
            if view.counted >= search.setup.spec.budget.trials:
                return None, False
            # the warm starts run on the verdict's reserve: without them there is no baseline
            stopped_by = search.budget.spent(keep_reserve=not view.warm_start_waiting, upcoming=upcoming)
            if stopped_by:
                return stopped_by, False
            trial = None
            if view.counted + view.running < search.setup.spec.budget.trials:
                try:
                    child = _reflect_if_due(search, view)
                except BudgetExhausted as exc:
                    return exc.which, False
                trial = _ask_next(search, view, child)
        if trial is None:
            if not view.running:
                # Every config has been scored: more trials would only repeat them.
                return None, True
            time.sleep(_POLL_S)  # the rest is in other processes' hands; one of them may be lost
            continue
        stopped_by = _run_trial(search, trial)
        if stopped_by:
            return stopped_by, False


def _finalists_may_sample(setup: SearchSetup, view: TrialsView) -> bool:
    """Whether a config above temperature 0 is among the best complete trials (the verdict's finalists-to-be)."""
    best = complete_by_score(view.observed)[: setup.spec.budget.finalists]
    return not best or any(sampled(config_from_params(setup, params)) for params in best)


def _reflect_if_due(search: _Search, view: TrialsView) -> Choice | None:
    """Writes the reflection slot that is due, if any; the trial that tries it (None if none was written).

    Called under the study's lock, so one process writes each slot; what it became is stored
    in the study before the lock is let go.
    """
    if search.reflect is None or view.waiting:
        return None
    stored = stored_reflections(search.study)
    slot = due_slot(search.setup, view, stored, search.budget.progress(view.counted))
    best = best_complete(view.observed)
    if slot is None or best is None or search.budget.spent(upcoming=_REFLECTION_CALLS):
        return None
    config = config_from_params(search.setup, best)
    search.on_progress("notice", {"what": f"{slot}: the proposer reflects on how {config.label()} did on train"})
    out = search.reflect(search.setup, config, slot)
    stored[slot] = stored_entry(out, {"kind": "reflection", "slot": slot, "parent": config.label()})
    search.study.set_user_attr(REFLECTIONS_ATTR, stored)
    search.setup = with_reflections(search.setup, stored)
    search.on_progress("notice", {"what": reflection_line(slot, out)})
    return {**best, "prompt": slot} if out.candidates else None


def _trials_done(search: _Search, view: TrialsView) -> int:
    """The trials counted so far, or as many as the share of the budget spent stands for if more
    (a calls, USD or minutes budget that runs out before the trials do): the planner refines near its end."""
    taken = view.counted + view.running
    return max(taken, math.floor(search.budget.progress(taken) * search.setup.spec.budget.trials + 1e-9))


def _ask_next(search: _Search, view: TrialsView, child: Choice | None = None) -> Any | None:
    """The next trial, asked and marked as this process's; None if the planner has no config left.

    Called under the study's lock: the seed, the proposal and the ask see the same trials.
    ``child`` (a new reflection with the rest of the best config) goes before the planner's pick.
    """
    # seeded by the trials an uninterrupted run would have had at this point
    search.study.sampler = make_sampler(search.setup, view.seen, planned=search.planner is not None)
    if child is not None:
        search.study.enqueue_trial(child)
    elif search.planner is not None and not view.waiting:
        planned = search.planner.propose(
            view.observed,
            seed=trial_seed(search.setup, view.seen),
            taken=view.taken,
            trials=(_trials_done(search, view), search.setup.spec.budget.trials),
            unavailable=pending_prompts(search.setup),
        )
        if planned is None:
            return None
        search.study.enqueue_trial(planned)
    with experimental_features(), warnings.catch_warnings():
        # optuna warns that heartbeats are meant for study.optimize; here the coordinator beats
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = search.study.ask()
    trial.set_user_attr("worker", search.shared.coordinator.identity)
    search.shared.coordinator.watch(trial._trial_id)
    return trial


def _run_trial(search: _Search, trial: Any) -> str | None:
    """Evaluates and tells an asked trial, calls back; the budget that stopped it, if one did."""
    config = suggest(trial, search.setup)
    search.on_progress("trial_start", {"number": trial.number, "label": config.label()})
    evaluation = _evaluate(search, trial, config)
    frozen = _tell(search, trial, config, evaluation)
    search.shared.coordinator.unwatch()
    outcome = trial_outcome(frozen, search.setup, evaluation.results)
    outcome = replace(outcome, prompt_text=rendered_prompt(search.setup, config))
    for callback in search.callbacks:
        callback(outcome)
    return evaluation.stopped_by


def _evaluate(search: _Search, trial: Any, config: Config) -> _Evaluation:
    """The trial's dev examples, chunk by chunk, until done, pruned, or a budget is spent."""
    dev, chunk = search.setup.dev, search.chunk
    # a warm start may spend the verdict's reserve (see _trials_until_done)
    warm = bool(trial.user_attrs.get("warm_start", False))
    evaluation = _Evaluation(of=len(dev))
    try:
        for start in range(0, len(dev), chunk):
            part = dev[start : start + chunk]
            reason = search.budget.spent(keep_reserve=not warm, upcoming=len(part))
            if reason:
                evaluation.stop(reason)
                break
            evaluation.results += _evaluate_chunk(search, config, part)
            search.on_progress("chunk", {"number": trial.number, "evaluated": len(evaluation.results), "of": len(dev)})
            if not search.multi_objective and _pruned(search, trial, evaluation.results, start):
                evaluation.prune()
                break
    except BudgetExhausted as exc:  # the client's hard limit, hit inside a chunk
        evaluation.stop(exc.which)
    return evaluation


def _evaluate_chunk(search: _Search, config: Config, part: Sequence[Example]) -> list[ExampleResult]:
    setup = search.setup
    endpoint, template = setup.endpoints[config.model], setup.prompts[config.prompt_id].template
    scoring = evaluate(search.client, config, endpoint, template, part, setup.metric, setup.demos_for(config))
    results = search.runner.run(scoring)
    search.budget.observe(results)
    return results


def _pruned(search: _Search, trial: Any, results: list[ExampleResult], start: int) -> bool:
    """Reports the scores so far (from example ``start`` on) to the pruner; whether it prunes the trial."""
    if search.setup.space.pruner == "none":
        return False  # nothing would read the reports: a storage write per chunk saved
    if search.setup.space.pruner in _PER_EXAMPLE_PRUNERS:
        for i, r in enumerate(results[start:], start=start):
            trial.report(r.score, step=i)
    else:
        trial.report(sum(r.score for r in results) / len(results), step=start // search.chunk)
    # a trial that has scored every example is complete, whatever the pruner thinks
    return len(results) < len(search.setup.dev) and bool(trial.should_prune())


def _tell(search: _Search, trial: Any, config: Config, evaluation: _Evaluation) -> Any:
    """Stores the trial's summary and state in the study; the stored (frozen) trial."""
    summary = summarize(evaluation.results)
    evaluation.fail_if_every_call_failed(summary)
    for key, value in summary_attrs(summary, config.label(), evaluation.note).items():
        trial.set_user_attr(key, value)
    if evaluation.state == "COMPLETE":
        return search.study.tell(trial, _objective_values(summary, search.setup))
    return search.study.tell(trial, state=load_optuna().trial.TrialState[evaluation.state])


def _objective_values(summary: Summary, setup: SearchSetup) -> list[float]:
    values = {"quality": summary.score, "cost": summary.cost_usd_per_example, "latency": summary.latency_p50_s}
    return [values[name] for name in setup.spec.objective]
