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


def test_a_config_at_a_temperature_above_0_is_scored_on_several_samples_and_wins_only_beyond_their_noise(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """fake/noisy is right 75% of the time; at T > 0 which examples it gets right changes with the seed."""
    from migrator.migration import SAMPLES
    from migrator.outputs import summary_dict

    spec = write_spec(
        targets=["fake/noisy"],
        search_space={"temperature": {"low": 0.0, "high": 1.0, "step": 0.25}, "demos": {"k": [0]}, "pruner": "none"},
        budget={"trials": 5, "finalists": 3},
    )
    client = LiteLLMClient(max_retries=0)
    result = run_migration(prepare(load_spec(spec)), client, storage=f"sqlite:///{tmp_path / 'study.db'}")
    verdict = result.verdict
    assert result.search.counts["complete"] == 5  # every temperature, 0 to 1, scored on dev
    hot = [f for f in verdict.finalists if dict(f.config.params)["temperature"] > 0]
    assert hot, "the scenario needs a finalist at a temperature above 0"
    n_dev, n_test = len(result.prepared.splits.dev), len(result.prepared.splits.test)
    for f in hot:
        assert f.noise is not None and len(f.noise.dev) == SAMPLES and len(f.noise.test) == SAMPLES
        assert f.dev is not None and f.noise.dev[0] == f.dev.score  # the search's own sample first
        assert len(set(f.noise.dev)) > 1  # each sample is a new draw
        assert abs(f.test.score - sum(f.noise.test) / SAMPLES) < 1e-9  # per-example mean over the samples
    # a config at 0 is scored once
    assert all(f.noise is None for f in verdict.finalists if dict(f.config.params)["temperature"] == 0)
    winner = verdict.winner
    assert winner is not None
    steady = max(
        (o for o in result.search.trials if o.state == "complete" and dict(o.config.params)["temperature"] == 0),
        key=lambda o: o.summary.score,
    )
    if winner.noise is not None:
        # a winner that samples leads the best config at temperature 0 by more than its spread
        assert winner.dev_score is not None and winner.dev_score - steady.summary.score > winner.noise.spread(winner.noise.dev)
        assert verdict.sampling_note == ""
    else:
        assert winner.config == steady.config
    # the summary reports the samples' mean and spread
    summary = summary_dict(result, {}, {})
    for row in summary["finalists"]:
        if dict(row["params"])["temperature"] > 0:
            assert row["samples"]["samples"] == SAMPLES and set(row["samples"]) == {"samples", "dev", "test"}
            assert row["samples"]["test"]["spread"] >= 0 and row["samples"]["dev"]["scores"][0] == row["dev_score"]
    # every sample is a paid call of its own: the dev re-samples and the test samples
    sampled_calls = len(hot) * ((SAMPLES - 1) * n_dev + SAMPLES * n_test)
    assert result.stats["made"] >= sampled_calls


def test_a_lead_within_the_sampling_noise_goes_to_the_config_at_temperature_0(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """Of many temperatures one sample each, the luckiest leads on dev; over 3 samples it falls back."""
    spec = write_spec(
        targets=["fake/noisy"],
        search_space={"temperature": {"low": 0.0, "high": 1.0, "step": 0.1}, "demos": {"k": [0]}, "pruner": "none"},
        budget={"trials": 11, "finalists": 1},
        seed=3,
    )
    result = run_migration(prepare(load_spec(spec)), LiteLLMClient(max_retries=0), storage=f"sqlite:///{tmp_path / 'study.db'}")
    complete = [o for o in result.search.trials if o.state == "complete"]
    lucky = max(complete, key=lambda o: o.summary.score)
    steady = next(o for o in complete if dict(o.config.params)["temperature"] == 0)
    assert dict(lucky.config.params)["temperature"] > 0 and lucky.summary.score > steady.summary.score, "needs a lucky sample"
    winner = result.verdict.winner
    # the fakes are deterministic: over 3 samples the lucky config's lead is within its spread
    assert winner is not None and winner.config == steady.config and winner.noise is None
    lead = result.verdict.finalists[-1]
    assert lead.config == lucky.config and lead.noise is not None and lead.dev_score is not None
    assert lead.dev_score < lucky.summary.score  # its mean over 3 samples falls back from the lucky one
    assert lead.dev_score - steady.summary.score <= lead.noise.spread(lead.noise.dev)
    assert "within the noise, so the config at temperature 0 wins" in result.verdict.sampling_note


def test_a_calls_budget_too_small_for_the_samples_searches_temperature_0_only_and_says_why(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At 300 calls, sampled finalists would keep back 100 of the 150 calls the search has: temperature is fixed at 0."""
    from migrator import cli

    space = {"temperature": {"low": 0.0, "high": 1.0, "step": 0.25}, "demos": {"k": [0, 2], "strategies": ["random", "knn"]}}
    spec = write_spec(targets=["fake/noisy"], search_space=space, budget={"trials": 6, "calls": 300, "finalists": 2})
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking"]) == 0
    console = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["space_note"].startswith("temperature fixed at 0: a finalist above it is scored on 3 samples")
    assert "note: temperature fixed at 0" in console
    assert summary["llm_calls"]["made"] <= 300
    import optuna

    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{out / 'study.db'}")
    asked = [t.params for t in study.trials]
    assert len(asked) >= 2 and all(p.get("temperature", 0.0) == 0.0 for p in asked)
    assert all("samples" not in row for row in summary["finalists"])  # no finalist sampled, none was re-scored
    assert "temperature fixed at 0" in (out / "report.html").read_text()
    # with room for the samples the same space searches temperatures above 0
    roomy = write_spec(targets=["fake/noisy"], search_space=space, budget={"trials": 6, "calls": 2000, "finalists": 2})
    assert prepare(load_spec(roomy)).space_note == ""
