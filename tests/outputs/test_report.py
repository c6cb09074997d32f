"""The HTML report as a reviewer opens it: verdict first, charts inlined, text escaped.

One small migration with the fake provider is run once per module; variants (no
winner, a missing study, a winner that regresses, another prompt in the winner's
config) are the same result with fields swapped, so every report is built from real
search and test-split data.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from migrator.candidates import PromptCandidate
from migrator.llm import LiteLLMClient
from migrator.migration import MigrationResult, prepare, run_migration
from migrator.outputs import summary_dict
from migrator.outputs.report import render_report, write_report
from migrator.prompts import PromptTemplate
from migrator.spec import load_spec
from migrator.stats import paired_test
from migrator.testing import base_spec, make_sentiment_rows, register_fake_provider

SECTION_IDS = ["verdict", "pareto", "history", "importance", "per-model", "diff", "examples", "trials", "candidates"]
XSS = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")


def _spec(name: str, **overrides: Any) -> dict[str, Any]:
    spec = base_spec(
        name=name,
        app={"model": "fake/oracle", "params": {"temperature": 0.7, "max_tokens": 5}},
        targets=["fake/weak", "fake/fewshot", "fake/hot"],
        search_space={"prompt": {"transforms": ["format_line", "user_turn"]}, "demos": {"k": [0, 2, 4]}, "max_retries": 1},
        budget={"trials": 12},
    )
    spec.update(overrides)
    return spec


def _migrate(root: Path, spec: dict[str, Any], rows: int) -> tuple[MigrationResult, dict[str, Any]]:
    register_fake_provider()
    root.mkdir(parents=True)
    # Every review carries markup, so it reaches the demos, the examples and the trials' data.
    data = make_sentiment_rows(rows, rng_words=lambda i: f"visit {i} {XSS} & <b>co</b>")
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (root / "migration.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    client = LiteLLMClient(backoff_s=0.01, max_retries=1)
    result = run_migration(prepare(load_spec(root / "migration.yaml")), client, storage=f"sqlite:///{root}/study.db")
    return result, summary_dict(result, {}, {})


@pytest.fixture(scope="module")
def migration(tmp_path_factory: pytest.TempPathFactory) -> tuple[MigrationResult, dict[str, Any]]:
    return _migrate(tmp_path_factory.mktemp("report") / "app", _spec("fake-sentiment"), rows=80)


@pytest.fixture(scope="module")
def page(migration: tuple[MigrationResult, dict[str, Any]]) -> str:
    return render_report(*migration)


@dataclass
class Section:
    heading: str
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


class _Sections(HTMLParser):
    """The page cut at each <h2 id=...>: its text, table body rows (cell texts) and image sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.order: list[str] = []
        self.sections: dict[str, Section] = {"": Section("")}
        self.current = ""
        self.in_tbody = False
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "h2" and attr.get("id"):
            self.current = str(attr["id"])
            self.order.append(self.current)
            self.sections[self.current] = Section(self.current)
        elif tag == "tbody":
            self.in_tbody = True
        elif tag == "tr" and self.in_tbody:
            self.row = []
        elif tag == "td" and self.row is not None:
            self.cell = []
        elif tag == "img":
            self.sections[self.current].images.append(str(attr.get("src")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.in_tbody = False
        elif tag == "td" and self.row is not None and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.sections[self.current].rows.append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        self.sections[self.current].text += data
        if self.cell is not None:
            self.cell.append(data)


def sections(page: str) -> _Sections:
    parser = _Sections()
    parser.feed(page)
    return parser


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_sections_have_stable_ids_and_the_verdict_comes_first(page: str) -> None:
    parsed = sections(page)
    assert parsed.order == SECTION_IDS
    # Before the verdict there is only the title line and the table of contents.
    assert not parsed.sections[""].images and not parsed.sections[""].rows


def _test_cell(row: dict[str, Any]) -> str:
    """A test score as the verdict table shows it: with its spread when it is a mean over samples."""
    spread = (row.get("samples") or {}).get("test")  # a config above temperature 0
    noise = f" ± {spread['spread']:.3f} over {len(spread['scores'])} samples" if spread else ""
    return f"{row['test_score']:.3f}{noise}"


def test_verdict_shows_the_summary_numbers(migration: tuple[MigrationResult, dict[str, Any]], page: str) -> None:
    _, summary = migration
    verdict = sections(page).sections["verdict"]
    rows = {row[0]: row for row in verdict.rows}
    for role in ("legacy", "baseline", "winner"):
        expected = summary[role]
        row = rows[role]
        assert row[1] == expected["label"]
        assert row[2] == _test_cell(expected)
        assert row[3] == f"[{expected['test_ci'][0]:.3f}, {expected['test_ci'][1]:.3f}]"
        assert row[5] == f"${expected['cost_usd_per_example'] * 1000:#.3g}"
        assert row[6] == f"{expected['latency_p50_s'] * 1000:.0f} ms"
    paired = summary["winner_vs_baseline"]
    sentence = _flat(verdict.text)
    assert (
        f"{paired['mean_diff']:+.3f} (95% CI [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}], p = {paired['p_value']:.3g}); "
        f"{paired['improved']} examples improved, {paired['regressed']} regressed."
    ) in sentence
    # Every config that ties for best on dev (fake/fewshot with 2+ demos, fake/hot at
    # T <= 0.3, any prompt) is right on every test example, so whichever wins beats the baseline.
    assert paired["ci"][0] > 0
    assert "class='callout good'" in page
    for model, row in summary["baselines_by_target"].items():
        assert rows[model][2] == _test_cell(row)
    # The verdict's numbers are on the page before any chart.
    assert page.index(f"{summary['winner']['test_score']:.3f}") < page.index("<img")


def test_all_images_are_inlined_pngs_and_nothing_is_fetched(page: str) -> None:
    parsed = sections(page)
    images = [src for s in parsed.sections.values() for src in s.images]
    assert len(images) >= 3
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    for anchor in ("pareto", "history", "per-model"):
        assert parsed.sections[anchor].images, anchor
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", page, re.IGNORECASE)
    assert not re.search(r"<(script|link|iframe|object)\b|url\(|@import", page, re.IGNORECASE)


def test_dataset_markup_is_shown_as_text(migration: tuple[MigrationResult, dict[str, Any]], page: str) -> None:
    result, summary = migration
    assert XSS not in page and "<b>co</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;" in page
    assert XSS in sections(page).sections["examples"].text
    # The demos table, whether or not this run's winner happens to send demos.
    with_demos = render_report(_crowned(result, "original", demos=2), summary)
    assert XSS not in with_demos and XSS in sections(with_demos).sections["diff"].text


def _changed_ids(winner: Any, baseline: Any) -> tuple[list[str], list[str]]:
    base = {r.example_id: r.score for r in baseline.results}
    worse = [r.example_id for r in winner.results if r.score < base[r.example_id]]
    better = [r.example_id for r in winner.results if r.score > base[r.example_id]]
    return worse, better


def _pitted(result: MigrationResult, winner: Any, baseline: Any) -> MigrationResult:
    """The same migration with another pair in the winner and baseline roles."""
    paired = paired_test([r.score for r in winner.results], [r.score for r in baseline.results], seed=result.spec.seed)
    return replace(result, verdict=replace(result.verdict, winner=winner, baseline=baseline, paired=paired))


@pytest.mark.parametrize("pair", ["winner-vs-baseline", "weak-vs-baseline", "hot-vs-winner"])
def test_examples_list_regressions_first_consistent_with_the_paired_counts(
    migration: tuple[MigrationResult, dict[str, Any]], page: str, pair: str
) -> None:
    result, summary = migration
    if pair != "winner-vs-baseline":
        challenger, reference = pair.split("-vs-")
        by_target = result.verdict.baselines_by_target
        winner = by_target[f"fake/{challenger}"]
        baseline = result.verdict.winner if reference == "winner" else result.verdict.baseline
        result = _pitted(result, winner, baseline)
        summary = summary_dict(result, {}, {})
        page = render_report(result, summary)
    assert result.verdict.winner is not None and result.verdict.baseline is not None
    worse, better = _changed_ids(result.verdict.winner, result.verdict.baseline)
    paired = summary["winner_vs_baseline"]
    assert (len(worse), len(better)) == (paired["regressed"], paired["improved"])

    examples = sections(page).sections["examples"]
    text = _flat(examples.text)
    assert f"{len(worse)} regressed, {len(better)} improved" in text
    assert text.index(f"Regressed ({len(worse)})") < text.index(f"Improved ({len(better)})")
    listed = [row[0] for row in examples.rows]
    n_worse = min(len(worse), 20)
    listed_worse, listed_better = listed[:n_worse], listed[n_worse:]
    assert len(listed_better) == min(len(better), 20)
    assert set(listed_worse) <= set(worse) and set(listed_better) <= set(better)
    if len(worse) > 20:
        assert f"Showing 20 of {len(worse)}" in text
    test = {ex.id: ex for ex in result.prepared.splits.test}
    outputs = {r.example_id: r.output for r in result.verdict.winner.results}
    for row in examples.rows:
        assert row[1] == _flat(test[row[0]].inputs["review"])
        assert row[2] == test[row[0]].expected
        assert row[4].startswith(outputs[row[0]])
    if pair == "weak-vs-baseline":
        assert worse and better  # two coin-flipping models disagree both ways
    if pair == "hot-vs-winner":
        # fake/hot at temperature 0.7 gets every test example wrong; every config that ties for best on dev gets them all right
        assert len(worse) > 20 and not better


def test_the_biggest_regressions_come_first(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, _ = migration
    assert result.verdict.winner is not None
    # Partial credit, as a graded metric gives: drops of 1, 0.75, 0.5 and 0.25 against a perfect reference.
    perfect = replace(result.verdict.winner, results=tuple(replace(r, score=1.0) for r in result.verdict.winner.results))
    graded = tuple(replace(r, score=(i % 5) / 4) for i, r in enumerate(perfect.results))
    pitted = _pitted(result, replace(perfect, results=graded), perfect)
    rows = sections(render_report(pitted, summary_dict(pitted, {}, {}))).sections["examples"].rows
    drops = [1 - float(row[4].rsplit("score ", 1)[1]) for row in rows]
    assert len(rows) == min(20, sum(r.score < 1 for r in graded)) and len(set(drops)) == 4
    assert drops == sorted(drops, reverse=True)


class _Diff(HTMLParser):
    """The prompt diff's messages, each a list of rows (is a role row, add/del/ctx, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.messages: list[list[tuple[bool, str, str]]] = []
        self.row: tuple[bool, str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "div":
            return
        classes = (dict(attrs).get("class") or "").split()
        if "msg" in classes:
            self.messages.append([])
        elif kind := next((c for c in classes if c in ("add", "del", "ctx")), None):
            self.row, self.text = ("role" in classes, kind), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.row is not None:
            if not self.messages:  # rows outside any message box
                self.messages.append([])
            self.messages[-1].append((*self.row, "".join(self.text)))
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.row is not None:
            self.text.append(data)


Message = tuple[str, str]


def _diff_of(page: str) -> list[list[tuple[bool, str, str]]]:
    body = page[page.index("<h2 id='diff'>"):page.index("<h2 id='examples'>")]
    parser = _Diff()
    parser.feed(body[body.index("<div class='diff'>"):])
    return parser.messages


def _side(diff: list[list[tuple[bool, str, str]]], side: str) -> list[Message]:
    """The prompt one side of the diff reads as: its own rows and the shared (ctx) ones."""
    messages: list[tuple[str, list[str]]] = []
    for rows in diff:
        for is_role, kind, text in rows:
            if kind not in (side, "ctx"):
                continue
            if is_role:
                assert text.startswith("[") and text.endswith("]"), text
                messages.append((text[1:-1], []))
            else:
                assert messages, f"line {text!r} comes before any role"
                messages[-1][1].append(text)
    return [(role, "\n".join(lines)) for role, lines in messages]


def _assert_shows_exactly(page: str, legacy: PromptTemplate, winner: PromptTemplate) -> None:
    """The diff section reads as the legacy prompt on one side and the winner's on the other,
    marks something changed exactly when they differ, and shows a message both share unchanged."""
    changed = legacy.messages != winner.messages
    text = _flat(sections(page).sections["diff"].text)
    assert ("The winner keeps the legacy prompt unchanged." in text) == (not changed)
    assert ("The winner changes the legacy prompt:" in text) == changed
    diff = _diff_of(page)
    assert _side(diff, "del") == list(legacy.messages)
    assert _side(diff, "add") == list(winner.messages)
    assert any(kind != "ctx" for rows in diff for _, kind, _ in rows) == changed
    untouched = [_side([rows], "ctx") for rows in diff if all(kind == "ctx" for _, kind, _ in rows)]
    for message in set(legacy.messages) & set(winner.messages):
        assert [message] in untouched, message


def _crowned(result: MigrationResult, prompt: str | PromptCandidate, demos: int | None = None) -> MigrationResult:
    """The same migration with another prompt (and demo count) in the winner's config."""
    assert result.verdict.winner is not None
    prompts = dict(result.prompts)
    if isinstance(prompt, PromptCandidate):
        prompts[prompt.id] = prompt
    prompt_id = prompt.id if isinstance(prompt, PromptCandidate) else prompt
    config = replace(result.verdict.winner.config, prompt_id=prompt_id)
    if demos is not None:
        config = replace(config, demos=demos, demo_strategy="random" if demos else "none")
    return replace(result, prompts=prompts, verdict=replace(result.verdict, winner=replace(result.verdict.winner, config=config)))


def test_winner_prompt_is_diffed_against_the_legacy_prompt(migration: tuple[MigrationResult, dict[str, Any]], page: str) -> None:
    result, summary = migration
    assert result.verdict.winner is not None
    config = result.verdict.winner.config
    _assert_shows_exactly(page, result.prepared.template, result.prompts[config.prompt_id].template)
    diff = sections(page).sections["diff"]
    params = {row[0]: row[1:] for row in diff.rows if len(row) == 3}
    for name, value in summary["winner"]["params"].items():
        assert params[name][1].startswith(f"{value:.6g}" if isinstance(value, float) else str(value))
    assert params["seed"] == ["–", f"{summary['winner']['params']['seed']} (request seed, added by migrator)"]
    demos = summary["winner"]["demos"]
    assert (f"{demos} per request" if demos else "None: the winner sends no few-shot examples.") in _flat(diff.text)


@pytest.mark.parametrize("prompt_id", ["original", "format_line", "user_turn"])
@pytest.mark.parametrize("demos", [0, 2])
def test_the_diff_is_exact_whichever_candidate_wins(
    migration: tuple[MigrationResult, dict[str, Any]], prompt_id: str, demos: int
) -> None:
    result, summary = migration
    page = render_report(_crowned(result, prompt_id, demos), summary)
    _assert_shows_exactly(page, result.prepared.template, result.prompts[prompt_id].template)
    text = _flat(sections(page).sections["diff"].text)
    assert (f"{demos} per request" if demos else "None: the winner sends no few-shot examples.") in text


def test_a_change_of_role_alone_is_shown(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, summary = migration
    # user_turn moves the system instruction into a user turn of its own, text unchanged.
    legacy, moved = result.prepared.template, result.prompts["user_turn"].template
    assert [c for _, c in legacy.messages] == [c for _, c in moved.messages] and legacy.messages != moved.messages
    page = render_report(_crowned(result, "user_turn"), summary)
    text = _flat(sections(page).sections["diff"].text)
    assert "The winner changes the legacy prompt: message 1 changes role from system to user." in text
    _assert_shows_exactly(page, legacy, moved)
    instruction, review = _diff_of(page)
    assert instruction == [
        (True, "del", "[system]"), (True, "add", "[user]"), (False, "ctx", "Classify the sentiment of the review."),
    ]
    assert review == [(True, "ctx", "[user]"), (False, "ctx", "Review: {{ review }}")]


def test_added_removed_and_merged_turns_are_shown(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, summary = migration
    legacy = result.prepared.template
    # The legacy text() of these prompts is the same, so only a per-message diff tells them apart.
    merged = PromptTemplate((("system", "Classify the sentiment of the review.\n\n[user]\nReview: {{ review }}"),))
    assert merged.text() == legacy.text()
    turns = PromptTemplate((*legacy.messages, ("assistant", "Label:"), ("user", "Only the label.")))
    expected = {
        merged: "the text of message 1 (system) changes; legacy message 2 (user) is removed.",
        turns: "message 3 (assistant) is added; message 4 (user) is added.",
    }
    for template, sentence in expected.items():
        page = render_report(_crowned(result, PromptCandidate("rewrite-0", template, {"kind": "rewrite"})), summary)
        _assert_shows_exactly(page, legacy, template)
        assert f"The winner changes the legacy prompt: {sentence}" in _flat(sections(page).sections["diff"].text)


def test_prompt_text_in_the_diff_is_escaped(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, summary = migration
    legacy = PromptTemplate((("system", "Tags like <b>x</b> & {{ '{{' }}"), ("user", "Review: {{ review }}")))
    winner = PromptTemplate((("user", "Tags like <b>x</b> & {{ '{{' }}"), ("user", "Review: {{ review }} </div><i>&amp;")))
    crowned = _crowned(result, PromptCandidate("rewrite-0", winner, {"kind": "rewrite"}))
    page = render_report(replace(crowned, prepared=replace(crowned.prepared, template=legacy)), summary)
    _assert_shows_exactly(page, legacy, winner)  # the parser reads back the literal text
    body = page[page.index("<h2 id='diff'>"):page.index("<h2 id='examples'>")]
    assert "<b>x</b>" not in body and "<i>" not in body
    assert "Tags like &lt;b&gt;x&lt;/b&gt; &amp; {{ &#x27;{{&#x27; }}" in body
    assert "Review: {{ review }} &lt;/div&gt;&lt;i&gt;&amp;amp;" in body


def test_trials_and_candidates_are_all_listed(migration: tuple[MigrationResult, dict[str, Any]], page: str) -> None:
    result, summary = migration
    parsed = sections(page)
    trials = parsed.sections["trials"].rows
    assert [int(r[0]) for r in trials] == sorted(o.number for o in result.search.trials)
    states = {int(r[0]): r[2] for r in trials}
    assert states == {o.number: o.state for o in result.search.trials}
    assert {int(r[0]) for r in trials if "winner" in r[1]} == {summary["winner"]["trial"]}
    candidates = _flat(parsed.sections["candidates"].text)
    for cand in summary["candidates"]:
        assert cand["prompt_id"] in candidates and _flat(cand["text"]) in candidates
    per_model = {r[0]: r for r in parsed.sections["per-model"].rows}
    for model, row in summary["baselines_by_target"].items():
        assert per_model[model][5] == f"{row['test_score']:.3f}"
    pareto = [int(r[0].lstrip("#")) for r in parsed.sections["pareto"].rows]
    assert pareto == [p["trial"] for p in summary["pareto"]]


def test_no_winner_still_renders_and_says_why(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, _ = migration
    verdict = replace(result.verdict, winner=None, finalists=(), paired=None, legacy=None, legacy_note="legacy model fake/oracle is unreachable")
    empty = replace(result, verdict=verdict)
    summary = summary_dict(empty, {}, {})
    parsed = sections(render_report(empty, summary))
    assert parsed.order == SECTION_IDS
    verdict = _flat(parsed.sections["verdict"].text)
    assert "No winner" in verdict and "legacy model fake/oracle is unreachable" in verdict
    assert "Needs both a winner and a baseline" in parsed.sections["examples"].text


def test_a_missing_study_leaves_a_note_instead_of_charts(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    result, summary = migration
    gone = replace(result, search=replace(result.search, study_name="no-such-study"))
    parsed = sections(render_report(gone, summary))
    for anchor in ("history", "importance"):
        assert "could not be loaded" in parsed.sections[anchor].text and not parsed.sections[anchor].images


def test_importance_with_one_complete_trial_is_a_note(tmp_path: Path) -> None:
    # Two objectives as well: the history then plots the first one (dev score).
    spec = _spec("one-trial", targets=["fake/fewshot"], budget={"trials": 1}, search_space={"demos": {"k": [0]}}, objective=["quality", "cost"])
    result, summary = _migrate(tmp_path / "app", spec, rows=20)
    parsed = sections(render_report(result, summary))
    assert parsed.sections["history"].images
    assert not parsed.sections["importance"].images
    assert "needs at least 2 complete trials; this study has 1" in parsed.sections["importance"].text


def test_the_latency_chart_marks_the_score_latency_front_not_the_cost_one() -> None:
    from migrator.evaluate import Config, Summary
    from migrator.outputs.report._charts import _latency_front
    from migrator.search import SearchResult, TrialOutcome, pareto_front

    def trial(number: int, score: float, cost: float, latency: float, state: str = "complete") -> TrialOutcome:
        config = Config("fake/weak", "original", number, "random", (), "chat")
        return TrialOutcome(number, state, config, Summary(score, 10, 0, cost * 10, cost, latency, 0, 0))

    trials = [
        trial(0, 0.9, 0.010, 2.0),
        trial(1, 0.8, 0.001, 0.5),
        trial(2, 0.7, 0.0001, 1.0),
        trial(3, 0.9, 0.020, 1.5),
        trial(4, 0.95, 0.0, 0.1, state="pruned"),  # only complete trials are on a front
    ]
    # fastest first: #2 is slower than #1 and scores less; #0 is slower than #3 at the same score
    assert [t.number for t in _latency_front(trials)] == [1, 3]
    assert [t.number for t in pareto_front(SearchResult(tuple(trials), None, "", ""))] == [2, 1, 0]


def test_rendering_leaves_matplotlib_settings_alone(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    import matplotlib

    before = dict(matplotlib.rcParams)
    render_report(*migration)
    assert dict(matplotlib.rcParams) == before  # optuna's plots switch to ggplot style


def test_importing_the_module_loads_no_plotting_library() -> None:
    code = "import sys, migrator.outputs.report; print(sorted(m for m in ('matplotlib', 'optuna', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_write_report_writes_the_rendered_page(migration: tuple[MigrationResult, dict[str, Any]], page: str, tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.html"
    write_report(path, *migration)
    written = path.read_text(encoding="utf-8")
    assert written.startswith("<!doctype html>") and sections(written).order == SECTION_IDS
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_renders_in_headless_chromium(migration: tuple[MigrationResult, dict[str, Any]], tmp_path: Path) -> None:
    result, summary = migration
    path = tmp_path / "report.html"
    write_report(path, result, summary)
    dom = _chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile").stdout
    parsed = sections(dom)
    assert parsed.order == SECTION_IDS
    assert f"{summary['winner_vs_baseline']['mean_diff']:+.3f}" in parsed.sections["verdict"].text
    assert sum(len(s.images) for s in parsed.sections.values()) >= 3
    assert "<script" not in dom.lower()

    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", path.as_uri(), profile=tmp_path / "profile")
    png = shot.read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (1280, 2400)
    assert len(png) > 100_000  # a blank page of that size compresses to a few kB


def test_scores_sampled_without_a_request_seed_are_called_samples(migration: tuple[MigrationResult, dict[str, Any]]) -> None:
    from dataclasses import replace

    result, _ = migration
    # every fake model takes a seed; say one did not, the way Anthropic's API does not
    unseeded = "fake/hot"

    def without_seed(outcome: Any) -> Any:
        if outcome.config.model != unseeded:
            return outcome
        params = tuple((k, v) for k, v in outcome.config.params if k != "seed")
        return replace(outcome, config=replace(outcome.config, params=params))

    trials = tuple(without_seed(o) for o in result.search.trials)
    assert any(o.config.model == unseeded and dict(o.config.params).get("temperature", 0) > 0 for o in trials)
    seeded_summary = summary_dict(result, {}, {})
    assert seeded_summary["sampled_without_seed"] == []
    assert "take no request seed" not in render_report(result, seeded_summary)
    changed = replace(result, search=replace(result.search, trials=trials))
    summary = summary_dict(changed, {}, {})
    assert summary["sampled_without_seed"] == [unseeded]
    assert f"{unseeded} take no request seed: their scores at a temperature above 0 are one sample each" in render_report(changed, summary)
