"""A prompt from MLflow's prompt registry as the app: read from a real store, the spec it makes run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator import cli
from migrator.errors import SourceError
from migrator.importers import from_mlflow
from migrator.testing import make_sentiment_rows


def _registry(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _register(uri: str, name: str, template: object, **config: object) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.register_prompt(name, template=template, model_config=config or None)
    client.set_prompt_alias(name, alias="prod", version=int(version.version))
    return int(version.version)


def _data(tmp_path: Path, n: int = 40) -> Path:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(n)))
    return path


def test_a_registry_chat_prompt_with_its_model_config_is_the_app(tmp_path: Path) -> None:
    uri = _registry(tmp_path)
    chat = [{"role": "system", "content": "Classify the sentiment."}, {"role": "user", "content": "Review: {{ review }}"}]
    version = _register(uri, "moderation", chat, model_name="gpt-4o-mini", provider="openai", temperature=0.0, max_tokens=5)
    for ref in (f"prompts:/moderation/{version}", "prompts:/moderation@prod"):
        draft = from_mlflow(ref, _data(tmp_path), tracking_uri=uri, out=tmp_path / "app", name="m")
        assert draft.messages == (("system", "Classify the sentiment."), ("user", "Review: {{ review }}"))
        assert draft.model == "openai/gpt-4o-mini" and dict(draft.params) == {"temperature": 0.0, "max_tokens": 5}
        assert draft.expected_field == "label" and draft.input_fields == ("review",)


def test_a_text_prompt_without_a_model_config_needs_model(tmp_path: Path) -> None:
    uri = _registry(tmp_path)
    _register(uri, "plain", "Is this review positive or negative? {{ review }}")
    with pytest.raises(SourceError, match="no model config; pass --model"):
        from_mlflow("prompts:/plain/1", _data(tmp_path), tracking_uri=uri, out=tmp_path, name="p")
    draft = from_mlflow("prompts:/plain/1", _data(tmp_path), tracking_uri=uri, out=tmp_path, name="p", model="openai/gpt-4o")
    assert draft.messages == (("user", "Is this review positive or negative? {{ review }}"),)


def test_a_prompt_the_registry_does_not_have_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = _registry(tmp_path)
    _register(uri, "there", "{{ review }}")
    app = tmp_path / "app"
    argv = ["init", "--from", "mlflow", "prompts:/missing/3", "--data", str(_data(tmp_path)), "--tracking-uri", uri, "--out", str(app)]
    capsys.readouterr()  # MLflow's own lines as the test made the store
    assert cli.main([*argv, "--model", "openai/gpt-4o"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "prompts:/missing/3" in err[0] and not app.exists()


def test_an_exported_winner_imported_back_is_the_same_prompt_and_runs_again(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(rows=60, budget={"trials": 3, "finalists": 1})
    run = tmp_path / "run"
    assert cli.main(["run", str(spec), "--out", str(run), "--no-tracking", "--quiet"]) == 0
    uri = _registry(tmp_path)
    assert cli.main(["export", str(run), "--format", "mlflow", "--tracking-uri", uri, "--name", "sentiment"]) == 0
    winner = yaml.safe_load((run / "winner.yaml").read_text())

    app = tmp_path / "again"
    argv = ["init", "--from", "mlflow", "prompts:/sentiment@production", "--data", str(spec.parent / "reviews.jsonl"),
            "--tracking-uri", uri, "--target", "fake/oracle", "--out", str(app)]
    assert cli.main(argv) == 0
    prompt = yaml.safe_load((app / "prompt.yaml").read_text())
    assert prompt["messages"] == winner["messages"]
    written = yaml.safe_load((app / "migration.yaml").read_text())
    assert written["app"]["model"] == winner["model"]  # the registry's model config: the model it was exported for
    written["budget"] = {"trials": 3, "finalists": 1}
    (app / "migration.yaml").write_text(yaml.safe_dump(written))
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(tmp_path / "run2"), "--no-tracking", "--quiet"]) == 0
    assert json.loads((tmp_path / "run2" / "summary.json").read_text())["winner"]["test_score"] is not None
