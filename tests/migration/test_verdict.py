"""The verdict on the test split: what a budget that runs out part-way leaves standing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from migrator.llm import Limits, LiteLLMClient
from migrator.migration import build_setup, judge_on_test, prepare, run_migration
from migrator.search import best_trials
from migrator.spec import load_spec


def test_finalists_scored_before_the_budget_ran_out_keep_their_verdict(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    prepared = prepare(load_spec(write_spec(budget={"trials": 10, "finalists": 3})))
    search = run_migration(prepared, LiteLLMClient(max_retries=0), storage=f"sqlite:///{tmp_path / 'study.db'}").search
    assert len(best_trials(search, 3)) >= 2, "the scenario needs two finalists"
    test = prepared.splits.test
    baselines = len({o.config.model for o in search.trials if o.warm_start})
    # enough calls for every baseline and the first finalist, and half of the second
    client = LiteLLMClient(limits=Limits(calls=len(test) * (baselines + 1) + len(test) // 2), max_retries=0)
    with asyncio.Runner() as runner:
        verdict = judge_on_test(runner, client, build_setup(prepared, {}), search, test, lambda *_: None)
    assert verdict.stopped_by == "calls"
    assert len(verdict.baselines_by_target) == baselines
    assert len(verdict.finalists) == 1 and verdict.finalists[0].test.n == len(test)
    assert verdict.winner is verdict.finalists[0]
    assert verdict.paired is not None
