"""The pruner and the sampler of the study, built from the spec's search space.

The sampler is rebuilt before every trial, seeded from the number of trials so far: the
next suggestion then depends only on the stored history, and a resumed study continues
exactly as an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

from migrator.search._optuna import experimental_features, load_optuna
from migrator.search._setup import SearchSetup
from migrator.spec import SearchSpace
from migrator.stats import chance_to_match

_MATCH_THRESHOLD = 0.1


def _improvement_pruner(min_steps: int) -> Any:
    """Prunes a trial once it has under a 10% chance of ending level with the best one.

    Both report one score per dev example (step = the example's index), so the pair is
    compared on the same examples; see ``stats.chance_to_match`` for the model.
    """
    base: Any = load_optuna().pruners.BasePruner

    # defined here because its base class is optuna's, and optuna loads on first use
    class ImprovementPruner(base):  # type: ignore[misc]
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


def make_pruner(space: SearchSpace, multi_objective: bool) -> Any:
    """The pruner the space names; none for several objectives (Optuna prunes on one value)."""
    optuna = load_optuna()
    if multi_objective or space.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.pruner == "improvement":
        return _improvement_pruner(space.chunk_size)
    if space.pruner == "wilcoxon":
        with experimental_features():
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=space.chunk_size)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def trial_seed(setup: SearchSetup, n_done: int) -> int:
    """The seed of the trial after ``n_done`` others: the sampler's and the planner's alike."""
    return setup.spec.seed * 100_003 + n_done


def make_sampler(setup: SearchSetup, n_done: int, planned: bool) -> Any:
    """The sampler for the next trial, seeded by the ``n_done`` trials before it."""
    optuna = load_optuna()
    seed = trial_seed(setup, n_done) % 2**32  # numpy's seeds are 32-bit
    if setup.space.sampler == "random" or planned:
        # a planned trial fixes every parameter; Optuna's sampler has nothing left to choose
        return optuna.samplers.RandomSampler(seed=seed)
    with experimental_features():
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,
            n_startup_trials=max(5, len(setup.endpoints) + 2),
            constant_liar=True,
        )
