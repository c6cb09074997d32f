"""Confidence intervals and paired tests on per-example scores (numpy only, seeded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedTest", "bootstrap_ci", "paired_test"]

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
