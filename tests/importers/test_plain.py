"""The plain way in: a prompt file, a dataset and the legacy model's name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from migrator import cli
from migrator.errors import SourceError
from migrator.importers import from_plain, guess_metric
from migrator.testing import make_sentiment_rows


def _data(tmp_path: Path, n: int = 40, label: str = "label") -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "review": r["review"], label: r["label"]}) + "\n" for r in make_sentiment_rows(n)))
    return path


def test_a_python_format_prompt_becomes_a_jinja_template_and_the_data_stays_where_it_is(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Classify the sentiment of this review as positive or negative.\nReview: {review}\n")
    out = tmp_path / "app"
    draft = from_plain(prompt, _data(tmp_path), out=out, model="openai/gpt-4o-mini", name="reviews")
    assert draft.messages == (("user", "Classify the sentiment of this review as positive or negative.\nReview: {{ review }}"),)
    assert (draft.expected_field, draft.id_field, draft.input_fields) == ("label", "id", ("review",))
    assert draft.data_file == "../golden.jsonl" and draft.prompt_file is None  # the prompt is converted, the data referred to


def test_a_prompt_with_no_variables_is_the_system_prompt_and_the_fields_make_the_user_turn(tmp_path: Path) -> None:
    prompt = tmp_path / "system.md"
    prompt.write_text("You label reviews.")
    data = tmp_path / "golden.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["title", "body", "answer"])
        writer.writeheader()
        writer.writerows({"title": f"t{i}", "body": r["review"], "answer": r["label"]} for i, r in enumerate(make_sentiment_rows(12)))
    draft = from_plain(prompt, data, out=tmp_path / "app", model="openai/gpt-4o-mini", name="x")
    assert draft.messages == (("system", "You label reviews."), ("user", "Title: {{ title }}\nBody: {{ body }}"))
    assert draft.expected_field == "answer" and draft.id_field is None
    assert any("no variables" in n for n in draft.notes)


def test_migrators_own_prompt_file_is_referred_to_not_copied(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.yaml"
    prompt.write_text(yaml.safe_dump({"messages": [{"role": "system", "content": "Label it."}, {"role": "user", "content": "{{ review }}"}]}))
    draft = from_plain(prompt, _data(tmp_path), out=tmp_path / "app", model="openai/gpt-4o-mini", name="x")
    assert draft.prompt_file == "../prompt.yaml"


@pytest.mark.parametrize(
    ("values", "metric"),
    [
        (["positive", "negative", "positive", "negative", "positive", "negative"], "label"),
        ([3, 4.5, "7"], "numeric"),
        ([{"total": 3, "currency": "EUR"}, {"total": 1}], "json_fields"),
        (["Paris", "Berlin", "Rome"], "exact"),
        (["Thanks for writing in, your refund is on its way and should arrive within five days."] * 2, "similarity"),
    ],
)
def test_the_metric_is_guessed_from_the_expected_outputs(values: list[object], metric: str) -> None:
    assert guess_metric(values)[0]["name"] == metric


def test_free_text_without_the_similarity_extra_gets_f1_and_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed
    metric, why = guess_metric(["Thanks for writing in, your refund is on its way and should arrive soon."] * 2)
    assert metric == {"name": "f1"} and "pip install 'migrator[similarity]'" in why


def test_a_variable_the_rows_lack_names_the_prompt_file(tmp_path: Path) -> None:
    prompt = tmp_path / "p.txt"
    prompt.write_text("Review: {{ review }} from {{ author }}")
    data = _data(tmp_path, label="verdict")
    with pytest.raises(SourceError, match=r"uses \{\{ author \}\}") as err:
        from_plain(prompt, data, out=tmp_path, model="openai/gpt-4o-mini", expected="verdict", name="x")
    assert str(prompt) in str(err.value)


def test_init_plain_writes_a_spec_that_runs_to_a_winner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Classify the sentiment of the review.\nReview: {review}")
    data = _data(tmp_path, n=50)
    app = tmp_path / "app"
    assert cli.main(["init", "--prompt", str(prompt), "--data", str(data), "--out", str(app)]) == 2
    assert "missing --model" in capsys.readouterr().err and not app.exists()
    argv = ["init", "--prompt", str(prompt), "--data", str(data), "--model", "fake/down", "--target", "fake/fewshot", "--out", str(app)]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in app.iterdir()) == ["migration.yaml", "prompt.yaml"]
    spec = yaml.safe_load((app / "migration.yaml").read_text())
    assert spec["dataset"]["path"] == "../golden.jsonl"
    assert spec["metric"]["name"] == "label" and sorted(spec["metric"]["labels"]) == ["negative", "positive"]
    spec["budget"] = {"trials": 4, "finalists": 1}
    (app / "migration.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(tmp_path / "runs"), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary["winner"]["test_score"] is not None


def test_rows_without_expected_outputs_make_a_spec_the_legacy_model_labels(tmp_path: Path) -> None:
    prompt = tmp_path / "p.txt"
    prompt.write_text("Review: {{ review }}")
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "review": r["review"]}) + "\n" for r in make_sentiment_rows(30)))
    app = tmp_path / "app"
    argv = ["init", "--prompt", str(prompt), "--data", str(data), "--model", "fake/oracle", "--target", "fake/fewshot", "--out", str(app)]
    assert cli.main(argv) == 0
    spec = yaml.safe_load((app / "migration.yaml").read_text())
    assert spec["dataset"]["labels"] == "legacy" and "expected_field" not in spec["dataset"]
    assert "labels: legacy takes the legacy model's replies" in (app / "migration.yaml").read_text()
    spec["budget"] = {"trials": 3, "finalists": 1}
    (app / "migration.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(tmp_path / "runs"), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary["labels"]["labelled"] == 30 and summary["winner"]["test_score"] is not None
