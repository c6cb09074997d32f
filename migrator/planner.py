"""The next config to try, from a Bayesian linear model of the scores seen so far.

A migration's search space is finite and small enough to list (models x prompts x
demo settings x stepped sampling parameters), and its effects are mostly additive per
model: demos help a base model, a format line helps an instruct model, a lower
temperature helps a classifier. So every config is described by one-hot features (each
choice, and each choice paired with the model), scikit-learn's ``BayesianRidge`` is fit
to every finished trial's dev score (weighted by the examples it was scored on, so a
trial pruned after 8 examples counts for 8), and the next config is the best one under a
draw from the posterior (Thompson sampling) among configs not scored yet.

Compared with TPE this shares what one trial teaches across every config with the same
choices, never re-proposes a config already scored, and needs no random start-up
trials. Deterministic for a given history and seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Choice", "enumerate_space", "propose"]

Choice = dict[str, Any]

_FLOAT_POINTS = 11
_MAX_SCORED = 20_000  # a larger space is ranked on a fresh random sample of it per proposal  # a range without a step is searched on this many points


def _points(low: float, high: float, step: float | None) -> list[float]:
    if step:
        count = round((high - low) / step) + 1
        return [round(min(high, low + i * step), 6) for i in range(count)]
    return [round(low + (high - low) * i / (_FLOAT_POINTS - 1), 6) for i in range(_FLOAT_POINTS)]


def enumerate_space(
    models: Sequence[str],
    prompts: Sequence[str],
    demo_k: Sequence[int],
    strategies: Sequence[str],
    floats: Mapping[str, Mapping[str, tuple[float, float, float | None]]],
    max_tokens: Mapping[str, Sequence[int]],
) -> list[Choice]:
    """Every point of the space, as trial parameters.

    Args:
        floats: per model, the float parameters it accepts: name -> (low, high, step).
        max_tokens: per model, the max_tokens choices it accepts (empty: not searched).
    """
    demo_options: list[Choice] = []
    for k in demo_k:
        demo_options += [{"demos": k}] if k == 0 else [{"demos": k, "demo_strategy": s} for s in strategies]
    out: list[Choice] = []
    for model in models:
        axes: list[list[Choice]] = [[{"prompt": p} for p in prompts], demo_options]
        for name, (low, high, step) in floats.get(model, {}).items():
            axes.append([{name: v} for v in _points(low, high, step)])
        if max_tokens.get(model):
            axes.append([{"max_tokens": m} for m in max_tokens[model]])
        for combo in itertools.product(*axes):
            params: Choice = {"model": model}
            for part in combo:
                params.update(part)
            out.append(params)
    return out


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(round(v, 6) if isinstance(v, float) else v)) for k, v in params.items()))


def _tokens(params: Mapping[str, Any]) -> list[str]:
    model = params["model"]
    own = [f"{k}={v!r}" for k, v in sorted(params.items()) if k != "model"]
    return [f"model={model!r}", *own, *(f"{model!r}|{t}" for t in own)]


def propose(candidates: Sequence[Choice], observed: Sequence[tuple[Choice, float, int]], seed: int) -> Choice | None:
    """The unscored candidate that is best under one posterior draw; None if all are scored.

    Args:
        observed: (params, mean dev score, examples scored) of every finished trial.
    """
    from sklearn.linear_model import BayesianRidge

    done = {_key(p) for p, _, n in observed if n > 0}
    fresh = [c for c in candidates if _key(c) not in done]
    if not fresh:
        return None
    rng = np.random.default_rng(seed)
    if len(fresh) > _MAX_SCORED:
        fresh = [fresh[i] for i in sorted(rng.choice(len(fresh), _MAX_SCORED, replace=False))]
    rows = [(p, y, n) for p, y, n in observed if n > 0]
    if len(rows) < 2:
        return fresh[int(rng.integers(len(fresh)))]
    vocab: dict[str, int] = {}
    for params in list(candidates) + [p for p, _, _ in rows]:
        for token in _tokens(params):
            vocab.setdefault(token, len(vocab))

    def features(items: Sequence[Choice]) -> np.ndarray:
        x = np.zeros((len(items), len(vocab)))
        for i, params in enumerate(items):
            x[i, [vocab[t] for t in _tokens(params)]] = 1.0
        return x

    model = BayesianRidge(fit_intercept=True)
    model.fit(features([p for p, _, _ in rows]), np.array([y for _, y, _ in rows]), sample_weight=np.array([n for _, _, n in rows], dtype=float))
    draw = rng.multivariate_normal(model.coef_, model.sigma_, method="cholesky" if np.all(np.linalg.eigvalsh(model.sigma_) > 0) else "svd")
    scores = features(fresh) @ draw
    return fresh[int(np.argmax(scores))]
