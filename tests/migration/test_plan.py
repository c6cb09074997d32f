"""The plan of a migration before any call: figures a user can check by hand for a small spec."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.migration import Plan, build_setup, calls_per_scored_example, plan_migration, prepare
from migrator.models import import_litellm
from migrator.search import space_points
from migrator.spec import load_spec

SpecWriter = Callable[..., Path]

# 40 rows split 0.2 / 0.5 / 0.3: 8 train, 20 dev, 12 test
SMALL = {"demos": {"k": [0, 2], "strategies": ["random", "knn"]}, "temperature": {"low": 0.0, "high": 0.4, "step": 0.2}}

WIDER = {**SMALL, "demos": {"k": [0, 2, 4], "strategies": ["random", "knn"]}}


def _plan(path: Path) -> Plan:
    return plan_migration(prepare(load_spec(path)))


def test_the_search_space_is_counted_per_target_as_the_planner_lists_it(write_spec: SpecWriter) -> None:
    path = write_spec(rows=40, search_space=SMALL)
    plan = _plan(path)
    # per target: 1 prompt x (k=0, k=2 random, k=2 knn) x temperature 0, 0.2, 0.4
    assert [(t.model, t.configs) for t in plan.targets] == [("fake/weak", (9, 9)), ("fake/fewshot", (9, 9))]
    assert plan.configs == (18, 18)
    assert plan.demo_options == 3
    assert plan.sampler == "linear planner"
    assert len(space_points(build_setup(prepare(load_spec(path)), {}))) == 18


def test_estimated_calls_with_a_calls_budget_are_the_hand_computed_figures(write_spec: SpecWriter) -> None:
    plan = _plan(write_spec(rows=40, search_space=SMALL, budget={"trials": 30, "calls": 500, "finalists": 2}))
    assert plan.splits == (8, 20, 12)
    # the verdict: 2 baselines + 2 finalists on 12 test rows = 48; temperature above 0 is
    # searched, so 2 finalists x 2 more samples x (20 dev + 12 test) + 12 for the config at 0 = 140
    assert plan.stage("verdict").calls == 48 + 140
    # the search keeps the verdict's 188 and the legacy probe back: 500 - 189 = 311 < 18 configs x 20 dev rows
    assert plan.stage("search").calls == 311
    assert plan.binds == "calls"
    assert plan.space_note == ""  # 311 is at least 3/4 of the 360 the search would have at temperature 0
    # fake/down is no target and needs no key: scored on the 12 test rows
    assert plan.stage("legacy").calls == 12
    # 311 + 188 + 12 = 511, capped by the budget
    assert plan.calls == 500


def test_a_calls_budget_that_cannot_pay_for_samples_fixes_temperature_at_0(
    write_spec: SpecWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 configs at temperature 0 (2 targets x k=0, k=2 or 4 by random or knn): 10 trials x 20 dev rows = 200 calls
    path = write_spec(rows=40, search_space=WIDER, budget={"trials": 10, "calls": 300, "finalists": 2})
    prepared = prepare(load_spec(path))
    assert prepared.space.temperature is not None and prepared.space.temperature.high == 0
    assert prepared.spec.search_space.temperature is not None  # the spec (and its hash) stay as written
    plan = plan_migration(prepared)
    # the samples would keep 140 back: the search would have 300 - 189 = 111 of the 10 x 20 = 200 it has at 0
    assert plan.stage("verdict").calls == 48
    assert plan.stage("search").calls == 200
    assert [t.configs for t in plan.targets] == [(5, 5), (5, 5)]  # temperature 0 only
    assert "temperature fixed at 0" in plan.space_note
    assert "keep back 89 of the 200 calls budget.calls leaves the search" in plan.space_note
    # at 339 calls the search with samples has 150, 3/4 of the 200
    assert "budget.calls 339 or more would search it" in plan.space_note
    offered = _plan(write_spec(rows=40, search_space=WIDER, budget={"trials": 10, "calls": 339, "finalists": 2}))
    assert offered.space_note == "" and offered.stage("search").calls == 150
    assert _plan(write_spec(rows=40, search_space=WIDER, budget={"trials": 10, "calls": 338, "finalists": 2})).space_note

    from migrator.cli import main

    assert main(["run", str(path), "--dry-run"]) == 0
    assert "temperature fixed at 0" in capsys.readouterr().out


def test_an_app_that_samples_keeps_temperature_in_the_space(write_spec: SpecWriter) -> None:
    path = write_spec(
        rows=40,
        search_space=SMALL,
        budget={"trials": 10, "calls": 300, "finalists": 2},
        app={"params": {"temperature": 0.4, "max_tokens": 5}},
    )
    prepared = prepare(load_spec(path))
    assert prepared.space == prepared.spec.search_space and prepared.space_note == ""


def test_without_a_calls_budget_the_trials_bind(write_spec: SpecWriter) -> None:
    space = {**SMALL, "temperature": None}
    plan = _plan(
        write_spec(rows=40, search_space=space, budget={"trials": 4, "finalists": 1}, app={"model": "fake/weak"})
    )
    assert plan.binds == "trials"
    assert plan.stage("search").calls == 4 * 20
    assert plan.stage("verdict").calls == 12 * (2 + 1)  # no temperature searched: no re-samples
    assert plan.stage("legacy").calls == 0  # the legacy model is a target
    assert plan.calls == 80 + 36


def test_a_space_smaller_than_the_trial_budget_ends_the_search(write_spec: SpecWriter) -> None:
    space = {"demos": {"k": [0]}, "temperature": None}
    plan = _plan(write_spec(rows=40, search_space=space, budget={"trials": 10}))
    assert plan.configs == (2, 2)
    assert plan.binds == "space"
    assert plan.stage("search").calls == 2 * 20


def test_rewrites_and_reflections_are_counted_for_their_proposer(write_spec: SpecWriter) -> None:
    prompt = {"transforms": [], "proposer": "fake/weak", "rewrites": 2, "reflections": 1}
    space = {"demos": {"k": [0, 2], "strategies": ["random"]}, "temperature": None, "prompt": prompt}
    plan = _plan(write_spec(rows=40, search_space=space))
    # two families (fake/weak, fake/fewshot), each: the legacy prompt on the 8 train rows,
    # and 2 rewrites of up to 4 proposer calls (two framings, two DSPy adapters each)
    assert plan.stage("rewrites").calls == 2 * (8 + 2 * 4)
    # one reflection: the best config on the 8 train rows, and up to 3 proposer calls
    assert plan.stage("reflections").calls == 8 + 3
    # prompts: the original and reflect-1, and from none to all of the 2 x 2 rewrites; 2 demo options
    assert [t.configs for t in plan.targets] == [(4, 12), (4, 12)]
    assert [(p.id, p.kind, p.count) for p in plan.prompts] == [
        ("original", "original", 1),
        ("rewrites for fake/weak", "rewrite", 2),
        ("rewrites for fake/fewshot", "rewrite", 2),
        ("reflect-1", "reflection", 1),
    ]


def test_a_range_without_a_step_is_continuous_and_counted_at_the_planners_points(write_spec: SpecWriter) -> None:
    space = {"demos": {"k": [0]}, "temperature": {"low": 0.0, "high": 1.0, "step": None}}
    plan = _plan(write_spec(rows=40, search_space=space))
    assert plan.continuous == ("temperature",)
    assert [t.configs for t in plan.targets] == [(11, 11), (11, 11)]
    assert "continuous" in plan.targets[0].sampling[0]


def test_usd_comes_from_litellms_price_of_the_model(write_spec: SpecWriter) -> None:
    space = {"demos": {"k": [0]}, "temperature": None}
    path = write_spec(rows=40, search_space=space, targets=["openai/gpt-4o-mini"], app={"model": "openai/gpt-4o-mini"})
    plan = _plan(path)
    price = import_litellm().model_cost["gpt-4o-mini"]
    # the original prompt on each dev row, at 4 characters a token; 5 output tokens (app.params.max_tokens)
    system = "Classify the sentiment of the review."
    dev = prepare(load_spec(path)).splits.dev
    tokens = math.ceil(statistics.fmean(len(system) + len(f"Review: {ex.inputs['review']}") for ex in dev) / 4)
    per_call = tokens * price["input_cost_per_token"] + 5 * price["output_cost_per_token"]
    assert plan.targets[0].price.input_tokens == tokens
    assert plan.targets[0].price.usd == pytest.approx(per_call)
    # one config: its 20 dev rows; the verdict: 1 baseline + 3 finalists on 12 test rows
    assert plan.stage("search").calls == 20
    assert plan.stage("verdict").calls == 48
    assert plan.usd == pytest.approx((20 + 48) * per_call)
    assert plan.unpriced == ()


def test_local_models_cost_nothing_and_an_unknown_price_is_not_zero(write_spec: SpecWriter) -> None:
    space = {"demos": {"k": [0]}, "temperature": None}
    targets = ["local/qwen2.5-coder-0.5b-instruct", "openai/no-such-model-anywhere"]
    plan = _plan(write_spec(rows=40, search_space=space, targets=targets, app={"model": "local/gemma-3-270m"}))
    assert plan.targets[0].price.usd == 0.0
    assert plan.targets[1].price.usd is None
    assert plan.unpriced == ("openai/no-such-model-anywhere",)
    assert plan.usd is None
    assert plan.stage("search").usd is None


def test_no_current_metric_calls_a_judge(write_spec: SpecWriter) -> None:
    prepared = prepare(load_spec(write_spec(rows=40, search_space=SMALL)))
    assert calls_per_scored_example(prepared.metric) == 0
    judge = plan_migration(prepared).stage("judge")
    assert judge.calls == 0 and "without a model call" in judge.detail


def test_planning_writes_nothing(write_spec: SpecWriter) -> None:
    path = write_spec(rows=40, search_space=SMALL, budget={"calls": 300})
    before = sorted(p.name for p in path.parent.iterdir())
    _plan(path)
    assert before == ["migration.yaml", "reviews.jsonl"]
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_labels_from_the_legacy_model_are_a_step_of_their_own_before_the_search(write_spec: SpecWriter) -> None:
    path = write_spec(rows=40, search_space=SMALL, budget={"trials": 10, "calls": 300, "finalists": 1})
    without = _plan(path)
    path.write_text(path.read_text().replace("expected_field: label", "labels: legacy"))
    plan = _plan(path)
    # fake/down (the legacy model) replies to each of the 40 rows first
    assert (without.stage("labels").calls, plan.stage("labels").calls) == (0, 40)
    # the verdict keeps 1 finalist + 2 baselines on 12 test rows = 36, 2 more samples of the finalist on
    # 20 dev + 12 test rows and the config at 0 on test = 76, and the legacy probe 1: 300 - 113 = 187 for the
    # search; the labels' 40 come out of it
    assert (without.stage("search").calls, plan.stage("search").calls) == (187, 147)
    assert plan.binds == "calls" and plan.calls == 300
