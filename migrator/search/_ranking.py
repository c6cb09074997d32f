"""Ranking a search's trials: the best configs on dev, and the score/cost Pareto front."""

from __future__ import annotations

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


def _dominated(a: TrialOutcome, others: list[TrialOutcome]) -> bool:
    """Whether some other trial is at least as good as ``a`` on score and cost, and better on one."""
    return any(
        b.summary.score >= a.summary.score
        and b.summary.cost_usd_per_example <= a.summary.cost_usd_per_example
        and (b.summary.score > a.summary.score or b.summary.cost_usd_per_example < a.summary.cost_usd_per_example)
        for b in others
    )


def pareto_front(result: SearchResult) -> list[TrialOutcome]:
    """Complete trials no other trial beats on both dev score and cost per example."""
    complete = [o for o in result.trials if o.state == "complete"]
    return sorted((o for o in complete if not _dominated(o, complete)), key=lambda o: o.summary.cost_usd_per_example)
