"""A chat log as an app: the template from the lines, the replies as expected outputs, the spec runnable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli
from migrator.errors import SourceError
from migrator.importers import from_chat_log
from migrator.prompts import PromptTemplate
from migrator.testing import make_sentiment_rows

SHOPS = ("Acme Outdoors", "Bob's Books", "Cafe Luna")


def _line(system: str, user: str, reply: str, **extra: Any) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return json.dumps({"model": "gpt-4o-mini-2024-07-18", "temperature": 0, "max_tokens": 5, "messages": messages, **extra})


def write_log(path: Path, rows: int = 60, *, others: int = 4) -> Path:
    """A sentiment app's log: the system prompt varies with the shop and the date; another feature's lines mixed in."""
    lines = []
    for i, row in enumerate(make_sentiment_rows(rows)):
        system = (
            f"You moderate reviews for {SHOPS[i % 3]}. Classify the sentiment of the review as positive or negative.\n"
            f"Today: 2026-0{1 + i % 9}-1{i % 10}"
        )
        lines.append(_line(system, f"Review: {row['review']}", row["label"]))
        if i % 15 == 7 and others:
            others -= 1
            lines.append(_line("Write a friendly reply to this customer.", row["review"], "Thank you for your review!"))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_varying_parts_of_the_system_prompt_become_variables_and_the_replies_the_expected(tmp_path: Path) -> None:
    draft = from_chat_log(write_log(tmp_path / "log.jsonl"), name="reviews")
    system, user = draft.messages
    assert system == (
        "system",
        "You moderate reviews for {{ context }}. Classify the sentiment of the review as positive or negative.\nToday: {{ today }}",
    )
    assert user == ("user", "Review: {{ review }}")
    assert draft.model == "openai/gpt-4o-mini-2024-07-18"  # the log's bare name, as litellm's id
    assert dict(draft.params) == {"temperature": 0, "max_tokens": 5}
    assert len(draft.rows) == 60 and set(draft.input_fields) == {"context", "today", "review"}
    first = make_sentiment_rows(1)[0]
    assert draft.rows[0] == {
        "id": "log-0001", "context": "Acme Outdoors", "today": "2026-01-10", "review": first["review"], "expected": first["label"],
    }
    assert draft.metric["name"] == "label" and set(draft.metric["labels"]) == {"positive", "negative"}
    # every row renders back to what the app sent
    template = PromptTemplate(draft.messages)
    rendered = template.render({k: draft.rows[1][k] for k in draft.input_fields})
    assert rendered[0]["content"].startswith("You moderate reviews for Bob's Books.")
    # the other feature's lines are named, not silently dropped
    assert any("4 line(s)" in n and "Write a friendly reply" in n for n in draft.notes)


def test_a_request_log_with_responses_and_content_parts_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with path.open("w") as fh:
        for row in make_sentiment_rows(8):
            request = {
                "model": "openai/gpt-4o-mini",
                "messages": [
                    {"role": "developer", "content": [{"type": "text", "text": "Label the review."}]},
                    {"role": "user", "content": f"Review: {row['review']}"},
                ],
            }
            fh.write(json.dumps({"request": request, "response": {"choices": [{"message": {"content": row["label"]}}]}}) + "\n")
    draft = from_chat_log(path, name="r")
    assert draft.messages == (("system", "Label the review."), ("user", "Review: {{ review }}"))
    assert [r["expected"] for r in draft.rows] == [r["label"] for r in make_sentiment_rows(8)]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}', "line 1: the last message must be the assistant's reply"),
        ('{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}', "line 1: messages[0]"),
        ('[1, 2]', "line 1: expected a JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n{"messages": [', "line 2: invalid JSON"),
    ],
)
def test_a_line_that_is_no_conversation_is_named(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(SourceError, match=needle.replace("(", r"\(").replace("[", r"\[")) as err:
        from_chat_log(path, name="x", model="openai/gpt-4o-mini")
    assert str(path) in str(err.value)


def test_a_log_with_no_model_needs_one_and_a_log_of_one_prompt_has_nothing_to_vary(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    varied = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]} for q in ("hi", "yo")]
    path.write_text("".join(json.dumps(line) + "\n" for line in varied))
    with pytest.raises(SourceError, match="no line has a 'model' field: pass --model"):
        from_chat_log(path, name="x")
    assert from_chat_log(path, name="x", model="openai/gpt-4o-mini").model == "openai/gpt-4o-mini"
    same = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path.write_text((json.dumps(same) + "\n") * 3)
    with pytest.raises(SourceError, match="nothing to vary"):
        from_chat_log(path, name="x", model="openai/gpt-4o-mini")


def test_init_from_a_chat_log_writes_a_spec_that_runs_to_a_winner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log.jsonl", rows=60)
    app = tmp_path / "app"
    assert cli.main(["init", "--from", "chat-log", str(log), "--out", str(app), "--target", "fake/fewshot"]) == 0
    assert sorted(p.name for p in app.iterdir()) == ["data.jsonl", "migration.yaml", "prompt.yaml"]
    text = (app / "migration.yaml").read_text()
    assert "# Check before running:" in text and "Write a friendly reply" in text  # the notes, in the spec itself
    spec = yaml.safe_load(text)
    assert spec["targets"] == "auto" and spec["catalog"] == ["fake/fewshot"]
    spec["budget"] = {"trials": 4, "finalists": 1}
    (app / "migration.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    # no OpenAI key here: targets: auto leaves out the legacy model's successor and keeps the catalog's model
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["winner"]["model"] == "fake/fewshot" and summary["winner"]["test_score"] is not None
    assert "next: migrator run" in capsys.readouterr().out


def test_init_refuses_to_overwrite_and_writes_nothing_when_the_draft_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log.jsonl", rows=20, others=0)
    app = tmp_path / "app"
    # a legacy model litellm does not know and no --model: exit 2, one line, no folder
    log.write_text(log.read_text().replace("gpt-4o-mini-2024-07-18", "acme-llm-7"))
    assert cli.main(["init", "--from", "chat-log", str(log), "--out", str(app)]) == 2
    assert "acme-llm-7" in capsys.readouterr().err and not app.exists()
    # no target reachable: targets: auto has no model to pick, and init says so before writing anything
    assert cli.main(["init", "--from", "chat-log", str(log), "--out", str(app), "--model", "fake/down"]) == 2
    err = capsys.readouterr().err
    assert "targets" in err and str(app) in err and not app.exists()
    assert cli.main(["init", "--from", "chat-log", str(log), "--out", str(app), "--model", "fake/down", "--target", "fake/weak"]) == 0
    assert cli.main(["init", "--from", "chat-log", str(log), "--out", str(app), "--model", "fake/down", "--target", "fake/weak"]) == 2
    assert "--force" in capsys.readouterr().err
