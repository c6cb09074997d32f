"""The study's trials as the search reads them: one scan per decision, outcomes from stored trials.

A trial its process lost is failed and queued again (see ``_storage``); it is not counted,
since the queued copy (``requeued_from`` its number) stands for it. Studies of older
versions marked such a trial with a note starting "interrupted" instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.evaluate import ExampleResult, Summary
from migrator.search._planner import Choice
from migrator.search._setup import SearchSetup, TrialOutcome
from migrator.search._space import config_from_params

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}

# A trial's summary as stored in its user attrs: (attr, Summary field, type); written and read here only.
_SUMMARY_ATTRS: tuple[tuple[str, str, type[float] | type[int]], ...] = (
    ("dev_score", "score", float),
    ("n_evaluated", "n", int),
    ("failed_examples", "failed", int),
    ("cost_usd", "cost_usd", float),
    ("cost_usd_per_example", "cost_usd_per_example", float),
    ("latency_p50_s", "latency_p50_s", float),
    ("prompt_tokens", "prompt_tokens", int),
    ("completion_tokens", "completion_tokens", int),
    ("calls", "calls", int),
)

# (params, mean dev score, examples scored, is a score): a finished trial as the planner reads it
Observation = tuple[Choice, float, int, bool]


SUMMARY_ATTR = "summary"


def summary_attrs(summary: Summary, label: str, note: str) -> dict[str, Any]:
    """The user attrs that store ``summary`` with its trial: one attribute (one write), and the note if any."""
    stored = {"label": label, **{attr: getattr(summary, name) for attr, name, _ in _SUMMARY_ATTRS}}
    return {SUMMARY_ATTR: stored, **({"note": note} if note else {})}


def _stored_summary(attrs: Mapping[str, Any]) -> Summary:
    # studies written before the summary was one attribute kept each field as its own
    stored = attrs.get(SUMMARY_ATTR)
    source = stored if isinstance(stored, Mapping) else attrs
    fields: dict[str, Any] = {name: kind(source.get(attr, kind())) for attr, name, kind in _SUMMARY_ATTRS}
    return Summary(**fields)


def _requeued(trials: Sequence[Any]) -> set[int]:
    """The numbers of the trials some later trial was queued again for."""
    return {int(n) for t in trials if (n := t.user_attrs.get("requeued_from")) is not None}


def _interrupted(trial: Any, requeued: set[int]) -> bool:
    return trial.number in requeued or str(trial.user_attrs.get("note", "")).startswith("interrupted")


def _counted(trials: Sequence[Any]) -> list[Any]:
    """The finished trials, each counted once (an interrupted one is counted when it reruns)."""
    requeued = _requeued(trials)
    return [t for t in trials if t.state.is_finished() and not _interrupted(t, requeued)]


def _params(trial: Any) -> Choice:
    """What a trial runs with: fixed when it was queued, and what it has suggested so far.

    A running trial suggests its params one by one: another process may read it halfway.
    """
    return {**(trial.system_attrs.get("fixed_params") or {}), **trial.params}


def _observation(trial: Any) -> Observation:
    summary, scored = _stored_summary(trial.user_attrs), trial.state.name != "FAIL"  # a failed trial's zero is no score
    return dict(trial.params), summary.score, summary.n, scored


@dataclass(frozen=True)
class TrialsView:
    """What the search decides its next step from, read in one scan of the study's trials.

    Attributes:
        counted: the finished trials, a re-queued one counted once (when it reruns).
        seen: the trials an uninterrupted run would have had by now (all but the interrupted).
        waiting: some trial is queued (a warm start, a re-queued trial, the planner's pick).
        warm_start_waiting: some queued trial is a warm start.
        running: trials some process is running now (this one or another worker).
        observed: every counted trial, as the planner reads it.
        taken: the params of the running and queued trials: no one proposes them again.
    """

    counted: int
    seen: int
    waiting: bool
    warm_start_waiting: bool
    running: int
    observed: tuple[Observation, ...]
    taken: tuple[Choice, ...] = ()


def scan(study: Any) -> TrialsView:
    """The view of the study's trials as they are now."""
    trials = study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state.name == "WAITING"]
    running = [t for t in trials if t.state.name == "RUNNING"]
    counted = _counted(trials)
    requeued = _requeued(trials)
    return TrialsView(
        counted=len(counted),
        seen=sum(not _interrupted(t, requeued) for t in trials),
        waiting=bool(waiting),
        warm_start_waiting=any(t.user_attrs.get("warm_start") for t in waiting),
        running=len(running),
        observed=tuple(_observation(t) for t in counted),
        taken=tuple(_params(t) for t in running + waiting),
    )


def trial_outcome(frozen: Any, setup: SearchSetup, results: Sequence[ExampleResult] = ()) -> TrialOutcome:
    """A stored (frozen) trial as a ``TrialOutcome``; ``results`` when the caller still has them."""
    attrs = frozen.user_attrs
    return TrialOutcome(
        number=frozen.number,
        state=_STATES.get(frozen.state.name, frozen.state.name.lower()),
        config=config_from_params(setup, frozen.params),
        summary=_stored_summary(attrs),
        results=tuple(results),
        warm_start=bool(attrs.get("warm_start", False)),
        note=str(attrs.get("note", "")),
    )


def counted_outcomes(study: Any, setup: SearchSetup) -> list[TrialOutcome]:
    """Every counted trial of the study, in trial order."""
    return [trial_outcome(t, setup) for t in _counted(study.get_trials(deepcopy=False))]
