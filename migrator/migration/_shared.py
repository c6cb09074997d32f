"""The study as every process of a migration sees it: set up once, joined by any number of workers.

``migrator run`` sets the study up under its lock: the prompt rewrites (written once, by
the proposer, and stored in the study so that no worker writes or pays for them again),
the warm starts, and whatever else a worker needs to know (where MLflow records the
migration). Then it marks the study ready. A worker (``join_migration``) waits for that
mark, reads the same candidates back, and runs trials of the same search; it never
scores the test split.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from migrator.candidates import PromptCandidate, Rejection
from migrator.errors import InputError
from migrator.llm import LLMClient, MemoryLedger, StoredLedger
from migrator.migration._legacy import LABELS_ATTR, apply_labels
from migrator.migration._prepare import Prepared, build_setup
from migrator.migration._rewrites import reflector, rewrites
from migrator.search import (
    READY_ATTR,
    SearchResult,
    SearchSetup,
    SharedStudy,
    TrialOutcome,
    queue_warm_starts,
    run_search,
    stored_reflections,
    with_reflections,
)
from migrator.search import shared_study as open_shared

__all__ = ["join_migration", "ledger_of_the_study", "set_up_study", "verdict_reserve"]

Progress = Callable[[str, Mapping[str, Any]], None]

_PROMPTS_ATTR = "migrator.rewrites"


def verdict_reserve(prepared: Prepared, setup: SearchSetup) -> tuple[int, int]:
    """Calls the search keeps back for the verdict: (always, while a finalist may sample).

    Always: baselines and finalists on test, one legacy probe, and the baselines' further
    samples where the app samples. Where a config may sample (a temperature above 0 is
    searched): the finalists' further samples on dev and test and the config at temperature
    0 that may win in their place; the search keeps these only while such a config is among
    its best (``run_search``'s ``sampling_calls``)."""
    from migrator.migration._verdict import SAMPLES

    n_test, n_dev, finalists = len(prepared.splits.test), len(prepared.splits.dev), prepared.spec.budget.finalists
    reserve, sampling = n_test * (len(setup.endpoints) + finalists) + 1, 0
    temperature = setup.space.temperature
    if temperature is not None and temperature.high > 0 and any("temperature" in a for a in setup.accepts.values()):
        sampling = finalists * (SAMPLES - 1) * (n_dev + n_test) + n_test
    if float(prepared.spec.app.params.get("temperature") or 0) > 0:
        reserve += len(setup.endpoints) * (SAMPLES - 1) * n_test
    return reserve, sampling


@contextmanager
def ledger_of_the_study(client: LLMClient, storage: str, study_name: str) -> Iterator[None]:
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


def set_up_study(
    shared: SharedStudy,
    runner: asyncio.Runner,
    client: LLMClient,
    prepared: Prepared,
    api_bases: Mapping[str, str],
    on_progress: Progress,
    attrs: Mapping[str, Any] = {},
) -> tuple[SearchSetup, list[Rejection]]:
    """Under the study's lock: the rewrites (stored once), the warm starts (queued once), ``attrs``; ready.

    A resumed run reads the rewrites its first run stored rather than asking the proposer again.
    """
    setup = build_setup(prepared, api_bases)
    with shared.coordinator.lock():
        stored = shared.study.user_attrs.get(_PROMPTS_ATTR)
        if stored is None:
            accepted, rejected = rewrites(runner, client, setup, prepared, api_bases, on_progress)
            shared.study.set_user_attr(_PROMPTS_ATTR, _stored_rewrites(accepted, rejected))
        else:
            accepted, rejected = _read_rewrites(stored)
        setup = replace(setup, prompts={**prepared.prompts, **{c.id: c for c in accepted}})
        setup = with_reflections(setup, stored_reflections(shared.study))
        queue_warm_starts(shared.study, setup)
        for key, value in attrs.items():
            shared.study.set_user_attr(key, value)
        shared.study.set_user_attr(READY_ATTR, True)
    return setup, rejected


def join_migration(
    prepared: Prepared,
    client: LLMClient,
    *,
    storage: str,
    study_name: str,
    api_bases: Mapping[str, str] | None = None,
    callbacks: list[Callable[[TrialOutcome], None]] | None = None,
    on_progress: Progress = lambda *_: None,
    on_ready: Callable[[Mapping[str, Any]], None] = lambda _: None,
    on_done: Callable[[], None] = lambda: None,
    wait_s: float = 600.0,
) -> SearchResult:
    """Run trials of a migration another process set up, until its budget is spent; no verdict.

    Args:
        on_ready: called with the study's user attrs once the study is set up (before the first trial).
        on_done: called after the last trial, while this worker still counts as working: the
            run waits for it (its MLflow records) before it reconciles them and writes the verdict.
        wait_s: how long to wait for ``migrator run`` to create and set up the study.

    Raises:
        InputError: no such study appeared within ``wait_s`` (a different spec, or a wrong storage).
    """
    _wait_for_study(storage, study_name, wait_s, on_progress)
    base = build_setup(prepared, api_bases or {})
    with (
        ledger_of_the_study(client, storage, study_name),
        asyncio.Runner() as runner,
        open_shared(base, storage, study_name, role="worker") as shared,
    ):
        deadline = time.monotonic() + wait_s
        while not shared.ready():
            if time.monotonic() > deadline:
                raise InputError(f"study {study_name!r} was created but never set up by `migrator run` within {wait_s:.0f} s")
            time.sleep(1.0)
        attrs = dict(shared.study.user_attrs)
        if LABELS_ATTR in attrs:  # labels: legacy, labelled by the run: the same rows, the same split, no call
            prepared = apply_labels(prepared, attrs[LABELS_ATTR])
            base = build_setup(prepared, api_bases or {})
        accepted, _ = _read_rewrites(attrs.get(_PROMPTS_ATTR, {}))
        setup = replace(base, prompts={**prepared.prompts, **{c.id: c for c in accepted}})
        setup = with_reflections(setup, stored_reflections(shared.study))
        on_ready(attrs)
        reserve_calls, sampling_calls = verdict_reserve(prepared, setup)
        try:
            return run_search(
                setup,
                client,
                runner,
                storage=storage,
                study_name=study_name,
                shared=shared,
                reserve_calls=reserve_calls,
                sampling_calls=sampling_calls,
                callbacks=callbacks or [],
                on_progress=on_progress,
                reflect=reflector(runner, client, prepared, api_bases or {}),
            )
        finally:
            on_done()


def _wait_for_study(storage: str, study_name: str, wait_s: float, on_progress: Progress) -> None:
    from migrator.search import study_names

    deadline = time.monotonic() + wait_s
    said = False
    while study_name not in study_names(storage):
        if time.monotonic() > deadline:
            raise InputError(
                f"no study {study_name!r} in the storage after {wait_s:.0f} s; start `migrator run` on the same spec "
                "and --storage (a worker joins the study of an identical spec)"
            )
        if not said:
            on_progress("final", {"what": f"waiting for `migrator run` to create study {study_name}"})
            said = True
        time.sleep(1.0)


def _stored_rewrites(accepted: list[PromptCandidate], rejected: list[Rejection]) -> dict[str, Any]:
    return {
        "accepted": [c.as_dict() for c in accepted],
        "rejected": [r.as_dict() for r in rejected],
    }


def _read_rewrites(stored: Mapping[str, Any]) -> tuple[list[PromptCandidate], list[Rejection]]:
    accepted = [PromptCandidate.from_dict(c) for c in stored.get("accepted", [])]
    rejected = [Rejection.from_dict(r) for r in stored.get("rejected", [])]
    return accepted, rejected
