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
trials.

Two rules spend the trials where the evidence is. A model none of whose trials got past
its first dev chunks (all pruned, or failed) is offered again only now and then: with a
chance of 1 in (1 + its trials so far), so its share shrinks with each failure rather
than staying at its share of the space. And the last quarter of the budget refines (the
search says how far it is: trials, or calls, USD or minutes where one runs out first):
the draw picks among the unscored neighbours of the best complete config (one choice
changed), while there are any.

Deterministic for a given history and seed, on any machine (under a minutes budget, when
the refining starts depends on the clock). The posterior's covariance
has repeated eigenvalues (one-hot features of a symmetric space), so an SVD-based draw
(numpy's ``multivariate_normal(method="svd")``) picks an arbitrary basis of each repeated
eigenspace, and BLAS kernels differ in which: the same seed drew different configs on
a Haswell and a SkylakeX kernel from the third trial on. The draw here uses the
Cholesky factor, which is unique, and the scores are compared after rounding the draw
to a fixed grid and summing integers, so last-bit differences between kernels cannot
reorder two configs.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["REFINE_SHARE", "Choice", "Planner", "Space", "best_complete", "complete_by_score"]

Choice = dict[str, Any]

# A range without a step is searched on this many points.
_FLOAT_POINTS = 11
# A larger space is ranked on a fresh random sample of its unscored configs per proposal.
_MAX_SCORED = 20_000
# a config whose every call failed is tried this many times before it counts as tried
_TRIES_OF_A_FAILING_CONFIG = 2
# the draw is compared on this grid: far coarser than floating-point noise, far finer than scores
_DRAW_RESOLUTION = 1e-7
# the share of the trial budget, at its end, that refines near the best config
REFINE_SHARE = 0.25
# a demo strategy goes with its count: changing both is one step
_ONE_STEP_IGNORES = frozenset({"demo_strategy"})


def _points(low: float, high: float, step: float | None) -> list[float]:
    if step:
        # every point on the step grid that lies in [low, high]; never past high
        count = math.floor((high - low) / step + 1e-9) + 1
        return [round(low + i * step, 6) for i in range(count)]
    return [round(low + (high - low) * i / (_FLOAT_POINTS - 1), 6) for i in range(_FLOAT_POINTS)]


@dataclass(frozen=True)
class Space:
    """A search space as lists of choices.

    Attributes:
        floats: per model, the float parameters it accepts: name -> (low, high, step).
        max_tokens: per model, the max_tokens choices it accepts (empty: not searched).
    """

    models: Sequence[str]
    prompts: Sequence[str]
    demo_k: Sequence[int]
    strategies: Sequence[str]
    floats: Mapping[str, Mapping[str, tuple[float, float, float | None]]]
    max_tokens: Mapping[str, Sequence[int]]

    def _axes(self, model: str) -> list[list[Choice]]:
        demo_options: list[Choice] = []
        for k in self.demo_k:
            demo_options += [{"demos": k}] if k == 0 else [{"demos": k, "demo_strategy": s} for s in self.strategies]
        axes: list[list[Choice]] = [[{"prompt": p} for p in self.prompts], demo_options]
        for name, (low, high, step) in self.floats.get(model, {}).items():
            axes.append([{name: v} for v in _points(low, high, step)])
        if self.max_tokens.get(model):
            axes.append([{"max_tokens": m} for m in self.max_tokens[model]])
        return axes

    def size(self) -> int:
        """How many configs ``points`` would list, without listing them."""
        return sum(math.prod(len(axis) for axis in self._axes(m)) for m in self.models)

    def points(self) -> list[Choice]:
        """Every config of the space, as trial parameters."""
        out: list[Choice] = []
        for model in self.models:
            for combo in itertools.product(*self._axes(model)):
                params: Choice = {"model": model}
                for part in combo:
                    params.update(part)
                out.append(params)
        return out


def _value(v: Any) -> str:
    # Optuna can hand back 0.30000000000000004 for a 0.3 it was given
    return repr(round(v, 6) if isinstance(v, float) else v)


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, _value(v)) for k, v in params.items()))


def _tokens(params: Mapping[str, Any]) -> list[str]:
    model = params["model"]
    own = [f"{k}={_value(v)}" for k, v in sorted(params.items()) if k != "model"]
    return [f"model={model!r}", *own, *(f"{model!r}|{t}" for t in own)]


class Planner:
    """Proposes configs of one listed space; the features are built once per run."""

    def __init__(self, candidates: Sequence[Choice]) -> None:
        # imported here, before the search: proposals run under the study's lock, and a
        # first import there (about a second) held every other worker back
        from sklearn.linear_model import BayesianRidge

        self._ridge = BayesianRidge
        self.candidates = list(candidates)
        self.keys = [_key(c) for c in self.candidates]
        self.vocab: dict[str, int] = {}
        cells: list[tuple[int, int]] = []
        for row, params in enumerate(self.candidates):
            for token in _tokens(params):
                cells.append((row, self.vocab.setdefault(token, len(self.vocab))))
        self.features = np.zeros((len(self.candidates), len(self.vocab)), dtype=np.float32)
        if cells:
            rows, cols = zip(*cells, strict=True)
            self.features[list(rows), list(cols)] = 1.0

    def _row(self, params: Mapping[str, Any]) -> np.ndarray:
        # a choice outside the listed space (an old trial, a warm start off the grid) adds nothing
        x = np.zeros(len(self.vocab))
        x[[self.vocab[t] for t in _tokens(params) if t in self.vocab]] = 1.0
        return x

    def propose(
        self,
        observed: Sequence[tuple[Choice, float, int, bool]],
        seed: int,
        taken: Sequence[Choice] = (),
        trials: tuple[int, int] | None = None,
        unavailable: Collection[str] = (),
    ) -> Choice | None:
        """The unscored candidate that is best under one posterior draw; None if all are scored or taken.

        Args:
            observed: (params, mean dev score, examples scored, is a score) of every
                finished trial. A failed trial (every call failed) is not a score: it
                teaches the model nothing, and its config is tried again once (an
                outage passes) before it counts as tried.
            taken: params of trials running or queued (by any worker): not proposed again.
            trials: (trials so far, the trial budget): near its end the proposal refines
                near the best config. None: no budget is known.
            unavailable: prompts not offered (reflection slots not written yet).
        """
        failures = Counter(_key(p) for p, _, n, scored in observed if n > 0 and not scored)
        done = {_key(p) for p, _, n, scored in observed if n > 0 and scored}
        done |= {key for key, times in failures.items() if times >= _TRIES_OF_A_FAILING_CONFIG}
        done |= {_key(p) for p in taken}
        fresh = [i for i, key in enumerate(self.keys) if key not in done and self.candidates[i]["prompt"] not in unavailable]
        if not fresh:
            return None
        rng = np.random.default_rng(seed)
        if len(fresh) > _MAX_SCORED:
            fresh = sorted(int(i) for i in rng.choice(fresh, _MAX_SCORED, replace=False))
        rows = [(p, y, n) for p, y, n, scored in observed if n > 0 and scored]
        fresh = _offered(self.candidates, fresh, observed, rng)
        if trials is not None and trials[0] >= trials[1] * (1 - REFINE_SHARE):
            fresh = _near_the_best(self.candidates, fresh, observed) or fresh
        if len(rows) < 2:
            return dict(self.candidates[fresh[int(rng.integers(len(fresh)))]])
        model = self._ridge(fit_intercept=True)
        x = np.array([self._row(p) for p, _, _ in rows])
        model.fit(x, np.array([y for _, y, _ in rows]), sample_weight=np.array([n for _, _, n in rows], dtype=float))
        draw = _posterior_draw(model.coef_, model.sigma_, rng)
        # one-hot rows: each score is a sum of the draw's entries, exact in integers
        steps = np.rint(draw / _DRAW_RESOLUTION).astype(np.int64)
        scores = self.features[fresh].astype(np.int64) @ steps
        return dict(self.candidates[fresh[int(np.argmax(scores))]])


def _offered(
    candidates: Sequence[Choice], fresh: list[int], observed: Sequence[tuple[Choice, float, int, bool]], rng: np.random.Generator
) -> list[int]:
    """``fresh`` without the models that never got past their first dev chunks, except by chance.

    Such a model (every trial of it pruned at fewer examples than some trial completed,
    or failed) stays in with a chance of 1 in (1 + its trials); one draw per model, from
    ``rng``, so the choice is as deterministic as the rest of the proposal.
    """
    full = max((n for _, _, n, scored in observed if scored), default=0)
    tried: Counter[str] = Counter()
    went_through: set[str] = set()
    for params, _, n, scored in observed:
        model = str(params["model"])
        tried[model] += 1
        if scored and n >= full > 0:
            went_through.add(model)
    stuck = {m for m in tried if m not in went_through} if went_through else set()
    left_out = {m for m in sorted(stuck) if rng.random() >= 1 / (1 + tried[m])}
    kept = [i for i in fresh if candidates[i]["model"] not in left_out]
    return kept or fresh


def _near_the_best(
    candidates: Sequence[Choice], fresh: list[int], observed: Sequence[tuple[Choice, float, int, bool]]
) -> list[int]:
    """The unscored configs one choice away from the best complete one (empty if none)."""
    best = best_complete(observed)
    if best is None:
        return []

    def one_step(params: Choice) -> bool:
        if params["model"] != best["model"]:
            return False
        changed = {k for k in params.keys() | best.keys() if _value(params.get(k)) != _value(best.get(k))}
        return len(changed - _ONE_STEP_IGNORES) <= 1

    return [i for i in fresh if one_step(candidates[i])]


def complete_by_score(observed: Sequence[tuple[Choice, float, int, bool]]) -> list[Choice]:
    """The params of the trials scored on every dev example, best first (equals in trial order)."""
    full = max((n for _, _, n, scored in observed if scored), default=0)
    complete = [(y, i) for i, (_, y, n, scored) in enumerate(observed) if scored and n >= full > 0]
    return [observed[i][0] for _, i in sorted(complete, key=lambda row: (-row[0], row[1]))]


def best_complete(observed: Sequence[tuple[Choice, float, int, bool]]) -> Choice | None:
    """The params of the best trial scored on every dev example (the first of equals), if any."""
    ranked = complete_by_score(observed)
    return ranked[0] if ranked else None


def _posterior_draw(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from N(mean, cov) through the (unique) Cholesky factor of ``cov``.

    The covariance is positive definite in exact arithmetic; a jitter scaled to its
    diagonal makes it so in floating point too.
    """
    z = rng.standard_normal(len(mean))
    cov = (cov + cov.T) / 2
    jitter = 1e-12 * max(float(np.mean(np.diag(cov))), 1e-300)
    for _ in range(6):
        try:
            factor = np.linalg.cholesky(cov + jitter * np.eye(len(mean)))
            break
        except np.linalg.LinAlgError:
            jitter *= 100
    else:
        factor = np.diag(np.sqrt(np.clip(np.diag(cov), 0.0, None)))
    result: np.ndarray = mean + factor @ z
    return result
