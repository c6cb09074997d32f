"""The judge metric: an LLM grades each reply through migrator's client (fake judges of migrator.testing)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest

from migrator import cli
from migrator.dataset import Example
from migrator.judge import DEFAULT_CRITERIA, Judge, agreement, parse_verdict
from migrator.llm import Endpoint
from migrator.migration import plan_migration, prepare
from migrator.spec import MetricSpec, load_spec

SpecWriter = Callable[..., Path]


def _judge_spec(write_spec: SpecWriter, judge: str = "fake/judge", rows: int = 60, **metric: Any) -> Path:
    return write_spec(
        rows=rows,
        metric={"name": "judge", "model": judge, "labels": None, **metric},
        budget={"trials": 6, "finalists": 2},
        search_space={"temperature": None},
        app={"model": "fake/weak"},  # the app as it runs today answers, and is judged too
    )


def _run(spec: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet", *extra]) == 0
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def test_a_judged_migration_reaches_a_winner_and_reports_the_judge_its_prompt_and_its_agreement(
    write_spec: SpecWriter, tmp_path: Path
) -> None:
    spec = _judge_spec(write_spec, criteria="The reply names the same sentiment as the reference reply.")
    summary = _run(spec, tmp_path / "out")
    assert summary["winner"] is not None and summary["winner"]["test_score"] > summary["baseline"]["test_score"]
    judge = summary["judge"]
    assert judge["model"] == "fake/judge"
    # the prompt is shown whole: the criteria, the fields DSPy fills in, the 1-5 scale
    assert "The reply names the same sentiment as the reference reply." in judge["prompt"]
    assert "{reference_reply}" in judge["prompt"] and "Score from 1 to 5" in judge["prompt"]
    # fake/judge passes exactly the replies equal to the reference: full agreement with exact labels
    agree = judge["agreement_with_exact"]
    assert agree["agreement"] == 1.0 and agree["exact_but_failed"] == 0 and agree["n"] >= summary["splits"]["test"]


    # the judge's scores and reasons are in MLflow: per example in each trial's predictions, the agreement on the parent
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.metrics["judge_agreement_with_exact"] == 1.0
    assert "judge/prompt.txt" in [a.path for a in client.list_artifacts(parent.info.run_id, "judge")]
    trial = next(r for r in runs if r.data.tags.get("migrator.role") == "trial")
    table = json.loads(Path(client.download_artifacts(trial.info.run_id, "predictions.json", str(tmp_path))).read_text())
    judged = table["data"][0][table["columns"].index("judged")]
    assert "the expected" in judged


def test_a_rerun_pays_for_no_judge_call_again_and_eval_rescores_with_the_judge(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = _judge_spec(write_spec)
    out = tmp_path / "out"
    first = _run(spec, out, "--no-tracking")
    again = _run(spec, out, "--no-tracking")
    assert again["budget"]["spent"]["calls"] == first["budget"]["spent"]["calls"]
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "eval", str(out / "winner.yaml"), "--split", "test"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"test score {first['winner']['test_score']:.3f}" in proc.stdout


def test_a_lenient_judge_shows_in_its_agreement(write_spec: SpecWriter, tmp_path: Path) -> None:
    summary = _run(_judge_spec(write_spec, judge="fake/judge-lenient"), tmp_path / "out", "--no-tracking")
    agree = summary["judge"]["agreement_with_exact"]
    # it passes every reply: it agrees only where the reply is exact, and no better than chance
    assert agree["agreement"] == pytest.approx(agree["exact_matches"] / agree["n"], abs=1e-4)
    assert agree["kappa"] == pytest.approx(0.0, abs=1e-4) and agree["agreement"] < 1.0


def test_a_judge_that_gives_no_score_scores_zero_and_says_why(tmp_path: Path) -> None:
    import asyncio

    from migrator.evaluate import Config, evaluate
    from migrator.judge import attach
    from migrator.llm import LiteLLMClient
    from migrator.metrics import build_metric
    from migrator.prompts import PromptTemplate
    from migrator.testing import register_fake_provider

    register_fake_provider()
    metric = attach(build_metric(MetricSpec(name="judge", model="fake/judge-mumble")), Endpoint("fake/judge-mumble"))
    template = PromptTemplate((("user", "Review: {{ review }}"),))
    examples = [Example("a", {"review": "great, love it"}, "positive")]
    results = asyncio.run(
        evaluate(LiteLLMClient(), Config("fake/oracle"), Endpoint("fake/oracle"), template, examples, metric)
    )
    assert results[0].score == 0.0 and results[0].judged.startswith("judge gave no score")


@pytest.mark.parametrize("calls", [300, 400])
def test_a_calls_budget_pays_for_the_judge_too(write_spec: SpecWriter, tmp_path: Path, calls: int) -> None:
    spec = write_spec(
        rows=60,
        app={"model": "fake/weak"},  # a legacy model that answers: the verdict scores it too, if the budget pays
        metric={"name": "judge", "model": "fake/judge", "labels": None},
        budget={"trials": 40, "finalists": 2, "calls": calls},
        search_space={"temperature": None},
    )
    summary = _run(spec, tmp_path / "out", "--no-tracking")
    assert summary["budget"]["spent"]["calls"] <= calls
    # the verdict's reserve held, judge calls included: the baseline and the finalists were all scored on test
    assert summary["winner"] is not None and summary["baseline"] is not None
    assert all(f["test_score"] is not None for f in summary["finalists"])
    plan = plan_migration(prepare(load_spec(spec)))
    # the dry run counts a judge call per scored answer, and the answers it plans fit the budget with them
    assert plan.stage("judge").calls >= plan.stage("search").calls + plan.stage("verdict").calls
    assert 2 * (plan.stage("search").calls + plan.stage("verdict").calls) <= calls


def test_a_judge_that_cannot_be_reached_leaves_replies_unscored_not_zero(
    write_spec: SpecWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _judge_spec(write_spec, judge="fake/down")
    out = tmp_path / "out"
    code = cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"])
    err = capsys.readouterr().err
    # every reply failed to be graded: no trial completes, and the run exits 1 (it does not crown a config scored 0)
    assert code == 1 and "no trial completed" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["winner"] is None and summary["trials"]["complete"] == 0 and summary["trials"]["failed"] > 0


def test_a_judge_on_criteria_alone_reports_no_agreement_and_says_why(write_spec: SpecWriter, tmp_path: Path) -> None:
    spec = _judge_spec(write_spec, criteria="The reply names the review's true sentiment.", reference=False)
    summary = _run(spec, tmp_path / "out", "--no-tracking")
    assert summary["judge"]["agreement_with_exact"] is None
    assert "no expected reply" in summary["judge"]["agreement_note"]
    assert summary["winner"]["test_score"] > 0  # fake/judge checks the input's true label instead


@pytest.mark.parametrize(
    ("metric", "where"),
    [
        ({"name": "judge"}, "metric.model"),
        ({"name": "label", "labels": ["positive", "negative"], "model": "fake/judge"}, "metric.model"),
        ({"name": "judge", "model": "fake/judge", "reference": False}, "metric.criteria"),
        ({"name": "judge", "model": "nosuchprovider/x"}, "metric.model"),
    ],
)
def test_a_bad_judge_spec_is_one_line_and_exit_2(
    write_spec: SpecWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: dict[str, Any], where: str
) -> None:
    spec = write_spec(rows=30, metric={"labels": None, **metric})
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and str(spec) in err[0]
    assert not out.exists()


def test_other_metrics_dump_as_before_the_judge_fields_existed() -> None:
    assert MetricSpec(name="label", labels=("a", "b")).model_dump() == {
        "name": "label", "labels": ("a", "b"), "fields": None, "tolerance": 1e-6,
    }  # fmt: skip
    dumped = MetricSpec(name="judge", model="openai/gpt-4o-mini", criteria="polite").model_dump(exclude_none=True)
    assert dumped["model"] == {"model": "openai/gpt-4o-mini"} and dumped["criteria"] == "polite"


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("[[ ## reason ## ]]\nclose\n\n[[ ## score ## ]]\n4\n\n[[ ## completed ## ]]", 4),
        ("Reason: polite and right.\nScore: 5", 5),  # a small judge that ignores DSPy's markers
        ("3", 3),
        ("[[ ## reason ## ]]\nx\n\n[[ ## score ## ]]\n9\n\n[[ ## completed ## ]]", None),  # off the scale
        ("It is a fine reply.", None),
    ],
)
def test_the_judges_score_is_read_from_its_reply(reply: str, score: int | None) -> None:
    assert parse_verdict(reply)[0] == score


def test_agreement_and_kappa_on_known_counts() -> None:
    # 10 replies: 4 exact and passed, 1 exact but failed, 2 not exact but passed, 3 not exact and failed
    pairs = [(1.0, True)] * 4 + [(0.0, True)] + [(0.75, False)] * 2 + [(0.25, False)] * 3
    found = agreement(pairs)
    assert found is not None
    assert found.agree == pytest.approx(0.7) and found.exact_but_failed == 1 and found.exact_matches == 5
    # chance agreement: 0.6 * 0.5 + 0.4 * 0.5 = 0.5, so kappa = (0.7 - 0.5) / 0.5
    assert found.kappa == pytest.approx(0.4)
    assert agreement([]) is None


def test_the_judge_sees_the_input_the_reference_and_the_reply() -> None:
    judge = Judge(Endpoint("fake/judge"))
    turns = judge.messages({"customer": "Where is my parcel?", "order": "#1, in transit"}, "It is on its way.", "Soon.")
    user = turns[-1]["content"]
    assert "customer: Where is my parcel?" in user and "order: #1, in transit" in user
    assert "It is on its way." in user and "Soon." in user and DEFAULT_CRITERIA in user
    blind = Judge(Endpoint("fake/judge"), criteria="Polite.", reference=False)
    assert "reference_reply" not in blind.messages({"q": "x"}, "secret answer", "y")[-1]["content"]
