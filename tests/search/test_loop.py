"""The search, run in-process on the fake provider: what a user of `migrator run` sees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.llm import Limits, LiteLLMClient, LLMRequest, LLMResponse, ResponseCache
from migrator.migration import MigrationResult, prepare, run_migration
from migrator.outputs import summary_dict
from migrator.outputs.report import render_report
from migrator.spec import load_spec
from migrator.testing import base_spec


def _client(tmp: Path | None = None, limits: Limits | None = None) -> LiteLLMClient:
    cache = ResponseCache(tmp / "cache.db") if tmp else None
    return LiteLLMClient(cache=cache, limits=limits or Limits(), backoff_s=0.001, max_retries=0)


def _run(spec_path: Path, client: Any, storage_dir: Path, **kwargs: Any) -> MigrationResult:
    spec = load_spec(spec_path)
    return run_migration(prepare(spec), client, storage=f"sqlite:///{storage_dir / 'study.db'}", **kwargs)


def _history(result: MigrationResult) -> list[tuple[Any, ...]]:
    return [(o.config, o.state, round(o.summary.score, 6)) for o in sorted(result.search.trials, key=lambda o: o.number)]


def test_search_finds_the_config_the_fake_model_rewards(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    # fake/fewshot is right only with >= 2 demos; fake/weak is right 40% of the time.
    result = _run(write_spec(), _client(), tmp_path)
    assert result.verdict.winner is not None and result.verdict.baseline is not None
    assert result.verdict.winner.config.model == "fake/fewshot"
    assert result.verdict.winner.config.demos >= 2
    assert result.verdict.winner.dev is not None and result.verdict.winner.dev.score == 1.0
    assert result.verdict.winner.test.score == 1.0
    # the naive migration (legacy prompt, no demos) is much worse, and the paired test says so
    assert result.verdict.baseline.config.prompt_id == "original" and result.verdict.baseline.config.demos == 0
    assert result.verdict.baseline.test.score < 0.8
    assert result.verdict.paired is not None and result.verdict.paired.mean_diff > 0.2 and result.verdict.paired.p_value < 0.05
    assert result.verdict.paired.worse == 0


def test_warm_start_scores_the_legacy_prompt_on_every_target(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _run(write_spec(), _client(), tmp_path)
    first = sorted(result.search.trials, key=lambda o: o.number)[:2]
    assert {o.config.model for o in first} == {"fake/weak", "fake/fewshot"}
    assert all(o.warm_start and o.config.prompt_id == "original" and o.state == "complete" for o in first)
    assert set(result.verdict.baselines_by_target) == {"fake/weak", "fake/fewshot"}


def test_a_hopeless_naive_migration_stops_after_one_chunk(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    # fake/hot gets every answer wrong at the legacy temperature 0.7; fake/fewshot is right
    # half the time with the legacy prompt, so hot's warm start cannot catch up after 10
    spec = write_spec(app={**base_spec()["app"], "params": {"temperature": 0.7, "max_tokens": 5}}, targets=["fake/fewshot", "fake/hot"])
    result = _run(spec, _client(), tmp_path)
    first = sorted(result.search.trials, key=lambda o: o.number)[:2]
    assert [(o.config.model, o.warm_start, o.state) for o in first] == [("fake/fewshot", True, "complete"), ("fake/hot", True, "pruned")]
    assert first[1].summary.n == 10 and first[1].summary.score == 0.0
    # it still gets its test verdict, but its partial dev score cannot make it the baseline
    assert set(result.verdict.baselines_by_target) == {"fake/fewshot", "fake/hot"}
    assert result.verdict.baselines_by_target["fake/hot"].test.score == 0.0
    assert result.verdict.baseline is not None and result.verdict.baseline.config.model == "fake/fewshot"
    page = render_report(result, summary_dict(result, {}, {}))
    assert f"(pruned after 10 of {len(result.prepared.splits.dev)})" in page


def test_the_legacy_model_unreachable_is_reported_once_and_the_run_goes_on(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _run(write_spec(), _client(), tmp_path)
    assert result.verdict.legacy is None
    assert "fake/down is unreachable" in result.verdict.legacy_note
    assert result.stats["failed"] == 1


def test_a_hosted_legacy_model_without_its_key_is_not_called(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = _run(write_spec(app={"model": "openai/gpt-4o-mini-2024-07-18"}), _client(), tmp_path)
    assert result.verdict.legacy is None
    assert result.verdict.legacy_note == (
        "legacy model openai/gpt-4o-mini-2024-07-18 was not called: OPENAI_API_KEY is not set, "
        "so the app as it runs today has no live score"
    )
    assert result.stats["failed"] == 0 and result.verdict.winner is not None


@pytest.mark.parametrize("pruner", ["improvement", "wilcoxon"])
def test_pruning_saves_calls_without_losing_the_winner(write_spec: Callable[..., Path], tmp_path: Path, pruner: str) -> None:
    # TPE keeps trying weak configs, so there is something to prune (the planner mostly
    # stops proposing them once it has seen a few)
    kw = {"rows": 160, "budget": {"trials": 14}}
    space = {"sampler": "tpe", "demos": {"k": [0, 2]}, "max_retries": 0}
    pruned = _run(write_spec(folder="a", search_space={**space, "pruner": pruner}, **kw), _client(), tmp_path / "a")
    full = _run(write_spec(folder="b", search_space={**space, "pruner": "none"}, **kw), _client(), tmp_path / "b")
    assert pruned.search.counts["pruned"] > 0
    assert full.search.counts["pruned"] == 0
    assert pruned.stats["made"] < 0.85 * full.stats["made"]
    assert pruned.verdict.winner is not None and full.verdict.winner is not None
    assert pruned.verdict.winner.dev is not None and pruned.verdict.winner.dev.score == 1.0


def test_halving_pruner_also_prunes(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _run(write_spec(rows=160, search_space={"pruner": "halving", "max_retries": 0}, budget={"trials": 14}), _client(), tmp_path)
    assert result.search.counts["pruned"] > 0
    assert result.verdict.winner is not None and result.verdict.winner.config.model == "fake/fewshot"


def test_a_cached_rerun_makes_zero_calls_and_gives_the_same_result(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec()
    first = _run(spec, _client(tmp_path), tmp_path)
    assert first.stats["made"] > 0
    again = _run(spec, _client(tmp_path), tmp_path)
    assert again.stats["made"] == 0
    assert again.stats["cached"] > 0
    assert again.verdict.winner is not None and first.verdict.winner is not None
    assert again.verdict.winner.config == first.verdict.winner.config
    assert again.verdict.winner.test.score == first.verdict.winner.test.score
    assert _history(again) == _history(first)


def test_a_call_budget_stops_the_run_and_is_never_exceeded(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    client = _client(limits=Limits(calls=300))
    result = _run(write_spec(budget={"trials": 40, "calls": 300}), client, tmp_path)
    assert result.search.stopped_by == "calls"
    assert result.search.counts["total"] < 40
    assert client.stats.made <= 300
    assert result.verdict.winner is not None  # the reserve kept calls back for the test verdict


@pytest.mark.parametrize("spare", [3, 13, 103, 107, 113, 118])
def test_a_call_budget_always_leaves_the_test_verdict_its_calls(write_spec: Callable[..., Path], tmp_path: Path, spare: int) -> None:
    # 100 warm-start calls, then chunks of 10; `spare` calls beyond the verdict's reserve
    # end mid-chunk, and a chunk that does not fit must not eat into the reserve
    spec = load_spec(write_spec(budget={"trials": 40}, search_space={"pruner": "none"}))
    finalists, test = spec.budget.finalists, 30
    budget = 100 + test * (len(spec.targets) + finalists) + 1 + spare
    client = _client(limits=Limits(calls=budget))
    result = _run(write_spec(budget={"trials": 40, "calls": budget}, search_space={"pruner": "none"}), client, tmp_path)
    assert result.search.stopped_by == "calls"
    assert client.stats.made <= budget
    assert result.verdict.winner is not None and result.verdict.winner.test.n == test
    assert result.verdict.baseline is not None and result.verdict.baseline.test.n == test
    assert len(result.verdict.finalists) == min(finalists, result.search.counts["complete"])


def test_a_usd_budget_is_never_exceeded_by_more_than_the_calls_in_flight(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    usd = 0.004
    client = LiteLLMClient(limits=Limits(usd=usd), concurrency=4, backoff_s=0.001, max_retries=0)
    result = _run(write_spec(budget={"trials": 40, "usd": usd}), client, tmp_path)
    assert result.search.stopped_by == "usd"
    most_expensive_call = 200 * 1e-6 + 10 * 2e-6
    assert client.stats.cost_usd <= usd + client.concurrency * most_expensive_call


def test_a_budget_spent_before_any_trial_completes_gives_no_winner(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    client = _client(limits=Limits(calls=5))
    # the warm-start trial starts, the client refuses call 6, and no trial completes
    result = _run(write_spec(budget={"trials": 10, "calls": 5}), client, tmp_path)
    assert result.verdict.winner is None
    assert result.search.stopped_by == "calls"
    assert client.stats.made <= 5


class _Interrupting:
    """Delegates to a real client and raises KeyboardInterrupt at call ``at`` (fault injection)."""

    def __init__(self, inner: LiteLLMClient, at: int) -> None:
        self.inner, self.at, self.seen = inner, at, 0
        self.stats, self.ledger = inner.stats, inner.ledger

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt
        return await self.inner.complete(request)


def test_resume_after_interruption_keeps_finished_trials_and_matches_an_uninterrupted_run(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec()
    (tmp_path / "straight").mkdir()
    straight = _run(spec, _client(tmp_path / "straight"), tmp_path / "straight")

    (tmp_path / "resumed").mkdir()
    cache_client = _client(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        _run(spec, _Interrupting(cache_client, at=260), tmp_path / "resumed")
    import optuna

    stored = optuna.load_study(study_name=straight.search.study_name, storage=f"sqlite:///{tmp_path / 'resumed' / 'study.db'}")
    finished_before = [(t.number, t.params, t.values) for t in stored.trials if t.state.name == "COMPLETE"]
    assert len(finished_before) >= 2
    assert any(t.state.name == "RUNNING" for t in stored.trials)

    resumed_client = _client(tmp_path / "resumed")
    resumed = _run(spec, resumed_client, tmp_path / "resumed")
    after = {t.number: (t.params, t.values) for t in optuna.load_study(study_name=straight.search.study_name, storage=f"sqlite:///{tmp_path / 'resumed' / 'study.db'}").trials}
    for number, params, values in finished_before:
        assert after[number] == (params, values)
    # nothing answered before the interruption is paid for again
    assert resumed_client.stats.cached > 0
    assert cache_client.stats.made + resumed_client.stats.made == straight.stats["made"]
    assert _history(resumed) == _history(straight)
    assert resumed.verdict.winner is not None and straight.verdict.winner is not None
    assert resumed.verdict.winner.config == straight.verdict.winner.config
    assert resumed.verdict.winner.test.score == straight.verdict.winner.test.score


def test_dspy_rewrites_are_generated_validated_cached_and_searched(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    # fake/chatty answers correctly only when the prompt states the output format, which
    # the legacy prompt does not; the fake proposer's rewrites do.
    overrides = {
        "targets": ["fake/chatty"],
        # no transforms: a rewrite is the only prompt that states the format
            "search_space": {
                "prompt": {"proposer": "fake/proposer", "rewrites": 2, "transforms": []},
                "demos": {"k": [0]},
                "max_retries": 0,
            },
        "budget": {"trials": 6},
    }
    spec = write_spec(**overrides)
    first = _run(spec, _client(tmp_path), tmp_path)
    rewrites = [p for p in first.prompts.values() if p.origin.get("kind") == "rewrite"]
    assert [p.id for p in rewrites] == ["rewrite-fake-chatty-1", "rewrite-fake-chatty-2"]
    assert all(p.origin["proposer"] == "fake/proposer" and "exactly one of" in p.template.text() for p in rewrites)
    assert all("{{ review }}" in p.template.text() for p in rewrites)
    assert first.verdict.baseline is not None and first.verdict.baseline.test.score == 0.0
    assert first.verdict.winner is not None and first.verdict.winner.config.prompt_id.startswith("rewrite-")
    assert first.verdict.winner.test.score == 1.0

    again = _run(spec, _client(tmp_path), tmp_path)
    assert again.stats["made"] == 0  # no proposer call, no model call
    assert [p.template.text() for p in again.prompts.values()] == [p.template.text() for p in first.prompts.values()]


def _rejected_rewrites(write_spec: Callable[..., Path], tmp_path: Path, proposer: str, n: int) -> MigrationResult:
    spec = write_spec(
        targets=["fake/chatty"],
        search_space={"prompt": {"proposer": proposer, "rewrites": n}, "demos": {"k": [0]}, "max_retries": 0},
        budget={"trials": 3},
    )
    result = _run(spec, _client(), tmp_path)
    assert not [p for p in result.prompts.values() if p.origin.get("kind") == "rewrite"]
    # each failed proposal was asked again in the other framing, and failed there too
    assert len(result.rejected) == 2 * n
    assert [r.origin["framing"] for r in result.rejected] == ["rewrite", "direct"] * n
    assert all(r.reason.endswith("; asked again in another framing") for r in result.rejected[::2])
    return result


def test_a_rewrite_that_adds_a_template_variable_is_rejected_with_a_reason(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _rejected_rewrites(write_spec, tmp_path, "fake/proposer-bad", 2)
    assert all("reviewer" in r.reason and "does not provide" in r.reason for r in result.rejected)


def test_a_rewrite_that_only_copies_a_training_input_is_rejected(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _rejected_rewrites(write_spec, tmp_path, "fake/proposer-copy", 1)
    first, rejected = result.rejected
    assert first.reason.startswith("copies a training input instead of giving an instruction")
    assert rejected.reason == "copies a training input instead of giving an instruction"
    train_inputs = {ex.inputs["review"] for ex in result.prepared.splits.train}
    assert rejected.text.strip() in train_inputs


def test_a_proposer_that_apologises_is_rejected_in_both_framings(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    result = _rejected_rewrites(write_spec, tmp_path, "fake/proposer-refuse", 1)
    _, rejected = result.rejected
    assert rejected.reason == "apologises or refuses instead of giving an instruction"
    assert rejected.text.startswith("I'm sorry")


def test_a_proposer_that_refuses_is_asked_again_in_another_framing_and_said_so(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """fake/proposer-shy apologises when shown the failures and writes a prompt from the short brief."""
    spec = write_spec(
        targets=["fake/chatty"],
        search_space={"prompt": {"proposer": "fake/proposer-shy", "rewrites": 2}, "demos": {"k": [0]}, "max_retries": 0},
        budget={"trials": 3},
    )
    events: list[tuple[str, Any]] = []
    result = _run(spec, _client(), tmp_path, on_progress=lambda kind, data: events.append((kind, data)))
    rewrites = [p for p in result.prompts.values() if p.origin.get("kind") == "rewrite"]
    assert [(p.id, p.origin["framing"]) for p in rewrites] == [("rewrite-fake-chatty-1", "direct"), ("rewrite-fake-chatty-2", "direct")]
    assert [(r.origin["index"], r.origin["framing"]) for r in result.rejected] == [(1, "rewrite"), (2, "rewrite")]
    assert all(r.text.startswith("I'm sorry") for r in result.rejected)
    notices = [data["what"] for kind, data in events if kind == "notice"]
    assert notices == [
        "rewrites for fake/chatty: 2 of 2 accepted; 2 proposals rejected (2 apologises or refuses instead of giving an "
        "instruction); the report lists them"
    ]
    summary = summary_dict(result, {}, {})
    page = render_report(result, summary)
    assert "Rejected proposals" in page and page.count("apologises or refuses instead of giving an instruction") == 2


@pytest.mark.parametrize(
    ("overrides", "planned"),
    [
        ({}, True),
        ({"objective": ["quality", "cost"]}, False),  # the planner ranks by one score: TPE
        ({"search_space": {"sampler": "tpe"}}, False),
        # 10,000 top_p points x 11 temperatures x 3 demo settings x 2 models: over 200k
        # configs would make the listing itself too slow, and TPE takes over
        ({"search_space": {"top_p": {"low": 0.0001, "high": 1.0, "step": 0.0001}}}, False),
    ],
)
def test_the_planner_picks_trials_only_where_it_can(write_spec: Callable[..., Path], overrides: dict[str, Any], planned: bool) -> None:
    from migrator.migration import build_setup
    from migrator.search._space import planner_for

    setup = build_setup(prepare(load_spec(write_spec(**overrides))), {})
    assert (planner_for(setup) is not None) == planned


def test_the_search_ends_when_every_config_has_been_tried(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    # 2 models x the legacy prompt x 0 or 2 stratified demos, temperature as the app has
    # it: 4 configs, and a budget of 10 trials that would otherwise repeat them
    space = {"temperature": None, "demos": {"k": [0, 2], "strategies": ["stratified"]}, "prompt": {"transforms": []}}
    result = _run(write_spec(search_space=space), _client(), tmp_path)
    configs = [o.config for o in result.search.trials]
    assert len(configs) == 4 and len(set(configs)) == 4
    assert result.search.exhausted
    summary = summary_dict(result, {}, {})
    assert summary["space_exhausted"] is True and summary["trials"]["total"] == 4
    assert "every config in the search space was tried" in render_report(result, summary)
    # a search cut short by its trial budget did not run out of configs
    assert not _run(write_spec(folder="big"), _client(), tmp_path / "big").search.exhausted


def test_a_spec_without_a_search_space_searches_prompts_demos_up_to_8_and_temperature(tmp_path: Path) -> None:
    import json

    import yaml

    from migrator.migration import build_setup
    from migrator.search._space import space_points
    from migrator.testing import make_sentiment_rows

    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(60)))
    spec = base_spec(targets=["fake/fewshot"])
    del spec["search_space"]
    (tmp_path / "migration.yaml").write_text(yaml.safe_dump(spec))
    setup = build_setup(prepare(load_spec(tmp_path / "migration.yaml")), {})
    assert set(setup.prompts) == {"original", "format_line", "user_turn", "system_turn", "xml", "markdown", "terse"}
    points = space_points(setup)
    assert {p["demos"] for p in points} == {0, 2, 4, 8}
    assert {p.get("demo_strategy") for p in points if p["demos"]} == {"random", "stratified", "knn"}
    assert {p["temperature"] for p in points} == {round(i / 10, 1) for i in range(11)}


def test_the_calls_kept_for_re_samples_go_to_the_search_when_no_finalist_samples(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # fake/hot is right only at temperature 0.3 or below: the best configs are at T=0, so the
    # verdict will re-sample none, and the 190 calls kept for that go to the search instead
    spec = write_spec(
        targets=["fake/hot"],
        search_space={**base_spec()["search_space"], "temperature": {"low": 0.0, "high": 1.0, "step": 0.5}, "pruner": "none"},
        budget={"trials": 40, "calls": 600, "finalists": 1},
    )
    result = _run(spec, _client(), tmp_path)
    assert result.prepared.space_note == ""  # the budget leaves the search enough to sample: temperature is searched
    assert result.search.stopped_by == "calls"
    # had the 61 + 190 calls stayed kept back, the search would have stopped by 349 calls and
    # the whole run near 410; the verdict needed its 61 only
    assert result.spent.calls > 450
    assert result.verdict.winner is not None and dict(result.verdict.winner.config.params)["temperature"] == 0.0
    assert result.spent.calls <= 600
