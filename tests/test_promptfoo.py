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
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_server import KEY_ENV, FaultPlan, FaultServer, server_spec

from migrator import cli
from migrator.llm import LiteLLMClient
from migrator.pipeline import evaluate_lockfile, load_lockfile
from migrator.testing import make_sentiment_rows

ROOT = Path(__file__).resolve().parent.parent
# installed by .ci/run (npm install --prefix .ci/node promptfoo@<pinned>)
PROMPTFOO = os.environ.get("MIGRATOR_PROMPTFOO") or shutil.which("promptfoo") or str(ROOT / ".ci/node/node_modules/.bin/promptfoo")
KEY = "sk-test-promptfoo-0123456789abcdef"
# reviews that look like templates: promptfoo must send them as text, not render them
TEMPLATED = ("{{ env.HOME }}", "{% if true %}yes{% endif %}")


def _promptfoo() -> str:
    if Path(PROMPTFOO).is_file():
        return PROMPTFOO
    if os.environ.get("CI"):
        pytest.fail(f"promptfoo is not installed at {PROMPTFOO}; .ci/run installs it")
    pytest.skip("promptfoo is not installed (npm install promptfoo; or set MIGRATOR_PROMPTFOO)")


def _rows(templated: bool) -> list[dict[str, str]]:
    return make_sentiment_rows(70, rng_words=lambda i: TEMPLATED[i % 2] if templated and i % 5 == 0 else f"visit {i}")


@pytest.mark.parametrize(
    ("mode", "strategy", "templated", "shared"),
    [
        ("chat", "stratified", True, True),  # one template, fixed demos baked in
        ("chat", "knn", True, False),  # demos picked per input: each test carries its messages
        ("completion", "stratified", False, True),  # one text template
        ("completion", "stratified", True, False),  # promptfoo would render inputs in a text template
    ],
)
def test_promptfoo_passes_exactly_the_examples_migrator_scored_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, strategy: str, templated: bool, shared: bool
) -> None:
    promptfoo = _promptfoo()
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(templated)))
    monkeypatch.setenv(KEY_ENV, KEY)
    with FaultServer(FaultPlan()) as server:
        target = {"model": "openai/fault-shaky", "api_base": server.api_base, "api_key_env": KEY_ENV, "mode": mode}
        spec = server_spec(
            server.api_base,
            str(data),
            targets=[target],
            search_space={"temperature": None, "demos": {"k": [3], "strategies": [strategy]}, "pruner": "none"},
        )
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
        assert ("run with PROMPTFOO_DISABLE_TEMPLATE_ENV_VARS=true" in text.split("\nprompts:")[0]) == templated
        if templated:
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
    # byte for byte the requests migrator sends, with the key from the variable it names
    assert _sent(promptfoo_requests) == _sent(migrator_requests)
    assert {a.authorization for a in promptfoo_requests} == {f"Bearer {KEY}"}
    if templated:  # template-like reviews went out as text, never rendered
        assert all(t in json.dumps(_sent(promptfoo_requests), ensure_ascii=False) for t in TEMPLATED)


def _sent(attempts: list[Any]) -> list[tuple[str, str]]:
    """What each request asked, whichever endpoint it went to, in a stable order."""
    return sorted((json.dumps(a.body.get("messages"), ensure_ascii=False), str(a.body.get("prompt"))) for a in attempts)


# (metric spec, [(model output, expected value), ...]): replies as models write them
CASES: list[tuple[dict[str, Any], list[tuple[str, Any]]]] = [
    (
        {"name": "label", "labels": ["positive", "negative", "not sure"]},
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
        ],
    ),
    (
        {"name": "exact"},
        [("Paris", "paris"), ("  Paris. ", "Paris"), ("Paris, France", "Paris"), ("```\nParis\n```", "Paris")],
    ),
    (
        {"name": "f1"},
        [("the cat sat", "the cat sat"), ("a cat", "the cat sat"), ("", ""), ("dog", "the cat"), ("cat cat", "cat")],
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
        ],
    ),
]


@pytest.mark.parametrize(("spec", "cases"), CASES, ids=[c[0]["name"] for c in CASES])
def test_the_exported_assertion_scores_as_migrator_does(spec: dict[str, Any], cases: list[tuple[str, Any]]) -> None:
    from migrator.exporters import _assertion
    from migrator.metrics import build_metric
    from migrator.spec import MetricSpec

    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed; .ci/run needs it for promptfoo")
        pytest.skip("node is not installed")
    assertion = _assertion(spec)
    assert assertion["type"] == "javascript" and not any(o in assertion["value"] for o in ("{{", "{%", "{#"))
    # promptfoo runs a multi-line value as the body of function(output, context)
    script = (
        "const body = " + json.dumps(assertion["value"]) + ";\n"
        "const f = new Function('output', 'context', body);\n"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(cases.map(([o, e]) => Number(f(o, {vars: {_expected: e}})))));\n"
    )
    proc = subprocess.run([node, "-e", script], input=json.dumps(cases), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    metric = build_metric(MetricSpec(**spec))
    assert json.loads(proc.stdout) == pytest.approx([metric.score(o, e) for o, e in cases])
    # and the cases are not all the same verdict
    assert len({metric.score(o, e) for o, e in cases}) > 1


def test_a_python_metric_runs_in_promptfoo_as_in_migrator(tmp_path: Path) -> None:
    import sys

    from migrator.exporters import _assertion

    promptfoo = _promptfoo()
    # the metric module lives in the project directory, where migrator ran and promptfoo runs
    (tmp_path / "house_metric.py").write_text(
        "def score(output, expected):\n    return 0.5 if expected in output else 0.0\n"
    )
    cases = [("a positive review", "positive"), ("a negative review", "negative"), ("a positive one", "negative")]
    config = {
        "prompts": ["{{ review }}"],
        "providers": ["echo"],  # promptfoo's own provider: the reply is the prompt
        "defaultTest": {"assert": [{**_assertion({"name": "python:house_metric:score"}), "threshold": 0.5}]},
        "tests": [{"description": f"t{i}", "vars": {"review": o, "_expected": e}} for i, (o, e) in enumerate(cases)],
    }
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PROMPTFOO_PYTHON": sys.executable, "PROMPTFOO_DISABLE_TELEMETRY": "1"}
    env["PROMPTFOO_CONFIG_DIR"] = str(tmp_path / "promptfoo-home")
    subprocess.run(
        [promptfoo, "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-progress-bar", "-o", "out.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    rows = json.loads((tmp_path / "out.json").read_text())["results"]["results"]
    assert {r["testCase"]["description"]: r["score"] for r in rows} == {"t0": 0.5, "t1": 0.5, "t2": 0.0}
