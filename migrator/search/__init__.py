"""TODO face of migrator.search."""

from __future__ import annotations

from migrator.search._planner import Choice, Planner, Space
from migrator.search._study import (
    SearchResult,
    SearchSetup,
    TrialOutcome,
    best_trials,
    config_from_params,
    open_storage,
    pareto_front,
    rendered_prompt,
    run_search,
    space_points,
    study_trials,
)

__all__ = [
    "Choice",
    "Planner",
    "SearchResult",
    "SearchSetup",
    "Space",
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
