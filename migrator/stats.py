"""Confidence intervals, paired tests and pruning odds on per-example scores (numpy only, seeded)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedTest", "bootstrap_ci", "chance_to_match", "paired_test"]

_RESAMPLES = 5000


def bootstrap_ci(scores: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean score."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(_RESAMPLES, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))


@dataclass(frozen=True)
class PairedTest:
    """Winner minus baseline on the same examples."""

    mean_diff: float
    ci: tuple[float, float]
    p_value: float
    n: int
    better: int
    worse: int


def paired_test(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> PairedTest:
    """Mean difference a - b with a bootstrap interval and a sign-flip permutation p-value."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"The paired samples must have the same length. Got {x.size} and {y.size} instead.")
    diff = x - y
    if diff.size == 0:
        return PairedTest(0.0, (0.0, 0.0), 1.0, 0, 0, 0)
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    signs = rng.choice(np.array([-1.0, 1.0]), size=(_RESAMPLES, diff.size))
    null = np.abs((signs * diff).mean(axis=1))
    p_value = float((np.sum(null >= observed - 1e-12) + 1) / (_RESAMPLES + 1))
    return PairedTest(
        mean_diff=float(diff.mean()),
        ci=bootstrap_ci(diff, seed=seed),
        p_value=min(1.0, p_value),
        n=int(diff.size),
        better=int(np.sum(diff > 0)),
        worse=int(np.sum(diff < 0)),
    )


def _beta_binomial(n: int, a: float, b: float) -> np.ndarray:
    """P(K = k) for k = 0..n, K ~ BetaBinomial(n, a, b)."""
    k = np.arange(n + 1)
    log_beta = np.vectorize(lambda x, y: math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y))
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    return np.asarray(np.exp(log_choose + log_beta(k + a, n - k + b) - log_beta(a, b)))


def chance_to_match(scores: Sequence[float], incumbent: Sequence[float]) -> float:
    """How likely a partly scored config ends at least level with the incumbent.

    ``scores`` are the config's per-example scores on the first ``len(scores)`` dev
    examples; ``incumbent`` holds the best config's scores on all of them, in the same
    order. The config's unseen scores are predicted from the seen pairs: where the
    incumbent scored 1 the config scores 1 at rate p1, where it scored 0 at rate p0,
    each rate with a uniform prior updated by the pairs seen so far (a fractional
    score counts fractionally). The unseen sum is then the sum of two beta-binomials,
    and the chance that the config's total reaches the incumbent's is exact.

    This asks the question a search needs answered ("can this config still win?"),
    not "is it significantly worse?", which near-ties never answer.
    """
    seen = len(scores)
    if seen == 0:
        return 1.0
    a = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    b = np.clip(np.asarray(incumbent, dtype=float), 0.0, 1.0)
    if seen >= b.size:  # nothing left to predict
        return float(a[: b.size].sum() >= b.sum() - 1e-9)
    head, rest = b[:seen], b[seen:]
    right_where_right = float(np.sum(a * head)) + 1.0
    wrong_where_right = float(np.sum((1 - a) * head)) + 1.0
    right_where_wrong = float(np.sum(a * (1 - head))) + 1.0
    wrong_where_wrong = float(np.sum((1 - a) * (1 - head))) + 1.0
    n_right = round(float(rest.sum()))
    n_wrong = rest.size - n_right
    unseen = np.convolve(
        _beta_binomial(n_right, right_where_right, wrong_where_right),
        _beta_binomial(n_wrong, right_where_wrong, wrong_where_wrong),
    )
    needed = math.ceil(float(b.sum()) - float(a.sum()) - 1e-9)
    if needed <= 0:
        return 1.0
    if needed > rest.size:
        return 0.0
    return float(min(1.0, unseen[needed:].sum()))
