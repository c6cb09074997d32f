"""dataset.labels: legacy: the legacy model's own replies as the expected outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator import cli
from migrator.testing import make_sentiment_rows, true_label


def _unlabelled(path: Path, n: int, *, keep_label: bool = False) -> None:
    rows = make_sentiment_rows(n)
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if keep_label or k != "label"}) + "\n" for r in rows))


def _legacy_spec(write_spec: Callable[..., Path], rows: int, legacy: str = "fake/oracle", keep_label: bool = False) -> Path:
    spec = write_spec(rows=rows, budget={"trials": 4, "finalists": 1})
    _unlabelled(spec.parent / "reviews.jsonl", rows, keep_label=keep_label)
    data = yaml.safe_load(spec.read_text())
    data["app"]["model"] = legacy
    data["dataset"]["labels"] = "legacy"
    if not keep_label:
        del data["dataset"]["expected_field"]
    spec.write_text(yaml.safe_dump(data))
    return spec


def test_rows_without_labels_are_labelled_by_the_legacy_model_and_the_winner_scores_on_them(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = _legacy_spec(write_spec, rows=60)
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"]["source"] == "legacy" and summary["labels"]["labelled"] == 60
    assert summary["labels"]["agreement_with_dataset"] is None  # the rows had no label to compare with
    # the labels are stored with the run: fake/oracle answers each review's true label
    stored = [json.loads(line) for line in (out / "legacy_labels.jsonl").read_text().splitlines()]
    assert len(stored) == 60 and all(row["expected"] == true_label(row["review"]) for row in stored)
    # what was paid for the labels is counted: 60 legacy calls besides the search's
    assert summary["budget"]["spent"]["calls"] >= 60
    # the lockfile re-scores on the labelled rows, the same split: migrator eval gives the run's test score
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "eval", str(out / "winner.yaml"), "--split", "test"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{summary['winner']['test_score']:.3f}" in proc.stdout

    # a second run resumes: every legacy reply comes from the cache, nothing more is spent on them
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["budget"]["spent"]["calls"] == summary["budget"]["spent"]["calls"]


def test_where_the_rows_have_labels_too_the_legacy_models_agreement_with_them_is_reported(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = _legacy_spec(write_spec, rows=40, legacy="fake/weak", keep_label=True)
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    labels = json.loads((out / "summary.json").read_text())["labels"]
    assert labels["compared_with_dataset"] == 40
    assert 0.2 < labels["agreement_with_dataset"] < 0.7  # fake/weak is right 40% of the time


def test_a_legacy_model_that_does_not_answer_is_bad_input(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _legacy_spec(write_spec, rows=30, legacy="fake/down")
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking", "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "dataset.labels" in err[0] and "fake/down" in err[0] and "does not answer" in err[0]
    assert not (out / "summary.json").exists() and not (out / "winner.yaml").exists()


def test_a_spec_with_neither_expected_field_nor_labels_legacy_names_the_field(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _legacy_spec(write_spec, rows=30)
    data = yaml.safe_load(spec.read_text())
    del data["dataset"]["labels"]
    spec.write_text(yaml.safe_dump(data))
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "dataset.expected_field: required field is missing" in capsys.readouterr().err
