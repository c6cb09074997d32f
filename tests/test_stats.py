"""Confidence intervals and paired tests: is the winner really better than the baseline?"""

from __future__ import annotations

import numpy as np
import pytest

from migrator.stats import bootstrap_ci, chance_to_match, paired_test


def _scores(n: int, p: float, seed: int) -> list[float]:
    return list((np.random.default_rng(seed).random(n) < p).astype(float))


def test_bootstrap_ci_contains_the_mean() -> None:
    scores = _scores(80, 0.7, seed=1)
    low, high = bootstrap_ci(scores)
    assert low < float(np.mean(scores)) < high
    assert low >= 0.0 and high <= 1.0


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = bootstrap_ci(_scores(30, 0.6, seed=2))
    large = bootstrap_ci(_scores(1200, 0.6, seed=2))
    assert (large[1] - large[0]) < (small[1] - small[0]) / 4


def test_bootstrap_ci_widens_with_confidence() -> None:
    scores = _scores(100, 0.5, seed=3)
    narrow, wide = bootstrap_ci(scores, confidence=0.8), bootstrap_ci(scores, confidence=0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_bootstrap_ci_is_seeded() -> None:
    scores = _scores(50, 0.5, seed=4)
    assert bootstrap_ci(scores, seed=9) == bootstrap_ci(scores, seed=9)


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([]) == (0.0, 0.0)
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0)


def test_paired_test_finds_a_clear_improvement() -> None:
    baseline = _scores(100, 0.5, seed=5)
    winner = [1.0 if i % 3 else b for i, b in enumerate(baseline)]  # fixes two thirds of the examples

    result = paired_test(winner, baseline)

    assert result.p_value < 0.01
    assert result.mean_diff == pytest.approx(float(np.mean(winner) - np.mean(baseline)))
    assert result.ci[0] > 0
    assert result.n == 100
    assert result.better > 0 and result.worse == 0


def test_paired_test_does_not_call_noise_an_improvement() -> None:
    rng = np.random.default_rng(6)
    baseline = rng.random(60)
    flips = rng.permutation([0.2] * 30 + [-0.2] * 30)  # as many wins as losses

    result = paired_test(list(baseline + flips), list(baseline))

    assert result.p_value > 0.5
    assert result.ci[0] < 0 < result.ci[1]
    assert result.better == result.worse == 30


def test_paired_test_false_positive_rate_is_about_alpha() -> None:
    rng = np.random.default_rng(8)
    p_values = [
        paired_test(list(rng.normal(0.5, 0.2, 30)), list(rng.normal(0.5, 0.2, 30)), seed=s).p_value for s in range(100)
    ]
    assert sum(p < 0.05 for p in p_values) <= 12
    assert sum(p > 0.5 for p in p_values) >= 35


def test_paired_test_of_identical_scores() -> None:
    scores = _scores(40, 0.5, seed=7)
    result = paired_test(scores, scores)
    assert (result.mean_diff, result.p_value, result.better, result.worse) == (0.0, 1.0, 0, 0)


def test_paired_test_direction_and_counts() -> None:
    result = paired_test([0.0, 0.0, 1.0, 0.5], [1.0, 1.0, 0.0, 0.5])
    assert result.mean_diff == pytest.approx(-0.25)
    assert (result.better, result.worse, result.n) == (1, 2, 4)


def test_paired_test_empty() -> None:
    result = paired_test([], [])
    assert (result.n, result.p_value, result.ci) == (0, 1.0, (0.0, 0.0))


def test_paired_test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"same length\. Got 3 and 2"):
        paired_test([1.0, 0.0, 1.0], [1.0, 0.0])


def test_chance_to_match_is_calibrated_when_its_prior_holds() -> None:
    # Draw configs as the model assumes (uniform rates where the incumbent is right and
    # where it is wrong) and score 12 of 60 examples: in each band of predicted chance,
    # about that share of the configs really ends level with the incumbent.
    rng = np.random.default_rng(7)
    incumbent = (rng.random(60) < 0.85).astype(float)
    bands: dict[int, list[tuple[float, bool]]] = {}
    for _ in range(3000):
        p_right, p_wrong = rng.random(2)
        scores = np.where(incumbent == 1, rng.random(60) < p_right, rng.random(60) < p_wrong).astype(float)
        chance = chance_to_match(scores[:12].tolist(), incumbent.tolist())
        bands.setdefault(min(int(chance * 5), 4), []).append((chance, bool(scores.sum() >= incumbent.sum())))
    assert set(bands) == {0, 1, 2, 3, 4}
    for rows in bands.values():
        if len(rows) >= 50:
            predicted = float(np.mean([c for c, _ in rows]))
            observed = float(np.mean([level for _, level in rows]))
            assert abs(predicted - observed) < 0.08, (predicted, observed)
    pruned = [level for chance, level in bands[0] if chance < 0.1]
    assert len(pruned) > 1000 and sum(pruned) / len(pruned) < 0.05


def test_chance_to_match_edges() -> None:
    incumbent = [1.0] * 20 + [0.0] * 10
    assert chance_to_match([], incumbent) == 1.0
    # fully scored: nothing left to predict
    assert chance_to_match([1.0] * 30, incumbent) == 1.0
    assert chance_to_match([1.0] * 19 + [0.0] * 11, incumbent) == 0.0
    assert chance_to_match([0.0] * 20, incumbent) == 0.0  # 10 left cannot make up 20
    assert chance_to_match([1.0] * 20, [1.0] * 20 + [0.0] * 10) == 1.0  # level already, the rest cannot hurt
    # fewer misses so far, better odds; fractional scores count fractionally
    strong = [1.0] * 26 + [0.0] * 4
    odds = [chance_to_match([1.0] * (8 - m) + [0.0] * m, strong) for m in range(5)]
    assert odds == sorted(odds, reverse=True) and odds[0] > 0.3 > 0.01 > odds[4]
    assert odds[1] < chance_to_match([1.0] * 7 + [0.5], strong) < odds[0]
