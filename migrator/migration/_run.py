"""One migration, end to end: candidates, the search on dev, the verdict on test.

Returns data; the CLI writes it (outputs) and shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.candidates import PromptCandidate, Rejection
from migrator.llm import Endpoint, LLMClient, Spent
from migrator.migration._legacy import LABELS_ATTR, Labelled, label_with_legacy
from migrator.migration._prepare import Prepared, build_setup
from migrator.migration._rewrites import reflector
from migrator.migration._shared import ledger_of_the_study, set_up_study, verdict_reserve
from migrator.migration._verdict import Verdict, judge_on_test
from migrator.search import (
    SearchResult,
    TrialOutcome,
    pareto_front,
    reflection_rejections,
    run_search,
    shared_study,
    stored_reflections,
    with_reflections,
    written,
)
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
    # what dataset.labels: legacy did (None: the dataset's own expected outputs)
    labels: Labelled | None = None

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
    study_attrs: Mapping[str, Any] | None = None,
) -> MigrationResult:
    """Set the study up, search on dev (with any workers that join), then score on test.

    What the run spends is counted in the study's ledger (see :mod:`migrator.llm._ledger`), so a
    resumed run, and every worker, continue one count.

    Args:
        study_attrs: stored in the study for the workers that join it (where MLflow records the run).
    """
    study_name = study_name or f"{prepared.spec.name}-{prepared.spec.spec_hash()}"
    started = time.monotonic()
    api_bases = api_bases or {}
    with ledger_of_the_study(client, storage, study_name), asyncio.Runner() as runner:
        # labels: legacy calls the legacy model first (cached and counted like every call); workers read the replies
        prepared, labels = label_with_legacy(runner, client, prepared, api_bases)
        if prepared.space_note:
            on_progress("notice", {"what": prepared.space_note})
        attrs = {**(study_attrs or {}), **({LABELS_ATTR: dict(labels.replies)} if labels else {})}
        with shared_study(build_setup(prepared, api_bases), storage, study_name, role="run") as shared:
            setup, rejected = set_up_study(shared, runner, client, prepared, api_bases, on_progress, attrs)
            on_candidates(list(written(setup.prompts).values()), list(rejected))
            reserve_calls, sampling_calls = verdict_reserve(prepared, setup)
            search = run_search(
                setup,
                client,
                runner,
                storage=storage,
                study_name=study_name,
                shared=shared,
                reserve_calls=reserve_calls,
                sampling_calls=sampling_calls,
                callbacks=callbacks,
                on_progress=on_progress,
                reflect=reflector(runner, client, prepared, api_bases),
            )
            # the prompts the search wrote as it went (by this process or a worker)
            reflections = stored_reflections(shared.study)
            setup = with_reflections(setup, reflections)
        verdict = judge_on_test(runner, client, setup, search, prepared.splits.test, on_progress)
        spent = client.ledger.spent()
    return MigrationResult(
        prepared=prepared,
        search=search,
        verdict=verdict,
        prompts=written(setup.prompts),
        rejected=(*rejected, *reflection_rejections(reflections)),
        endpoints=setup.endpoints,
        stats=client.stats.as_dict(),
        spent=spent,
        wall_s=time.monotonic() - started,
        labels=labels,
    )
