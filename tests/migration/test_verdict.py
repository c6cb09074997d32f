"""The verdict on the test split: what a budget that runs out part-way leaves standing, and its evaluations at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator.llm import Limits, LiteLLMClient
from migrator.migration import build_setup, judge_on_test, prepare, run_migration
from migrator.search import best_trials
from migrator.spec import load_spec
from migrator.testing import KEY_ENV, FaultPlan, LoopbackServer, make_sentiment_rows, server_spec


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


def test_the_verdict_scores_its_configs_at_once_with_the_same_result_as_one_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-verdict-0123456789")
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(60)))
    spec_path = tmp_path / "migration.yaml"
    with LoopbackServer(FaultPlan(latency_s=0.05)) as server:
        spec = server_spec(server.api_base, str(data), search_space={"concurrency": 64}, budget={"trials": 6, "finalists": 2})
        spec_path.write_text(yaml.safe_dump(spec))
        prepared = prepare(load_spec(spec_path))
        search = run_migration(prepared, LiteLLMClient(max_retries=0), storage=f"sqlite:///{tmp_path / 'study.db'}").search
        test, setup = prepared.splits.test, build_setup(prepared, {})
        server.max_in_flight = 0
        with asyncio.Runner() as runner:
            together = judge_on_test(runner, LiteLLMClient(concurrency=64, max_retries=0), setup, search, test, lambda *_: None)
        peak = server.max_in_flight
        # a calls budget without room for the legacy model beside the others: one evaluation at a time
        server.max_in_flight = 0
        roomy = len(test) * (len(together.baselines_by_target) + len(together.finalists)) + 1
        with asyncio.Runner() as runner:
            client = LiteLLMClient(concurrency=64, max_retries=0, limits=Limits(calls=roomy + len(test) - 2))
            apart = judge_on_test(runner, client, setup, search, test, lambda *_: None)
        apart_peak = server.max_in_flight
    assert peak > len(test), "the evaluations were sent one after another"
    assert apart_peak <= len(test)
    assert together.legacy is not None and together.legacy.test.n == len(test)
    for a, b in ((together.winner, apart.winner), (together.baseline, apart.baseline)):
        assert a is not None and b is not None
        assert (a.config, a.test.score, a.test_ci) == (b.config, b.test.score, b.test_ci)
    assert [f.config for f in together.finalists] == [f.config for f in apart.finalists]
    assert together.paired == apart.paired
