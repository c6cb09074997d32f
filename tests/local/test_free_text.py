"""Free text on the real local model: the shipped support-replies migration, and an LLM judge over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.local import LocalServer, missing_setup

REPO = Path(__file__).resolve().parents[2]
QWEN = "qwen2.5-coder-0.5b-instruct"
needs_local_models = pytest.mark.skipif(missing_setup() is not None, reason=str(missing_setup()))


def _migrator(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "migrator", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.local
@needs_local_models
def test_the_shipped_support_replies_migration_runs_on_the_local_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = REPO / "datasets" / "support-replies" / "ci.yaml"
    proc = _migrator("run", str(spec), "--out", str(out), "--quiet", "--no-tracking", timeout=2400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"]["name"] == "similarity"
    baseline, winner = summary["baseline"], summary["winner"]
    assert baseline["model"] == f"local/{QWEN}" and winner is not None
    # real replies scored by meaning: neither nothing nor everything
    assert 0.05 < baseline["test_score"] < 0.98 and 0.05 < winner["test_score"] < 0.98
    assert summary["llm_calls"]["made"] > 0 and summary["llm_calls"]["failed"] == 0
    # the winner's lockfile gives the same test score from the run's cache, with no new call
    again = _migrator("eval", str(out / "winner.yaml"), "--split", "test", timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"test score {winner['test_score']:.3f}" in again.stdout and "calls 0 made" in again.stdout


@pytest.mark.local
@needs_local_models
def test_a_local_judge_grades_replies_through_the_client_and_its_cache(tmp_path: Path) -> None:
    from migrator.dataset import Example
    from migrator.evaluate import Config, evaluate
    from migrator.judge import attach
    from migrator.llm import LiteLLMClient, open_cache
    from migrator.metrics import build_metric
    from migrator.migration import endpoint_for
    from migrator.prompts import PromptTemplate
    from migrator.spec import MetricSpec, TargetSpec

    rows = [json.loads(line) for line in (REPO / "datasets" / "support-replies" / "replies.jsonl").read_text().splitlines()[:3]]
    examples = [Example(r["id"], {"customer": r["customer"], "order": r["order"]}, r["reply"]) for r in rows]
    template = PromptTemplate(
        (
            ("system", "You answer customers of an outdoor-gear shop in one or two short sentences, using the order line."),
            ("user", "{{ customer }}\nOrder: {{ order }}"),
        )
    )
    with LocalServer([QWEN], log_dir=tmp_path / "logs", n_ctx=4096) as server:
        endpoint = endpoint_for(TargetSpec(model=f"local/{QWEN}"), {f"local/{QWEN}": server.api_base(QWEN)})
        metric = attach(build_metric(MetricSpec(name="judge", model=f"local/{QWEN}")), endpoint)
        config = Config(f"local/{QWEN}", params=(("max_tokens", 60), ("temperature", 0)))

        def scored() -> tuple[list[float], list[str], int]:
            client = LiteLLMClient(cache=open_cache(tmp_path / "cache.db"), timeout_s=300)
            results = asyncio.run(evaluate(client, config, endpoint, template, examples, metric))
            assert all(r.error is None for r in results), [r.error for r in results]
            return [r.score for r in results], [r.judged for r in results], client.stats.made

        scores, reasons, made = scored()
        # one reply and one judge call per example, each through the client
        assert made == 2 * len(examples)
        assert all(0.0 <= s <= 1.0 for s in scores)
        # the 0.5B judge gave a score it could read for each reply (DSPy's format, or "score: N")
        assert not any(r.startswith("judge gave no score") for r in reasons), reasons
        # the same replies are judged again from the cache: no call
        assert scored() == (scores, reasons, 0)
