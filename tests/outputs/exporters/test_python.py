"""The Python export, run as a user runs it: `call(**inputs)` must send what migrator scored.

Each case is a real migration against the loopback fault server. Its winner is exported
with `migrator export --format python`, the module is imported in a fresh interpreter,
and `call()` is asked about every test example. The request bodies the server received
from it must be exactly those migrator sent when it re-scored the lockfile (what
`migrator eval` does), and each reply the same text migrator got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli
from migrator.llm import LiteLLMClient
from migrator.migration import prepare, run_migration
from migrator.models import is_local
from migrator.outputs import evaluate_lockfile, load_lockfile, winner_dict, write_outputs
from migrator.spec import load_spec
from migrator.testing import KEY_ENV, Attempt, FaultPlan, LoopbackServer, awkward_rows, server_spec

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-test-export-python-0123456789abcdef"

# a worked example as turns of the template, then the input; whitespace that the
# completion prompt strips and the chat messages keep
FEW_SHOT = [
    {"role": "system", "content": "Classify the sentiment of the review.\n"},
    {"role": "user", "content": "Title: Dinner\nReview: The staff were wonderful. "},
    {"role": "assistant", "content": "positive\n"},
    {"role": "user", "content": "Title: {{ title }}\nReview: {{ review }}\n"},
]
# the reply started for the model (an assistant turn after the input)
PREFILLED = [
    {"role": "system", "content": "  Classify the sentiment of the review.  "},
    {"role": "user", "content": "Title: {{ title }}\n\nReview: {{ review }}"},
    {"role": "assistant", "content": "Sentiment: "},
]
# sent to the model as they are: a user id, llama.cpp samplers, one left at the server's default
APP_PARAMS = {"temperature": 0.0, "max_tokens": 5, "stop": ["\n\n"], "user": "app-7", "mirostat": 0, "min_p": None}

CASES = [
    # model, endpoint mode (None: the model's default), demo strategy, template
    pytest.param("openai/fault-shaky", "chat", "stratified", FEW_SHOT, id="chat-stratified"),
    pytest.param("openai/fault-shaky", "chat", "knn", PREFILLED, id="chat-knn"),
    pytest.param("openai/fault-shaky", "completion", "random", FEW_SHOT, id="completion-random"),
    pytest.param("openai/fault-shaky", "completion", "knn", PREFILLED, id="completion-knn"),
    pytest.param("local/gemma-3-270m", None, "knn", FEW_SHOT, id="local-completion-knn"),
    # a provider migrator calls through litellm, not over its own HTTP session
    pytest.param("hosted_vllm/fault-shaky", "chat", "stratified", PREFILLED, id="litellm-chat-stratified"),
]

# imports the exported module from its own directory, in an interpreter that has not
# imported migrator, and asks it about each input (fields passed in reverse order)
RUN_SNIPPET = """
import json, sys
import winner_snippet
if sys.argv[1]:
    winner_snippet.API_BASE = sys.argv[1]  # where this llama.cpp server listens, as a user sets it
inputs = json.loads(sys.stdin.read())
replies = [winner_snippet.call(**dict(reversed(list(i.items())))) for i in inputs]
assert "migrator" not in sys.modules, "the exported module imported migrator"
print(json.dumps(replies))
"""


def _rows_with_titles() -> list[dict[str, str]]:
    """The promptfoo test's awkward reviews (template syntax, trailing newlines), titled."""
    return [{**row, "title": f"Order {i % 7}"} for i, row in enumerate(awkward_rows(awkward=True))]


def _migrate(tmp_path: Path, api_base: str, target: dict[str, Any], strategy: str, messages: Any) -> Path:
    """Run a migration in-process; a local model is served by the fault server. Returns winner.yaml."""
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows_with_titles()))
    spec = server_spec(
        api_base,
        str(data),
        targets=[target],
        search_space={"temperature": None, "demos": {"k": [3], "strategies": [strategy]}, "pruner": "none"},
    )
    spec["app"] |= {"messages": messages, "params": APP_PARAMS}
    spec["dataset"]["input_fields"] = ["title", "review"]
    (tmp_path / "migration.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    prepared = prepare(load_spec(tmp_path / "migration.yaml"))
    out = tmp_path / "out"
    result = run_migration(
        prepared,
        LiteLLMClient(max_retries=0),
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        api_bases={target["model"]: api_base},
    )
    write_outputs(out, {}, winner_dict(result, out))
    return out / "winner.yaml"


def _bodies(attempts: list[Attempt]) -> list[str]:
    return sorted(json.dumps(a.body, sort_keys=True, ensure_ascii=False) for a in attempts)


@pytest.mark.parametrize(("model", "mode", "strategy", "messages"), CASES)
def test_the_exported_module_sends_exactly_what_migrator_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, mode: str | None, strategy: str, messages: Any
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    local = is_local(model)
    with LoopbackServer(FaultPlan()) as server:
        target: dict[str, Any] = {"model": model}
        if not local:
            target |= {"api_base": server.api_base, "api_key_env": KEY_ENV}
        if mode:
            target["mode"] = mode
        winner = _migrate(tmp_path, server.api_base, target, strategy, messages)
        lock = load_lockfile(winner)
        assert (lock.config.demos, lock.config.demo_strategy) == (3, strategy)
        assert lock.lock.endpoint.mode == (mode or "completion")
        assert {"user", "mirostat", "min_p", "stop"} <= set(lock.config.as_dict()["params"])
        snippet = tmp_path / "winner_snippet.py"
        assert cli.main(["export", str(winner.parent), "--format", "python", "-o", str(snippet)]) == 0
        assert ("API_BASE = 'http://127.0.0.1:8077/v1'" in snippet.read_text()) == local  # llama.cpp's usual port

        test = lock.splits.test
        before = len(server.attempts)
        scored = evaluate_lockfile(lock, LiteLLMClient(max_retries=0), "test", {model: server.api_base}).results
        migrator_sent = server.attempts[before:]
        proc = subprocess.run(
            [sys.executable, "-c", RUN_SNIPPET, server.api_base if local else ""],
            input=json.dumps([dict(ex.inputs) for ex in test]),
            cwd=tmp_path,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": ""},
            capture_output=True,
            text=True,
            timeout=300,
        )
        snippet_sent = server.attempts[before + len(migrator_sent) :]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r.error for r in scored] == [None] * len(test) and len(migrator_sent) == len(test)
    assert len(test) >= 10 and len({r.output for r in scored}) == 2  # both labels among the replies

    # the same bodies (model, prompt or messages, every param), and the key from the variable it names
    assert _bodies(snippet_sent) == _bodies(migrator_sent)
    assert {a.authorization for a in snippet_sent} == {a.authorization for a in migrator_sent}
    assert {a.authorization for a in snippet_sent} == {"Bearer none" if local else f"Bearer {KEY}"}
    assert {a.path for a in snippet_sent} == {a.path for a in migrator_sent}
    # each call sent its own example's prompt, and returned the reply migrator scored
    asked = [a.body.get("prompt", a.body.get("messages")) for a in snippet_sent]
    assert asked == [lock.prompt_for(ex) for ex in test]
    assert json.loads(proc.stdout.splitlines()[-1]) == [r.output for r in scored]
    # and the module passes the lint rules migrator's own code does
    lint = [sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(snippet)]
    assert subprocess.run(lint, capture_output=True, text=True).stdout.strip() == "All checks passed!"
