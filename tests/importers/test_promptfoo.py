"""A promptfoo suite as an app: `migrator init --from promptfoo` writes a spec `migrator run` accepts as it is."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli, similarity
from migrator.errors import SourceError
from migrator.importers import from_promptfoo
from migrator.testing import make_sentiment_rows

CHAT_PROMPT = [
    {"role": "system", "content": "You label the reviews {{shop}} gets as positive or negative."},
    {"role": "user", "content": "Review: {{review}}"},
]


def _csv_expected(i: int, label: str) -> tuple[str, str]:
    """The assertions of CSV row i, as a promptfoo user writes them: one kind per row, some with a second."""
    return [
        (label, ""),  # a bare value: equals
        (f"equals: {label}", "llm-rubric: names the sentiment and nothing else"),
        (f"icontains: {label}", ""),
        (f"javascript: output.toLowerCase().includes('{label}')", ""),
        (f"python: '{label}' in output.lower()", "not-is-json"),
        (f"equals: {label}", "is-json" if i == 5 else ""),
    ][i % 6]


def _suite(root: Path, n: int = 60) -> list[dict[str, str]]:
    """promptfooconfig.yaml with a JSON chat prompt, two providers, defaultTest, and tests in a CSV and inline."""
    rows = make_sentiment_rows(n, seed=3)
    (root / "prompt.json").write_text(json.dumps(CHAT_PROMPT, indent=2))
    with (root / "tests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "__expected1", "__expected2", "__description", "__metric"])
        for i, row in enumerate(rows):
            writer.writerow([row["review"], *_csv_expected(i, row["label"]), f"review {row['id']}", "sentiment"])
    config = {
        "description": "Review sentiment",
        "prompts": ["file://prompt.json"],
        "providers": [
            {"id": "openai:chat:gpt-4o-mini", "config": {"temperature": 0, "max_tokens": 5}},
            {"id": "anthropic:messages:claude-3-5-haiku-20241022", "config": {"temperature": 0.2, "max_tokens": 20}},
        ],
        "defaultTest": {"vars": {"shop": "Acme"}, "assert": [{"type": "not-icontains", "value": "as an ai"}]},
        "tests": [
            "file://tests.csv",
            {
                "description": "stays polite",
                "vars": {"review": "You people are useless."},
                "options": {"disableDefaultAsserts": True},
                "assert": [{"type": "llm-rubric", "value": "answers politely"}],
            },
        ],
    }
    (root / "promptfooconfig.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return rows


def _init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["init", "--from", "promptfoo", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(app: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (app / "data.jsonl").read_text().splitlines()]


def test_a_promptfoo_suite_becomes_a_spec_that_runs_to_a_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)  # targets: auto leaves out what it cannot reach
    reviews = _suite(tmp_path)
    app = tmp_path / "app"
    code, out, err = _init(
        capsys, str(tmp_path / "promptfooconfig.yaml"), "--out", str(app), "--target", "fake/fewshot"
    )
    assert code == 0, err
    assert "(61 rows, metric assertions)" in out

    # the app's prompt, as promptfoo sends it
    assert yaml.safe_load((app / "prompt.yaml").read_text()) == {"messages": CHAT_PROMPT}
    # each CSV row is a row; defaultTest's var is in it, its assertion first in the expected checks
    rows = _rows(app)
    assert len(rows) == 61
    first, second, fifth = rows[0], rows[1], rows[4]
    assert first == {
        "id": "test-0001", "shop": "Acme", "review": reviews[0]["review"],
        "expected": [{"type": "not-icontains", "value": "as an ai"}, {"type": "equals", "value": reviews[0]["label"]}],
    }  # fmt: skip
    # the llm-rubric of row 2 is among its checks: the judge grades it
    assert second["expected"] == [
        {"type": "not-icontains", "value": "as an ai"},
        {"type": "equals", "value": reviews[1]["label"]},
        {"type": "llm-rubric", "value": " names the sentiment and nothing else"},  # promptfoo keeps the space
    ]
    assert fifth["expected"][1:] == [
        {"type": "python", "value": f"'{reviews[4]['label']}' in output.lower()"},
        {"type": "not-is-json"},
    ]
    assert rows[5]["expected"][-1] == {"type": "is-json"}
    assert rows[3]["expected"][1] == {
        "type": "javascript",
        "value": f"output.toLowerCase().includes('{reviews[3]['label']}')",
    }

    spec_text = (app / "migration.yaml").read_text()
    spec = yaml.safe_load(spec_text)
    assert spec["app"] == {
        "model": "openai/gpt-4o-mini",
        "prompt_file": "prompt.yaml",
        "params": {"temperature": 0, "max_tokens": 5},
    }
    # the legacy model grades the llm-rubrics (no grading provider is named), and the spec says so
    assert spec["metric"] == {"name": "assertions", "model": "openai/gpt-4o-mini"}
    assert (spec["targets"], spec["catalog"]) == ("auto", ["anthropic/claude-3-5-haiku-20241022", "fake/fewshot"])
    comments = [line for line in spec_text.splitlines() if line.startswith("#   - ")]
    assert any("the judge is the legacy model openai/gpt-4o-mini" in c for c in comments)
    assert not any("not translated" in c or "left out" in c for c in comments)
    assert len(rows) == 61 and rows[-1]["expected"] == [{"type": "llm-rubric", "value": "answers politely"}]
    assert any("providers' config is not carried over" in c for c in comments)

    # pointed at a judge (here the fake one), the suite runs to a winner, its rubrics graded on every scored reply
    spec["metric"]["model"] = "fake/judge"
    (app / "migration.yaml").write_text(yaml.safe_dump(spec))
    runs = tmp_path / "runs"
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(runs), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    winner = summary["winner"]
    assert winner["model"] == "fake/fewshot" and winner["test_score"] is not None and winner["test_n"] > 0
    assert summary["judge"]["model"] == "fake/judge" and "{the test's llm-rubric}" in summary["judge"]["prompt"]


def _similar_suite(root: Path) -> None:
    """Support replies checked by `similar`: inline (a list of values, `not-`, an assert-set) and in a CSV cell."""
    with (root / "tests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "__expected1", "__expected2"])
        writer.writerow(["Where is my refund?", "similar(0.6): Your refund is on its way.", "not-icontains: sorry"])
    tests = [
        "file://tests.csv",
        {"vars": {"question": "Can I change my password?"},
         "assert": [{"type": "similar:cosine", "value": ["Use the Forgot password link.", "Reset it in settings."]},
                    {"type": "not-similar", "value": "I cannot help with that.", "threshold": 0.5}]},
        {"vars": {"question": "When are you open?"},
         "assert": [{"type": "assert-set", "assert": [{"type": "similar:euclidean", "value": "Weekdays, 9 to 5."},
                                                      {"type": "contains", "value": "9"}]}]},
    ]  # fmt: skip
    config = {"prompts": ["Answer the customer: {{question}}"], "providers": ["openai:gpt-4o-mini"], "tests": tests}
    (root / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.skipif(similarity.missing() is not None, reason=str(similarity.missing()))
def test_similar_is_kept_and_scored_with_migrators_embeddings_which_the_spec_says_are_not_promptfoos(
    tmp_path: Path,
) -> None:
    from migrator.assertions import score

    _similar_suite(tmp_path)
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="support")

    assert [r["expected"] for r in draft.rows] == [
        [{"type": "similar", "value": "Your refund is on its way.", "threshold": 0.6},
         {"type": "not-icontains", "value": "sorry"}],
        [{"type": "similar:cosine", "value": ["Use the Forgot password link.", "Reset it in settings."]},
         {"type": "not-similar", "value": "I cannot help with that.", "threshold": 0.5}],
        [{"type": "assert-set", "assert": [{"type": "similar:euclidean", "value": "Weekdays, 9 to 5."},
                                           {"type": "contains", "value": "9"}]}],
    ]  # fmt: skip
    assert draft.metric["name"] == "assertions"
    assert not any("not translated" in n for n in draft.notes)
    (note,) = [n for n in draft.notes if "`similar`" in n]
    assert "(4 assertion(s))" in note and "all-MiniLM-L6-v2" in note and "not promptfoo's" in note
    # a reply that says what the expected answer says scores well above one that does not
    good = score("Your refund has been sent and is on its way to you.", draft.rows[0]["expected"])
    bad = score("Sorry, our shop opens at nine.", draft.rows[0]["expected"])
    assert good > 0.8 and bad < 0.3


def test_without_the_similarity_extra_similar_is_listed_as_not_translated_with_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _similar_suite(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed

    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="support")

    untranslated = [n for n in draft.notes if n.startswith("not translated: `similar")]
    assert untranslated and all("pip install 'migrator[similarity]'" in n for n in untranslated)
    assert [r["expected"] for r in draft.rows] == [[{"type": "not-icontains", "value": "sorry"}]]
    assert not any("not promptfoo's" in n for n in draft.notes)


def test_one_equals_per_test_makes_its_value_the_expected_output_and_the_metric_is_guessed(tmp_path: Path) -> None:
    rows = make_sentiment_rows(30, seed=1)
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            [{"vars": {"review": r["review"]}, "assert": [{"type": "equals", "value": r["label"]}]} for r in rows[:20]]
        )
    )
    with (tmp_path / "more.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "__expected"])
        writer.writerows([r["review"], r["label"]] for r in rows[20:])
    config = {"prompts": ["Label this review as positive or negative: {{review}}"], "providers": ["openai:gpt-4o-mini"],
              "tests": ["file://tests.yaml", "file://more.csv"]}  # fmt: skip
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))

    draft = from_promptfoo(tmp_path, name="reviews")  # the folder: promptfoo's own default file in it

    assert draft.messages == (("user", "Label this review as positive or negative: {{review}}"),)
    assert [r["expected"] for r in draft.rows] == [r["label"] for r in rows]
    assert {k: v for k, v in draft.metric.items() if k != "_why"} == {
        "name": "label",
        "labels": ["negative", "positive"],
    }
    assert "byte for byte" in draft.metric["_why"]
    # promptfoo's OpenAI provider sends temperature 0 and max_tokens 1024 when its config does not
    assert draft.params == {"temperature": 0, "max_tokens": 1024}
    assert any("promptfoo's OpenAI provider sends them" in n for n in draft.notes)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai:gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openai:chat:gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openai:completion:gpt-3.5-turbo-instruct", "text-completion-openai/gpt-3.5-turbo-instruct"),
        ("anthropic:messages:claude-3-5-haiku-20241022", "anthropic/claude-3-5-haiku-20241022"),
        ("vertex:gemini-2.0-flash", "vertex_ai/gemini-2.0-flash"),
        ("google:gemini-2.5-pro", "gemini/gemini-2.5-pro"),
        ("bedrock:anthropic.claude-3-haiku-20240307-v1:0", "bedrock/anthropic.claude-3-haiku-20240307-v1:0"),
        ("bedrock:converse:us.anthropic.claude-opus-4-6-v1:0", "bedrock/converse/us.anthropic.claude-opus-4-6-v1:0"),
        ("ollama:chat:llama3.3:70b", "ollama_chat/llama3.3:70b"),
        ("ollama:llama3", "ollama/llama3"),
        ("azureopenai:chat:my-deployment", "azure/my-deployment"),
        ("azure:chat:my-deployment", "azure/my-deployment"),
        ("mistral:mistral-large-latest", "mistral/mistral-large-latest"),
        (
            {"openrouter:meta-llama/llama-3.3-70b-instruct": {"config": {"temperature": 0.3}}},
            "openrouter/meta-llama/llama-3.3-70b-instruct",
        ),
    ],
)
def test_provider_ids_become_litellm_ids(tmp_path: Path, provider: Any, model: str) -> None:
    (tmp_path / "promptfooconfig.yaml").write_text(
        yaml.safe_dump(
            {
                "prompts": ["{{q}}"],
                "providers": [provider, "echo"],
                "tests": [{"vars": {"q": "hi"}, "assert": [{"type": "contains", "value": "hi"}]}],
            }
        )
    )
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")
    assert draft.model == model
    assert any("providers[1] 'echo' is not a candidate: not a model" in n for n in draft.notes)


def test_a_config_migrator_exported_imports_back_as_the_winners_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrator.outputs import load_lockfile
    from migrator.testing import KEY_ENV, FaultPlan, LoopbackServer, awkward_rows, server_spec

    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in awkward_rows(False)))
    monkeypatch.setenv(KEY_ENV, "sk-test-roundtrip-0123456789")
    with LoopbackServer(FaultPlan()) as server:
        target = {"model": "openai/fault-shaky", "api_base": server.api_base, "api_key_env": KEY_ENV}
        spec = server_spec(server.api_base, str(data), targets=[target],
                           search_space={"demos": {"k": [2], "strategies": ["stratified"]}})  # fmt: skip
        spec["app"]["params"] = {"temperature": 0.0, "max_tokens": 5}
        (tmp_path / "migration.yaml").write_text(yaml.safe_dump(spec))
        out = tmp_path / "out"
        assert cli.main(["run", str(tmp_path / "migration.yaml"), "--out", str(out), "--quiet", "--no-tracking"]) == 0
    exported = tmp_path / "promptfooconfig.yaml"
    assert cli.main(["export", str(out), "--format", "promptfoo", "-o", str(exported)]) == 0
    capsys.readouterr()
    lock = load_lockfile(out / "winner.yaml")

    draft = from_promptfoo(exported, name="back")

    from migrator.prompts import PromptTemplate

    # the winner's messages with its two demos in them: rendered, exactly what the winner sends
    template = PromptTemplate(draft.messages)
    for example in lock.splits.test:
        assert template.render(example.inputs) == lock.prompt_for(example)
    assert draft.model == "openai/fault-shaky" and draft.params["max_tokens"] == 5
    assert [r["expected"] for r in draft.rows] == [ex.expected for ex in lock.splits.test]
    assert draft.metric["name"] == "label"
    assert any("api_base" in n for n in draft.notes)  # the server it was exported for


def test_prompt_forms_and_the_nunjucks_filters_that_differ(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text(
        "Tone: {{ (style | load).tone }}\nRephrase: {{ body }}\n---\nSecond prompt: {{ body }}\n"
    )
    tests = [
        {"vars": {"body": "hello", "style": '{"tone": "formal"}'}, "assert": [{"type": "icontains", "value": "hello"}]}
    ]
    config = {
        "prompts": [{"id": "file://prompts.txt", "label": "rephrase"}],
        "providers": ["openai:gpt-4o-mini"],
        "tests": tests,
    }
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))

    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")

    # promptfoo's `load` (JSON.parse) is translated: the var is parsed once, the template reads it
    assert draft.messages == (("user", "Tone: {{ style.tone }}\nRephrase: {{ body }}"),)
    assert draft.rows[0]["style"] == {"tone": "formal"}
    assert any("1 other prompt(s) are not imported: prompts[0] (prompts.txt) #2" in n for n in draft.notes)

    config["prompts"] = ["Messages: {{ history | dump }}"]
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SourceError, match=r"promptfooconfig.yaml: prompts\[0\]: uses the Nunjucks filter `dump`"):
        from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")


def test_array_vars_run_each_combination_and_a_transform_leaves_the_test_out(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("Good morning")
    tests = [
        {"vars": {"lang": ["French", "German"], "text": ["file://greeting.txt", "Hi"]},
         "assert": [{"type": "contains", "value": "{{ lang }}"}]},
        {"vars": {"lang": "Dutch", "text": "Hi"}, "options": {"transform": "output.trim()"},
         "assert": [{"type": "equals", "value": "Hoi"}]},
    ]  # fmt: skip
    config = {
        "prompts": [[{"role": "user", "content": "Say {{ text }} in {{ lang }}"}]],
        "providers": ["openai:gpt-4o-mini"],
        "tests": tests,
    }
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SourceError, match="a prompt text, a file:// path"):
        from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")  # a bare list of messages is no prompt entry

    config["prompts"] = [json.dumps([{"role": "user", "content": "Say {{ text }} in {{ lang }}"}])]
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")

    assert [(r["lang"], r["text"], r["expected"]) for r in draft.rows] == [
        ("French", "Good morning", [{"type": "contains", "value": "French"}]),
        ("French", "Hi", [{"type": "contains", "value": "French"}]),
        ("German", "Good morning", [{"type": "contains", "value": "German"}]),
        ("German", "Hi", [{"type": "contains", "value": "German"}]),
    ]
    assert any("1 of 5 tests left out: the test transforms the reply" in n for n in draft.notes)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "promptfooconfig.yaml: file not found"),
        ("prompts: [oops\n", "promptfooconfig.yaml: line 2: invalid YAML"),
        ({"providers": ["openai:gpt-4o-mini"], "tests": [{"vars": {"q": "x"}}]}, "promptfooconfig.yaml: prompts: no prompts"),
        ({"prompts": ["{{q}}"], "providers": ["openai:gpt-4o-mini"]}, "promptfooconfig.yaml: tests: no tests"),
        ({"prompts": ["{{q}}"], "providers": [{"config": {"temperature": 0}}], "tests": [{"vars": {"q": "x"}}]},
         "promptfooconfig.yaml: providers[0]: expected a provider id"),
        ({"prompts": ["{{q}}"], "providers": ["acme:gpt-9"], "tests": [{"vars": {"q": "x"}}]},
         "promptfooconfig.yaml: providers[0]: 'acme:gpt-9' is an unknown provider"),
        ({"prompts": ["file://missing.txt"], "providers": ["openai:gpt-4o-mini"], "tests": [{"vars": {"q": "x"}}]},
         "promptfooconfig.yaml: prompts[0]: file not found"),
        ({"prompts": ["{{q}}"], "providers": ["openai:gpt-4o-mini"], "tests": "file://tests.csv"},
         "promptfooconfig.yaml: tests: file not found"),
        ({"prompts": ["{{q}}"], "providers": ["openai:gpt-4o-mini"],
          "tests": [{"vars": {"q": "x"}, "assert": [{"type": "factuality", "value": "good"}]}]},
         "promptfooconfig.yaml: tests: no test left to score"),
    ],
    ids=["missing", "yaml", "no-prompts", "no-tests", "provider-form", "unknown-provider", "prompt-file", "tests-file", "nothing-scored"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_naming_file_and_field_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Any, message: str
) -> None:
    path = tmp_path / "promptfooconfig.yaml"
    if config is not None:
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    app = tmp_path / "app"
    code, out, err = _init(capsys, str(path), "--out", str(app))
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not app.exists()


def test_the_imported_rows_score_as_promptfoo_scores_the_suite(
    tmp_path: Path, promptfoo_scores: Callable[[Path, str], dict[str, float]]
) -> None:
    """promptfoo runs the suite with its echo provider (the reply is the `reply` var); migrator scores
    the rows it imported from the same CSV and defaultTest on those replies: the scores agree."""
    from migrator.assertions import score

    cells = [
        ("positive", "positive", "", "", ""),
        ("Positive!", "equals: positive", "icontains: {{word}}", "", "positive"),
        ("I am sorry, it is negative", 'contains-any: negative,"neutral, maybe"', "starts-with: I am", "", ""),
        (
            '{"label": "negative"}',
            "is-json",
            "javascript: JSON.parse(output).label === 'negative'",
            "contains-json",
            "",
        ),
        ("negative", "python: output.strip() in ('positive', 'negative')", "not-contains: positive", "regex: ^neg", ""),
        ("meh", "levenshtein(2): mah", "icontains-all: M,h", "not-starts-with: m", ""),
        ("The answer is 42", "javascript: output.length < 20", r"not-regex: \d{3}", "contains: {{word}}", "42"),
    ]
    with (tmp_path / "tests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["reply", "__expected1", "__expected2", "__expected3", "word", "__description"])
        writer.writerows([*row, f"case {i}"] for i, row in enumerate(cells))
    config = {
        "prompts": ["{{ reply }}"],
        "providers": ["openai:gpt-4o-mini"],
        "defaultTest": {"assert": [{"type": "not-icontains", "value": "sorry", "weight": 2}]},
        "tests": "file://tests.csv",
    }
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="x")
    migrator_says = {f"case {i}": score(row["reply"], row["expected"]) for i, row in enumerate(draft.rows)}

    (tmp_path / "echo.yaml").write_text(yaml.safe_dump({**config, "providers": ["echo"]}))
    assert promptfoo_scores(tmp_path, "echo.yaml") == pytest.approx(migrator_says)
    assert 0 < min(migrator_says.values()) < 1 == max(migrator_says.values())  # passes, failures and partial scores


def test_the_config_names_the_model_and_the_data_so_init_refuses_flags_that_would_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _suite(tmp_path, n=10)
    code, out, err = _init(
        capsys, str(tmp_path / "promptfooconfig.yaml"), "--out", str(tmp_path / "app"), "--model", "openai/gpt-4o"
    )
    assert (code, out) == (2, "")
    assert "--from promptfoo takes the prompt, tests and models from the config: drop --model" in err
    assert not (tmp_path / "app").exists()


def _rubric_suite(root: Path, grader: str | None) -> None:
    """A suite whose every test is scored by one llm-rubric, from defaultTest (as promptfoo users write it)."""
    rubric = "The reply names the review's sentiment, positive or negative, and nothing else."
    default: dict[str, Any] = {"assert": [{"type": "llm-rubric", "value": rubric}]}
    if grader:
        default["options"] = {"provider": grader}
    config = {
        "prompts": ["Label the sentiment of this review: {{review}}"],
        "providers": ["openai:gpt-4o-mini"],
        "defaultTest": default,
        "tests": [{"vars": {"review": r["review"]}} for r in make_sentiment_rows(60, seed=5)],
    }
    (root / "promptfooconfig.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_suite_scored_by_one_llm_rubric_becomes_the_judge_metric_and_runs_to_a_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _rubric_suite(tmp_path, grader="openai:chat:gpt-4.1-mini")
    app = tmp_path / "app"
    code, _, err = _init(capsys, str(tmp_path / "promptfooconfig.yaml"), "--out", str(app), "--target", "fake/fewshot")
    assert code == 0, err
    spec_text = (app / "migration.yaml").read_text()
    spec = yaml.safe_load(spec_text)
    # promptfoo's grading provider judges, on the rubric, with no reference reply (as llm-rubric does)
    assert spec["metric"] == {
        "name": "judge",
        "model": "openai/gpt-4.1-mini",
        "criteria": "The reply names the review's sentiment, positive or negative, and nothing else.",
        "reference": False,
    }
    assert "not translated" not in spec_text and "llm-rubric` is graded by migrator's judge" in spec_text
    assert len(_rows(app)) == 60

    # the user points the judge at a model they trust (here the fake judge) and runs it
    spec["metric"]["model"] = "fake/judge"
    (app / "migration.yaml").write_text(yaml.safe_dump(spec))
    runs = tmp_path / "runs"
    assert cli.main(["run", str(app / "migration.yaml"), "--out", str(runs), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    assert summary["winner"]["model"] == "fake/fewshot" and summary["winner"]["test_score"] > 0
    assert summary["judge"]["reference"] is False and "{reference_reply}" not in summary["judge"]["prompt"]


def test_without_a_grading_provider_the_legacy_model_judges_and_the_spec_says_so(tmp_path: Path) -> None:
    _rubric_suite(tmp_path, grader=None)
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="rubric")
    assert draft.metric["name"] == "judge" and draft.metric["model"] == "openai/gpt-4o-mini"
    assert any("the judge is the legacy model openai/gpt-4o-mini" in n for n in draft.notes)


def test_rubrics_mixed_with_other_assertions_keep_the_assertions_metric_with_a_judge(tmp_path: Path) -> None:
    _rubric_suite(tmp_path, grader="openai:gpt-4.1-mini")
    config = yaml.safe_load((tmp_path / "promptfooconfig.yaml").read_text())
    config["tests"][0]["assert"] = [{"type": "icontains", "value": "positive"}]
    config["tests"][1]["assert"] = [{"type": "not-llm-rubric", "value": "rude"}]
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    draft = from_promptfoo(tmp_path / "promptfooconfig.yaml", name="rubric")
    assert draft.metric["name"] == "assertions" and draft.metric["model"] == "openai/gpt-4.1-mini"
    assert [c["type"] for c in draft.rows[0]["expected"]] == ["llm-rubric", "icontains"]
    # promptfoo's not-llm-rubric is not graded: it is listed, with where it was
    assert any(n.startswith("not translated: `not-llm-rubric`") for n in draft.notes)
