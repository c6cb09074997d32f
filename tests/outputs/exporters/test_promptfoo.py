"""The promptfoo export, run by promptfoo itself against a loopback server.

`migrator export --format promptfoo` must give a config that promptfoo runs as it is and
that passes exactly the test examples migrator scored right: same requests, same metric.
The winner is the fake `fault-shaky` model (right 70% of the time with demos), so there
are passes and failures to agree on. promptfoo comes from npm: `.ci/run` installs the
pinned version (see `PROMPTFOO` below); elsewhere the test is skipped unless it is on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli
from migrator.llm import LiteLLMClient
from migrator.outputs import evaluate_lockfile, load_lockfile
from migrator.testing import KEY_ENV, TEMPLATED, FaultPlan, LoopbackServer, awkward_rows, server_spec

ROOT = Path(__file__).resolve().parents[3]
# installed by .ci/run (npm install --prefix .ci/node promptfoo@<pinned>)
PROMPTFOO = os.environ.get("MIGRATOR_PROMPTFOO") or shutil.which("promptfoo") or str(ROOT / ".ci/node/node_modules/.bin/promptfoo")
KEY = "sk-test-promptfoo-0123456789abcdef"
# reviews that look like templates: promptfoo must send them as text, not render them


def _promptfoo() -> str:
    if Path(PROMPTFOO).is_file():
        return PROMPTFOO
    if os.environ.get("CI"):
        pytest.fail(f"promptfoo is not installed at {PROMPTFOO}; .ci/run installs it")
    pytest.skip("promptfoo is not installed (npm install promptfoo; or set MIGRATOR_PROMPTFOO)")




@pytest.mark.parametrize(
    ("mode", "strategy", "awkward", "shared"),
    [
        ("chat", "stratified", False, True),  # one template, fixed demos baked in
        ("chat", "stratified", True, False),  # inputs promptfoo would change: each test carries its messages
        ("chat", "knn", False, False),  # demos picked per input
        ("completion", "stratified", False, True),  # one text template
        ("completion", "knn", True, False),
    ],
)
def test_promptfoo_passes_exactly_the_examples_migrator_scored_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, strategy: str, awkward: bool, shared: bool
) -> None:
    promptfoo = _promptfoo()
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in awkward_rows(awkward)))
    monkeypatch.setenv(KEY_ENV, KEY)
    with LoopbackServer(FaultPlan()) as server:
        target = {"model": "openai/fault-shaky", "api_base": server.api_base, "api_key_env": KEY_ENV, "mode": mode}
        spec = server_spec(
            server.api_base,
            str(data),
            targets=[target],
            search_space={"temperature": None, "demos": {"k": [3], "strategies": [strategy]}, "pruner": "none"},
        )
        spec["app"]["params"] = {"temperature": 0.0, "max_tokens": 5}
        (tmp_path / "migration.yaml").write_text(yaml.safe_dump(spec))
        out = tmp_path / "out"
        assert cli.main(["run", str(tmp_path / "migration.yaml"), "--out", str(out), "--quiet", "--no-tracking"]) == 0
        lock = load_lockfile(out / "winner.yaml")
        assert (lock.config.demos, lock.config.demo_strategy, lock.config.mode) == (3, strategy, mode)
        config = tmp_path / "promptfooconfig.yaml"
        assert cli.main(["export", str(out), "--format", "promptfoo", "-o", str(config)]) == 0
        text = config.read_text()
        assert KEY not in text and ("_messages" in text or "_prompt" in text) != shared

        before = len(server.attempts)
        migrator_says = {
            r.example_id: r.score == 1.0
            for r in evaluate_lockfile(lock, LiteLLMClient(max_retries=0), "test").results
        }
        migrator_requests = server.attempts[before:]
        env = {
            **os.environ,
            "PROMPTFOO_DISABLE_TELEMETRY": "1",
            "PROMPTFOO_DISABLE_UPDATE": "1",
            "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home"),
        }
        env.pop("OPENAI_API_KEY", None)  # the config names KEY_ENV; promptfoo must read that
        # as the config's first lines ask when test inputs contain {{ env.HOME }}
        assert ("run with PROMPTFOO_DISABLE_TEMPLATE_ENV_VARS=true" in text.split("\nprompts:")[0]) == awkward
        if awkward:
            env["PROMPTFOO_DISABLE_TEMPLATE_ENV_VARS"] = "true"
        result = tmp_path / "promptfoo.json"
        proc = subprocess.run(
            [promptfoo, "eval", "-c", str(config), "--no-cache", "--no-progress-bar", "-o", str(result)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        promptfoo_requests = server.attempts[before + len(migrator_requests) :]
    assert result.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(result.read_text())["results"]
    rows = report["results"]
    assert report["stats"]["errors"] == 0 and {r["failureReason"] for r in rows} <= {0, 1}  # 1: an assertion failed
    promptfoo_says = {r["testCase"]["description"]: bool(r["success"]) for r in rows}
    assert promptfoo_says == migrator_says
    assert 0 < sum(migrator_says.values()) < len(migrator_says)  # passes and failures both
    # the request bodies migrator sends, with the key from the variable it names
    assert _sent(promptfoo_requests, mode) == _sent(migrator_requests, mode)
    assert {a.authorization for a in promptfoo_requests} == {f"Bearer {KEY}"}
    if awkward:  # template-like reviews went out as text, never rendered
        shown = [t for t in TEMPLATED if any(t in str(ex.inputs["review"]) for ex in lock.splits.test)]
        assert shown and all(t in "".join(_sent(promptfoo_requests, mode)) for t in shown)


# promptfoo's completion provider always sends these; left out, they mean the same
NEUTRAL_COMPLETION_DEFAULTS = {"best_of": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0, "stop": []}


def _sent(attempts: list[Any], mode: str) -> list[str]:
    """Each request body as the server received it (the key travels in a header), in a stable order."""
    bodies = [dict(a.body) for a in attempts]
    for body in bodies:
        for key, neutral in NEUTRAL_COMPLETION_DEFAULTS.items():
            if mode == "completion" and body.get(key) == neutral:
                del body[key]
    # JSON numbers compare as numbers: JavaScript writes the temperature 0.0 as 0
    return sorted(json.dumps(b, sort_keys=True, ensure_ascii=False, default=str) for b in map(_floats, bodies))


def _floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


# (metric spec, [(model output, expected value), ...]): replies as models write them, and
# the corners where JavaScript and Python differ (case folding, Unicode digits and
# whitespace, str() of non-strings, what float() accepts)
CASES: list[tuple[dict[str, Any], list[tuple[str, Any]]]] = [
    (
        {"name": "label", "labels": ["positive", "negative", "not sure", "Straße"]},
        [
            ("positive", "positive"),
            ("Negative.", "negative"),
            ("**POSITIVE**", "positive"),
            ("The sentiment is negative, not positive", "negative"),
            ("The sentiment is negative, not positive", "positive"),
            ("positively glowing", "positive"),
            ("\n\n  negative\nbecause positive words", "negative"),
            ("```\npositive\n```", "positive"),
            ("not sure", "not sure"),
            ("I am not sure", "not sure"),
            ("", "positive"),
            ("Positiv", "positive"),
            ("ＰＯＳＩＴＩＶＥ", "positive"),
            ("STRASSE", "Straße"),
            ("positive\x85", "positive"),
            ("\ufeffpositive", "positive"),
        ],
    ),
    (
        {"name": "numeric", "tolerance": 0.01},
        [
            ("42", 42),
            ("The answer is 1,234.5 apples", 1234.5),
            ("−7", -7),
            ("about 99.5", 100),
            ("3.14159", 3.14),
            ("no idea", 5),
            ("```\n12\n```", 12),
            (".5", 0.5),
            ("10 then 20", 20),
            ("４２", 42),
            ("The total is ٤٢ yen", 42),
            ("0", ""),
            ("0", None),
            ("16", "0x10"),
            ("1000", "1_000"),
            ("12", "12"),
        ],
    ),
    (
        {"name": "exact"},
        [
            ("Paris", "paris"),
            ("  Paris. ", "Paris"),
            ("Paris, France", "Paris"),
            ("```\nParis\n```", "Paris"),
            ("GROSS", "groß"),
            ("3.0", 3.0),
            ("None", None),
            ("True", True),
            ("12345678901234567890", 12345678901234567890),
            ("Paris\x85", "Paris"),
            ("Paris\ufeff", "Paris"),
        ],
    ),
    (
        {"name": "f1"},
        [
            ("the cat sat", "the cat sat"),
            ("a cat", "the cat sat"),
            ("", ""),
            ("dog", "the cat"),
            ("cat cat", "cat"),
            ("3.0", 3.0),
            ("die STRASSE", "die Straße"),
        ],
    ),
    (
        {"name": "json_fields", "fields": ["total", "vendor", "date"], "tolerance": 0.001},
        [
            ('{"total": 12.5, "vendor": "ACME", "date": null}', {"total": 12.5, "vendor": "acme", "date": None}),
            ('Here: {"total": "1,250", "vendor": "Acme Inc"} done', {"total": 1250, "vendor": "ACME", "date": None}),
            ('```json\n{"total": 3, "vendor": "x", "date": "2024-01-01"}\n```', {"total": 3.0, "vendor": "X", "date": "2024-01-01"}),
            ('{"total": 3, "note": "a } brace", "vendor": "y"}', {"total": 3, "vendor": "y", "date": None}),
            ("not json", {"total": 1, "vendor": "a", "date": None}),
            ('{"total": true, "vendor": "a", "date": ""}', {"total": 1, "vendor": "a", "date": None}),
            ('{"total": "４２", "vendor": "GROSS", "date": "none"}', {"total": 42, "vendor": "groß", "date": None}),
        ],
    ),
]


def _echo_eval(tmp_path: Path, assertion: dict[str, Any], cases: list[tuple[str, Any]]) -> dict[str, float]:
    """promptfoo's score for each (reply, expected), the reply played back by its `echo` provider."""
    from migrator.outputs.exporters._promptfoo import _expected, _QuotedDumper

    config = {
        "prompts": ["{{ _prompt.text }}"],
        "providers": ["echo"],
        "defaultTest": {"assert": [assertion]},
        "tests": [
            {"description": f"c{i}", "vars": {"_prompt": {"text": o}, "_expected": _expected(e)}}
            for i, (o, e) in enumerate(cases)
        ],
    }
    # written as the export writes its config (every string quoted)
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.dump(config, Dumper=_QuotedDumper, allow_unicode=True))
    env = {
        **os.environ,
        "PROMPTFOO_PYTHON": sys.executable,
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home"),
    }
    proc = subprocess.run(
        [_promptfoo(), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-progress-bar", "-o", "out.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (tmp_path / "out.json").exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((tmp_path / "out.json").read_text())["results"]["results"]
    assert all(r["response"]["output"] == cases[int(r["testCase"]["description"][1:])][0] for r in rows)
    return {r["testCase"]["description"]: float(r["score"]) for r in rows}


@pytest.mark.parametrize(("spec", "cases"), CASES, ids=[c[0]["name"] for c in CASES])
def test_the_exported_assertion_scores_as_migrator_does(
    tmp_path: Path, spec: dict[str, Any], cases: list[tuple[str, Any]]
) -> None:
    from migrator.metrics import build_metric
    from migrator.outputs.exporters._promptfoo import _assertion
    from migrator.spec import MetricSpec

    metric = build_metric(MetricSpec(**spec))
    want = {f"c{i}": metric.score(o, e) for i, (o, e) in enumerate(cases)}
    assert len(set(want.values())) > 1  # the cases are not all one verdict
    assert _echo_eval(tmp_path, _assertion(MetricSpec(**spec)), cases) == pytest.approx(want)


def test_a_python_metric_runs_in_promptfoo_as_in_migrator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.metrics import build_metric
    from migrator.outputs.exporters._promptfoo import _assertion
    from migrator.spec import MetricSpec

    # the metric module lives in the project directory, where migrator ran and promptfoo runs
    (tmp_path / "house_metric.py").write_text(
        "def score(output, expected):\n"
        "    return 1.0 if output == str(expected) else 0.5 if str(expected) in output else 0.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "python:house_metric:score"}
    metric = build_metric(MetricSpec(**spec))
    cases = [("positive", "positive"), ("a positive review", "positive"), ("negative", "positive"), ("3.0", 3.0)]
    want = {f"c{i}": metric.score(o, e) for i, (o, e) in enumerate(cases)}
    assert set(want.values()) == {0.0, 0.5, 1.0}
    assert _echo_eval(tmp_path, _assertion(MetricSpec(**spec)), cases) == want


def test_an_imported_suites_own_assertions_go_back_and_promptfoo_scores_them_as_migrator_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `assertions` metric (a promptfoo suite `migrator init` imported): each test carries its own checks."""
    promptfoo = _promptfoo()
    rows = awkward_rows(False)
    for i, row in enumerate(rows):
        label = row.pop("label")
        row["checks"] = [
            [{"type": "equals", "value": label}],
            [{"type": "icontains", "value": label}, {"type": "not-contains", "value": "sorry", "weight": 2}],
            [{"type": "javascript", "value": f"output.toLowerCase().includes('{label}')"}],
            [{"type": "python", "value": f"'{label}' in output and context['vars']['review'] != ''", "vars": {"review": row["review"]}}],
        ][i % 4]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(KEY_ENV, KEY)
    with LoopbackServer(FaultPlan()) as server:
        target = {"model": "openai/fault-shaky", "api_base": server.api_base, "api_key_env": KEY_ENV}
        spec = server_spec(
            server.api_base, str(data), targets=[target], search_space={"demos": {"k": [3], "strategies": ["stratified"]}}
        )
        spec["dataset"]["expected_field"], spec["metric"] = "checks", {"name": "assertions"}
        (tmp_path / "migration.yaml").write_text(yaml.safe_dump(spec))
        out = tmp_path / "out"
        assert cli.main(["run", str(tmp_path / "migration.yaml"), "--out", str(out), "--quiet", "--no-tracking"]) == 0
        lock = load_lockfile(out / "winner.yaml")
        # the demos are rows with an answer: only the `equals` ones have one
        assert lock.config.demos == 3 and {d.answer for d in lock.fixed_demos} <= {"positive", "negative"}
        config = tmp_path / "promptfooconfig.yaml"
        assert cli.main(["export", str(out), "--format", "promptfoo", "-o", str(config)]) == 0
        migrator_says = {r.example_id: r.score for r in evaluate_lockfile(lock, LiteLLMClient(max_retries=0), "test").results}
        env = {**os.environ, "PROMPTFOO_PYTHON": sys.executable, "PROMPTFOO_DISABLE_TELEMETRY": "1",
               "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home")}  # fmt: skip
        env.pop("OPENAI_API_KEY", None)
        result = tmp_path / "promptfoo.json"
        proc = subprocess.run(
            [promptfoo, "eval", "-c", str(config), "--no-cache", "--no-progress-bar", "-o", str(result)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert result.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    exported = yaml.safe_load(config.read_text())
    assert "defaultTest" not in exported and all(t["assert"] for t in exported["tests"])
    report = json.loads(result.read_text())["results"]
    assert report["stats"]["errors"] == 0
    promptfoo_says = {r["testCase"]["description"]: float(r["score"]) for r in report["results"]}
    assert promptfoo_says == pytest.approx(migrator_says)
    assert 0 < sum(s == 1.0 for s in migrator_says.values()) < len(migrator_says)  # passes and failures both
