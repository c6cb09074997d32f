"""`migrator` as a user runs it: exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator import cli
from migrator.testing import base_spec

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def migrator(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=timeout
    )


def _one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _edit(path: Path, edit: Callable[[dict], None]) -> Path:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.update(budgett={"trials": 3}), "budgett"),
        (lambda d: d["budget"].update(usd=-1), "budget.usd"),
        (lambda d: d.update(targets=[]), "targets"),
        (lambda d: d.update(targets=["gpt-4o"]), "targets.0.model"),
        (lambda d: d["dataset"].update(path="missing.jsonl"), "dataset.path"),
        (lambda d: d["metric"].update(name="bleu"), "metric.name"),
    ],
)
def test_bad_spec_exits_2_with_one_line_naming_file_and_field(
    write_spec: Callable[..., Path], tmp_path: Path, edit: Callable[[dict], None], needle: str
) -> None:
    spec = _edit(write_spec(), edit)
    out = tmp_path / "out"
    proc = migrator("run", str(spec), "--out", str(out))
    assert proc.returncode == 2
    line = _one_clear_line(proc)
    assert "migration.yaml" in line and needle in line
    assert not out.exists()


def test_bad_dataset_line_exits_2_naming_the_line(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec()
    data = spec.parent / "reviews.jsonl"
    lines = data.read_text().splitlines()
    lines[6] = '{"id": "x", "review": "broken'
    data.write_text("\n".join(lines) + "\n")
    proc = migrator("run", str(spec), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    line = _one_clear_line(proc)
    assert "reviews.jsonl" in line and "line 7" in line
    assert not (tmp_path / "out").exists()


def test_template_with_unknown_variable_exits_2(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = _edit(write_spec(), lambda d: d["app"]["messages"][1].update(content="Review: {{ reveiw }}"))
    proc = migrator("run", str(spec), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    line = _one_clear_line(proc)
    assert "reveiw" in line and "migration.yaml" in line


def test_run_writes_the_contract_files_and_eval_reproduces_the_winner(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec(budget={"trials": 6})
    out = tmp_path / "out"
    proc = migrator("run", str(spec), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    # nothing else on stderr either: MLflow's INFO lines (a new store's tables) and download bars stay out
    assert proc.stderr == ""
    summary = json.loads((out / "summary.json").read_text())
    for role in ("baseline", "winner"):
        for field in ("model", "prompt_id", "params", "dev_score", "test_score", "test_ci", "cost_usd_per_example", "latency_p50_s"):
            assert field in summary[role]
    assert set(summary["trials"]) >= {"total", "complete", "pruned", "failed"}
    assert set(summary["llm_calls"]) == {"made", "cached", "failed", "retried", "sent"}
    assert summary["mlflow"]["parent_run_id"] and summary["mlflow"]["tracking_uri"].startswith("sqlite:///")
    assert (out / "report.html").is_file() and (out / "study.db").is_file() and (out / "mlflow.db").is_file()
    winner = yaml.safe_load((out / "winner.yaml").read_text())
    assert winner["model"] == summary["winner"]["model"] and winner["messages"] and winner["spec_hash"]

    evaluated = migrator("eval", str(out / "winner.yaml"), "--split", "test")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test score {summary['winner']['test_score']:.3f}" in evaluated.stdout
    gate = migrator("eval", str(out / "winner.yaml"), "--min-score", str(summary["winner"]["test_score"] + 0.01))
    assert gate.returncode == 1
    assert "below --min-score" in gate.stderr

    again = migrator("run", str(spec), "--out", str(out), "--quiet")
    assert again.returncode == 0
    assert again.stderr == ""  # a resumed parent run's candidates.json is fetched back without a progress bar
    rerun = json.loads((out / "summary.json").read_text())
    assert rerun["llm_calls"]["made"] == 0
    assert rerun["winner"] == summary["winner"]


def test_budget_spent_before_any_winner_exits_3(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec(budget={"trials": 5, "calls": 10})
    proc = migrator("run", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--no-tracking")
    assert proc.returncode == 3
    assert "budget" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_reproduces_the_runs_test_score_and_interval_exactly_whatever_the_seed(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    from migrator.llm import LiteLLMClient, ResponseCache
    from migrator.outputs import evaluate_lockfile, load_lockfile
    from migrator.stats import bootstrap_ci

    out = tmp_path / "out"
    # the bootstrap of the interval is seeded by the spec's seed; fake/weak is often wrong, so it is wide
    spec = write_spec(rows=150, targets=["fake/weak"], budget={"trials": 4}, seed=7)
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"]) == 0
    winner = json.loads((out / "summary.json").read_text())["winner"]
    evaluated = evaluate_lockfile(load_lockfile(out / "winner.yaml"), LiteLLMClient(cache=ResponseCache(out / "cache.db")), "test")
    assert evaluated.test.score == winner["test_score"]
    assert list(evaluated.test_ci) == winner["test_ci"]
    # on these scores another seed gives another interval, so this checks the seed is the run's
    assert list(bootstrap_ci([r.score for r in evaluated.results], seed=0)) != winner["test_ci"]
    printed = migrator("eval", str(out / "winner.yaml"))
    assert f"95% CI [{winner['test_ci'][0]:.3f}, {winner['test_ci'][1]:.3f}]" in printed.stdout


def test_eval_scores_a_winner_that_samples_as_the_verdict_did(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    # every config samples at T=0.6, where fake/noisy's right answers change with the request seed
    out = tmp_path / "out"
    space = {**base_spec()["search_space"], "temperature": {"low": 0.6, "high": 0.6}}
    spec = write_spec(targets=["fake/noisy"], search_space=space, budget={"trials": 3, "finalists": 1})
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"]) == 0
    winner = json.loads((out / "summary.json").read_text())["winner"]
    assert winner["samples"]["samples"] == 3
    printed = migrator("eval", str(out / "winner.yaml"))
    assert printed.returncode == 0, printed.stderr
    spread = winner["samples"]["test"]["spread"]
    assert f"test score {winner['test_score']:.3f} (mean of 3 samples, spread {spread:.3f}, " in printed.stdout
    assert "calls 0 made" in printed.stdout  # the same seeded samples the verdict paid for, from the cache


def test_the_cli_leaves_the_environment_the_warning_filters_and_the_loggers_as_it_found_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ, filters = dict(os.environ), list(warnings.filters)
    names = ("migrator", "LiteLLM", "httpx", "mlflow", "optuna")
    levels = {name: logging.getLogger(name).level for name in names}
    assert cli.main(["eval", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("migrator: error: ") and "missing.yaml" in err
    assert dict(os.environ) == environ
    assert warnings.filters == filters
    assert {name: logging.getLogger(name).level for name in names} == levels
    assert not logging.getLogger("migrator").handlers and logging.getLogger("migrator").propagate
