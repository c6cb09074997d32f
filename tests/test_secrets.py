"""Secrets stay secret; dataset text stays data.

A full `migrator run` (with MLflow tracking) against the loopback server, with provider
keys in the environment and a server that echoes the key back in its error bodies, leaves
no key in any byte of the run directory, in what it prints, or in any export.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli
from migrator.dataset import Example, split_examples
from migrator.errors import LLMError
from migrator.llm import Endpoint, LiteLLMClient, LLMRequest
from migrator.spec import SplitSpec
from migrator.testing import KEY_ENV, FaultPlan, LoopbackServer, make_sentiment_rows, server_spec

SECRETS = {
    "OPENAI_API_KEY": "sk-test-SECRET-openai-abc123def456ghi789",
    "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-anthropic-0123456789abcdef",
    # the target's key is not shaped like one: only the environment says it is a secret
    KEY_ENV: "gateway.SECRET.7f3a9c2e1b5d4a6f",
}
TEMPLATE_DATA = (
    "Great value {{ 7*7 }}, love it",
    "{% raw %} awful and broken {{ config }}",
    "{% for x in y %} wonderful",
)


def _rows() -> list[dict[str, str]]:
    rows = make_sentiment_rows(30)
    for row, text in zip(rows[:3], TEMPLATE_DATA, strict=True):
        row["review"] = text
    return rows


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _leaks(blobs: dict[str, bytes]) -> list[tuple[str, str]]:
    """(where, which secret) for every secret found in the blobs."""
    return [(where, name) for where, blob in blobs.items() for name, value in SECRETS.items() if value.encode() in blob]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One tracked migration with secrets in the environment, then every export of it."""
    root = tmp_path_factory.mktemp("secrets")
    rows = _rows()
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = [Example(r["id"], {"review": r["review"]}, r["label"]) for r in rows]
    dev_victim = split_examples(examples, SplitSpec(), seed=0).dev[-1]
    plan = FaultPlan(
        rates={"rate_limit": 0.1},
        seed=3,
        echo_key=True,
        # the legacy model refuses every call, and so does the provider for one dev review:
        # both errors quote the key, and both end up in what the run records
        model_faults={"fault-retired": "auth"},
        broken_marker=str(dev_victim.inputs["review"]),
        broken_kind="auth",
    )
    with pytest.MonkeyPatch.context() as mp, LoopbackServer(plan) as server:
        for name, value in SECRETS.items():
            mp.setenv(name, value)
        spec = server_spec(server.api_base, str(data), budget={"trials": 3})
        spec["app"]["model"] = "openai/fault-retired"
        (root / "migration.yaml").write_text(yaml.safe_dump(spec))
        out = root / "out"
        captured: dict[str, str] = {}
        capture = _Capture()
        with capture:
            code = cli.main(["run", str(root / "migration.yaml"), "--out", str(out)])
        captured["run"] = capture.text
        exports: dict[str, str] = {}
        for fmt in ("python", "promptfoo", "json", "yaml"):
            with capture:
                assert cli.main(["export", str(out), "--format", fmt]) == 0
            exports[fmt] = capture.text
            with capture:
                assert (
                    cli.main(["export", str(out), "--format", fmt, "-o", str(root / "exports" / f"winner.{fmt}")]) == 0
                )
            captured[f"export {fmt}"] = capture.text
        yield {
            "code": code,
            "out": out,
            "root": root,
            "server": server,
            "captured": captured,
            "exports": exports,
            "rows": rows,
        }


class _Capture:
    """stdout and stderr of the process, file descriptors and sys.std* alike, as text."""

    def __enter__(self) -> _Capture:
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = (os.dup(1), os.dup(2), sys.stdout, sys.stderr)
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.close()
        sys.stderr.close()
        fd_out, fd_err, sys.stdout, sys.stderr = self._saved
        for fd, saved in ((1, fd_out), (2, fd_err)):
            os.dup2(saved, fd)
            os.close(saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()


def test_the_run_used_the_key_and_the_provider_echoed_it(run: dict[str, Any]) -> None:
    assert run["code"] == 0, run["captured"]["run"]
    assert "winner" in run["captured"]["run"]  # the capture saw the run's table
    server: LoopbackServer = run["server"]
    assert {a.authorization for a in server.attempts} == {f"Bearer {SECRETS[KEY_ENV]}"}
    assert sum(SECRETS[KEY_ENV] in body for body in server.error_bodies) >= 2
    summary = json.loads((run["out"] / "summary.json").read_text())
    assert summary["llm_calls"]["retried"] > 0 and summary["llm_calls"]["failed"] > 0
    # the echoed errors were recorded, redacted: the legacy note, and the trials' predictions
    assert "***" in summary["legacy_note"] and "Incorrect API key provided" in summary["legacy_note"]
    tables = [p.read_text() for p in run["out"].rglob("predictions.json")]
    assert tables and any("Incorrect API key provided: ***" in t for t in tables)


def test_no_key_in_any_byte_of_the_run_directory(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    files = list(_files(out))
    names = {p.name for p in files}
    assert {"summary.json", "winner.yaml", "report.html", "study.db", "mlflow.db", "cache.db"} <= names
    assert any("mlartifacts" in p.parts for p in files)
    assert _leaks({str(p.relative_to(out)): p.read_bytes() for p in files}) == []


def test_no_key_in_what_the_commands_print_or_export(run: dict[str, Any]) -> None:
    exported = {f"file {p.name}": p.read_bytes() for p in _files(run["root"] / "exports")}
    printed = {k: v.encode() for k, v in {**run["captured"], **run["exports"]}.items()}
    assert len(exported) == 4 and all(printed[f] for f in ("python", "promptfoo", "json", "yaml"))
    assert _leaks({**exported, **printed}) == []
    # the lockfile names the variable that holds the key, so the app can find it
    assert f"API_KEY_ENV = {KEY_ENV!r}" in run["exports"]["python"]


def test_the_leak_check_would_see_a_key(tmp_path: Path) -> None:
    (tmp_path / "store.db").write_bytes(b"\x00\x01" + SECRETS[KEY_ENV].encode() + b"\x00")
    assert _leaks({p.name: p.read_bytes() for p in _files(tmp_path)}) == [("store.db", KEY_ENV)]


def test_template_syntax_in_the_dataset_reaches_the_model_as_text(run: dict[str, Any]) -> None:
    sent = {m["content"] for a in run["server"].attempts for m in a.body["messages"] if m["role"] == "user"}
    splits = split_examples(
        [Example(r["id"], {"review": r["review"]}, r["label"]) for r in run["rows"]], SplitSpec(), seed=0
    )
    scored = {str(ex.inputs["review"]) for ex in (*splits.dev, *splits.test)}
    shown = [text for text in TEMPLATE_DATA if text in scored]
    assert shown  # every dev and test review is sent
    for text in shown:
        assert f"Review: {text}" in sent
    assert not any("Great value 49" in s or ("awful and broken" in s and "{% raw %}" not in s) for s in sent)


def test_an_echoed_key_is_redacted_whatever_its_variable_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "gateway.7f3a9c2e1b5d4a6f0918"  # neither key-shaped nor in a variable named like a secret
    monkeypatch.setenv("GATEWAY_AUTH", key)
    with LoopbackServer(FaultPlan(rates={"auth": 1.0}, echo_key=True)) as server:
        endpoint = Endpoint("openai/fault-oracle", api_base=server.api_base, api_key_env="GATEWAY_AUTH")
        with pytest.raises(LLMError) as caught:
            asyncio.run(
                LiteLLMClient(max_retries=0).complete(LLMRequest(endpoint, messages=(("user", "Review: great"),)))
            )
    assert key in server.error_bodies[0]
    assert "Incorrect API key provided" in str(caught.value) and key not in str(caught.value)
