"""The search space: what a trial suggests, the config its parameters stand for, the warm start.

Temperature and top_p are searched only for a model that accepts them (a reasoning
model takes neither); max_tokens likewise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.evaluate import Config
from migrator.search._planner import Choice, Planner, Space
from migrator.search._setup import SearchSetup
from migrator.spec import FloatRange, SearchSpace

_FLOAT_PARAMS = ("temperature", "top_p")

# The planner lists the space; past this many configs (fine float steps on several
# parameters) the listing itself would cost seconds per trial, and TPE takes over.
MAX_PLANNED_SPACE = 200_000


def _float_ranges(space: SearchSpace, accepts: frozenset[str]) -> dict[str, FloatRange]:
    """The float parameters searched for a model that accepts ``accepts``, in suggestion order."""
    return {name: rng for name in _FLOAT_PARAMS if (rng := getattr(space, name)) is not None and name in accepts}


def _token_choices(space: SearchSpace, accepts: frozenset[str]) -> list[int]:
    """The max_tokens choices searched for such a model (none: max_tokens is not searched)."""
    return list(space.max_tokens.choices) if space.max_tokens is not None and "max_tokens" in accepts else []


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
    for name in (*_FLOAT_PARAMS, "max_tokens"):
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


def suggest(trial: Any, setup: SearchSetup) -> Config:
    """Has an Optuna trial suggest every parameter of the space; the config they stand for."""
    space = setup.space
    model = trial.suggest_categorical("model", list(setup.endpoints))
    trial.suggest_categorical("prompt", list(setup.prompts))
    k = trial.suggest_categorical("demos", list(space.demos.k))
    if k > 0:
        trial.suggest_categorical("demo_strategy", list(space.demos.strategies))
    accepts = setup.accepts[model]
    for name, rng in _float_ranges(space, accepts).items():
        trial.suggest_float(name, rng.low, rng.high, step=rng.step)
    if tokens := _token_choices(space, accepts):
        trial.suggest_categorical("max_tokens", tokens)
    return config_from_params(setup, trial.params)


def warm_start_params(setup: SearchSetup, model: str) -> dict[str, Any]:
    """The naive migration to ``model``: the legacy prompt and params, on the space's grid."""
    space = setup.space
    legacy = setup.spec.app.params
    params: dict[str, Any] = {"model": model, "prompt": "original", "demos": 0}
    if 0 not in space.demos.k:
        params["demos"] = min(space.demos.k)
        params["demo_strategy"] = space.demos.strategies[0]
    defaults = {"temperature": 0.0, "top_p": 1.0}
    for name, rng in _float_ranges(space, setup.accepts[model]).items():
        params[name] = _grid_value(legacy.get(name, defaults[name]), rng.low, rng.high, rng.step)
    if tokens := _token_choices(space, setup.accepts[model]):
        wanted = int(legacy.get("max_tokens", tokens[0]))
        params["max_tokens"] = min(tokens, key=lambda c: abs(c - wanted))
    return params


def _listed_space(setup: SearchSetup) -> Space:
    """The space as the planner lists it."""
    space = setup.space
    floats = {
        model: {name: (rng.low, rng.high, rng.step) for name, rng in _float_ranges(space, accepts).items()}
        for model, accepts in setup.accepts.items()
    }
    tokens = {model: _token_choices(space, accepts) for model, accepts in setup.accepts.items()}
    return Space(list(setup.endpoints), list(setup.prompts), space.demos.k, space.demos.strategies, floats, tokens)


def space_points(setup: SearchSetup) -> list[Choice]:
    """Every point of the search space, as trial parameters."""
    return _listed_space(setup).points()


def planner_for(setup: SearchSetup) -> Planner | None:
    """The linear planner, when it picks the trials (it ranks by dev score: one objective only)."""
    if setup.space.sampler != "linear" or len(setup.spec.objective) != 1:
        return None
    space = _listed_space(setup)
    return Planner(space.points()) if space.size() <= MAX_PLANNED_SPACE else None
