"""Ranking a search's trials: the best configs on dev, and Pareto fronts of score against a cost."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from migrator.search._setup import SearchResult, TrialOutcome


def best_trials(result: SearchResult, n: int = 3) -> list[TrialOutcome]:
    """Complete trials ranked by dev score, then cost, then trial number (dev only, never test)."""
    complete = [o for o in result.trials if o.state == "complete" and o.summary.n > 0]
    # Ties go to the cheaper config, then the earlier trial: never to wall-clock latency,
    # which is noise and would make the winner change between identical runs.
    ranked = sorted(complete, key=lambda o: (-o.summary.score, round(o.summary.cost_usd_per_example, 12), o.number))
    unique: list[TrialOutcome] = []
    for outcome in ranked:
        if all(outcome.config != u.config for u in unique):
            unique.append(outcome)
        if len(unique) == n:
            break
    return unique


def front(trials: Sequence[TrialOutcome], cost: Callable[[TrialOutcome], float]) -> list[TrialOutcome]:
    """Complete trials no other complete trial beats on both dev score and ``cost``, cheapest first.

    A trial is beaten when another is at least as good on both and better on one.
    """
    complete = [o for o in trials if o.state == "complete"]

    def dominated(a: TrialOutcome) -> bool:
        return any(
            b.summary.score >= a.summary.score
            and cost(b) <= cost(a)
            and (b.summary.score > a.summary.score or cost(b) < cost(a))
            for b in complete
        )

    return sorted((o for o in complete if not dominated(o)), key=cost)


def pareto_front(result: SearchResult) -> list[TrialOutcome]:
    """Complete trials no other trial beats on both dev score and cost per example."""
    return front(result.trials, lambda o: o.summary.cost_usd_per_example)
