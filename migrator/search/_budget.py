"""The search's soft budgets: whether the next chunk of calls still fits."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from migrator.evaluate import ExampleResult
from migrator.llm import LLMClient
from migrator.models import is_local
from migrator.search._setup import SearchSetup


class SearchBudget:
    """Soft limits of the search; the client enforces the hard ones.

    What was spent is read from the client's ledger, which a resumed run shares with
    the run it resumes: calls, USD and the seconds the search has run, all runs together.
    The search starts and stops the ledger's clock around its trials.
    """

    def __init__(self, setup: SearchSetup, client: LLMClient, reserve_calls: int, sampling_calls: int = 0) -> None:
        self.budget = setup.spec.budget
        self.ledger = client.ledger
        self.stats = client.stats
        self.fixed_reserve = reserve_calls
        self.sampling_calls = sampling_calls
        # whether the verdict will re-sample a finalist (one at a temperature above 0 is among the best)
        self.sampling_kept = True
        # one llama.cpp server answers one request at a time, whatever we send
        local = all(is_local(m) for m in setup.endpoints)
        self.concurrency = 1 if local else setup.space.concurrency
        self.latencies: list[float] = []
        # calls per scored answer: the target's, and an LLM judge's
        self.per_answer = 1 + setup.metric.calls_per_answer

    def observe(self, results: Sequence[ExampleResult]) -> None:
        """Learn how long a paid call takes, to keep time back for the test verdict."""
        self.latencies += [r.latency_s for r in results if not r.cached and r.error is None]

    @property
    def reserve_calls(self) -> int:
        """Calls kept back for the verdict: always its test scoring, and its re-samples while they may be needed
        (each answer with its judge's call, where the metric is a judge)."""
        return (self.fixed_reserve + (self.sampling_calls if self.sampling_kept else 0)) * self.per_answer

    def progress(self, counted: int) -> float:
        """How far the search is through its budgets: the largest share of any one spent (0 to 1).

        The verdict's reserve is not the search's to spend, so a calls, USD or minutes budget
        is measured without it; ``counted`` is the trials counted so far.
        """
        budget, spent = self.budget, self.ledger.spent()
        shares = [counted / budget.trials]
        if budget.calls is not None:
            shares.append(spent.calls / max(1, budget.calls - self.reserve_calls))
        if budget.usd is not None and spent.calls:
            per_call = spent.usd / spent.calls
            shares.append(spent.usd / max(1e-12, budget.usd - per_call * self.reserve_calls))
        if budget.minutes is not None:
            per_call_s = statistics.median(self.latencies) if self.latencies else 0.0
            searchable_s = budget.minutes * 60 - self.reserve_calls * per_call_s / max(1, self.concurrency)
            shares.append(spent.seconds / max(1.0, searchable_s))
        return min(1.0, max(shares))

    def spent(self, *, keep_reserve: bool = True, upcoming: int = 0) -> str | None:
        """The budget that is spent, if any.

        Args:
            keep_reserve: count what the test verdict will need as spent already. Off
                while the warm-start trials run: without them there is no baseline.
            upcoming: answers about to be asked for (the next chunk), each with its judge's
                call; a budget that cannot pay for them all is spent, so a chunk never eats
                into the verdict's reserve.
        """
        budget, spent = self.budget, self.ledger.spent()
        # retries count too: the verdict will need its calls times the attempts per answer seen so far
        attempts_per_answer = max(1.0, self.stats.sent / self.stats.made) if self.stats.made else 1.0
        kept = math.ceil(self.reserve_calls * attempts_per_answer) if keep_reserve else 0
        reserve = kept + max(upcoming * self.per_answer - 1, 0)
        if budget.minutes is not None:
            # the median, because a model's first calls include loading it
            per_call = statistics.median(self.latencies) if self.latencies else 0.0
            reserve_s = reserve * per_call / max(1, self.concurrency)
            if spent.seconds + reserve_s >= budget.minutes * 60:
                return "minutes"
        if budget.calls is not None and spent.calls + reserve >= budget.calls:
            return "calls"
        if budget.usd is not None and spent.calls:
            per_call = spent.usd / spent.calls
            if spent.usd + per_call * reserve >= budget.usd:
                return "usd"
        return None
