"""One migration, end to end: candidates, the search on dev, the verdict on test.

Returns data; the CLI writes it (outputs) and shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from migrator.candidates import PromptCandidate, Rejection
from migrator.llm import Endpoint, LLMClient, MemoryLedger, Spent, StoredLedger
from migrator.migration._prepare import Prepared, build_setup
from migrator.migration._rewrites import rewrites
from migrator.migration._verdict import Verdict, judge_on_test
from migrator.search import SearchResult, SearchSetup, TrialOutcome, pareto_front, run_search
from migrator.spec import MigrationSpec

__all__ = ["MigrationResult", "run_migration"]

Progress = Callable[[str, Mapping[str, Any]], None]
OnCandidates = Callable[[list[PromptCandidate], list[Rejection]], None]


@dataclass(frozen=True)
class MigrationResult:
    """One migration's data: its inputs, the search on dev, the verdict on test, what it took."""

    prepared: Prepared
    search: SearchResult
    verdict: Verdict
    prompts: Mapping[str, PromptCandidate]
    rejected: tuple[Rejection, ...]
    endpoints: Mapping[str, Endpoint]
    stats: Mapping[str, Any]
    # what the study has spent over every run of it (this one and those it resumed)
    spent: Spent
    wall_s: float

    @property
    def spec(self) -> MigrationSpec:
        return self.prepared.spec

    @property
    def pareto(self) -> tuple[TrialOutcome, ...]:
        """The complete trials no other beats on every objective (dev score vs cost)."""
        return tuple(pareto_front(self.search))


def run_migration(
    prepared: Prepared,
    client: LLMClient,
    *,
    storage: str,
    study_name: str | None = None,
    api_bases: Mapping[str, str] | None = None,
    callbacks: Sequence[Callable[[TrialOutcome], None]] = (),
    on_progress: Progress = lambda *_: None,
    on_candidates: OnCandidates = lambda *_: None,
) -> MigrationResult:
    """Search on dev, then score baseline, legacy and the best configs on test.

    What the run spends is counted in the study's ledger (see :mod:`migrator.llm._ledger`), so a
    resumed run continues the count of the runs before it, whoever calls this.
    """
    study_name = study_name or f"{prepared.spec.name}-{prepared.spec.spec_hash()}"
    with _ledger_of_the_study(client, storage, study_name):
        return _migrate(prepared, client, storage, study_name, api_bases or {}, callbacks, on_progress, on_candidates)


@contextmanager
def _ledger_of_the_study(client: LLMClient, storage: str, study_name: str) -> Iterator[None]:
    """The client counts in the study's stored ledger while the migration runs (unless it has one)."""
    if storage == "memory" or not isinstance(client.ledger, MemoryLedger):
        yield
        return
    ledger = StoredLedger(storage, study_name)
    previous, client.ledger = client.ledger, ledger
    try:
        yield
    finally:
        client.ledger = previous
        ledger.close()


def _migrate(
    prepared: Prepared,
    client: LLMClient,
    storage: str,
    study_name: str,
    api_bases: Mapping[str, str],
    callbacks: Sequence[Callable[[TrialOutcome], None]],
    on_progress: Progress,
    on_candidates: OnCandidates,
) -> MigrationResult:
    started = time.monotonic()
    test = prepared.splits.test
    with asyncio.Runner() as runner:
        setup, rejected = _with_rewrites(runner, client, prepared, api_bases, on_progress)
        on_candidates(list(setup.prompts.values()), list(rejected))
        # baselines and finalists on the test split, plus one probe of the legacy model
        reserve = len(test) * (len(setup.endpoints) + prepared.spec.budget.finalists) + 1
        search = run_search(
            setup,
            client,
            runner,
            storage=storage,
            study_name=study_name,
            reserve_calls=reserve,
            callbacks=callbacks,
            on_progress=on_progress,
        )
        verdict = judge_on_test(runner, client, setup, search, test, on_progress)
    return MigrationResult(
        prepared=prepared,
        search=search,
        verdict=verdict,
        prompts=setup.prompts,
        rejected=tuple(rejected),
        endpoints=setup.endpoints,
        stats=client.stats.as_dict(),
        spent=client.ledger.spent(),
        wall_s=time.monotonic() - started,
    )


def _with_rewrites(
    runner: asyncio.Runner, client: LLMClient, prepared: Prepared, api_bases: Mapping[str, str], on_progress: Progress
) -> tuple[SearchSetup, list[Rejection]]:
    """The search's setup, its prompts extended by the rewrites the proposer wrote."""
    setup = build_setup(prepared, api_bases)
    accepted, rejected = rewrites(runner, client, setup, prepared, api_bases, on_progress)
    return replace(setup, prompts={**prepared.prompts, **{c.id: c for c in accepted}}), rejected
