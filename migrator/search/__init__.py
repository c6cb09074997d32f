"""The search: an Optuna study over models, prompts, demos and sampling params, on dev only.

``run_search`` runs (or resumes) the study for one ``SearchSetup`` until a budget or the
space is spent and returns a ``SearchResult`` of ``TrialOutcome``; ``best_trials`` and
``pareto_front`` rank it (``front`` is that front against any cost, e.g. latency). The linear ``Planner`` (over a listed ``Space``) picks the trials
by default; Optuna's TPE or random sampler where the spec asks or the space is too big to
list. ``space_points`` and ``config_from_params`` list the space as configs (the
benchmarks' grid), ``rendered_prompt`` shows what a config sends (tracking), and
the report's charts load the stored study through ``_optuna`` (optuna's plotting).

Used by ``migrator.migration`` (the run), ``migrator.outputs`` (tracking, report) and the
benchmarks. optuna is imported in this package on first use (not at import); its INFO
lines are muted while a search runs and its ExperimentalWarning only around the two calls
that raise it, and both are as the caller had them afterwards.

Many processes may run one study (``shared_study``; ``migrator worker``): ``_coordination``
holds the study's lock, heartbeats and the table of its workers.

Inside: ``_loop`` (ask, evaluate chunk by chunk, report, tell), ``_storage`` (storage,
study, repairs of lost trials), ``_coordination``, ``_space`` (suggestions, configs, warm start), ``_planner``,
``_pruners`` (pruner and sampler), ``_budget``, ``_trials`` (one scan of the trials per
step), ``_ranking``, ``_reflection`` (prompt slots the search writes from the best config's failures),
``_setup`` (the boundary types), ``_optuna`` (the lazy import).
"""

from __future__ import annotations

from migrator.search._loop import run_search
from migrator.search._planner import Planner, Space
from migrator.search._ranking import best_trials, front, pareto_front
from migrator.search._reflection import (
    REFLECTION_SAMPLE,
    Reflect,
    reflection_rejections,
    stored_reflections,
    with_reflections,
    written,
)
from migrator.search._setup import SearchResult, SearchSetup, TrialOutcome, rendered_prompt
from migrator.search._space import MAX_PLANNED_SPACE, config_from_params, space_points
from migrator.search._storage import READY_ATTR, SharedStudy, queue_warm_starts, shared_study, study_names

__all__ = [
    "MAX_PLANNED_SPACE",
    "READY_ATTR",
    "REFLECTION_SAMPLE",
    "Planner",
    "Reflect",
    "SearchResult",
    "SearchSetup",
    "SharedStudy",
    "Space",
    "TrialOutcome",
    "best_trials",
    "config_from_params",
    "front",
    "pareto_front",
    "queue_warm_starts",
    "reflection_rejections",
    "rendered_prompt",
    "run_search",
    "shared_study",
    "space_points",
    "stored_reflections",
    "study_names",
    "with_reflections",
    "written",
]
