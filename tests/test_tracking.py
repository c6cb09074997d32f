"""What a reviewer sees in MLflow after a run, read through the MLflow UI server's REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.llm import LiteLLMClient
from migrator.pipeline import default_out_paths, prepare, run_migration
from migrator.spec import load_spec
from migrator.tracking import MlflowTracker


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import yaml
    from conftest import base_spec

    from migrator.testing import make_sentiment_rows, register_fake_provider

    register_fake_provider()
    root = tmp_path_factory.mktemp("tracked")
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(80)))
    (root / "migration.yaml").write_text(yaml.safe_dump(base_spec(budget={"trials": 5})))
    spec = load_spec(root / "migration.yaml")
    prepared = prepare(spec)
    paths = default_out_paths(root)
    tracker = MlflowTracker(paths["tracking"], None, root / "mlartifacts")
    tracker.start(prepared, "study-x", {})
    result = run_migration(
        prepared,
        LiteLLMClient(max_retries=0),
        storage=paths["storage"],
        study_name="study-x",
        callbacks=[tracker.log_trial],
        on_candidates=tracker.log_candidates,
    )
    info = tracker.finish(result, {})
    yield {"root": root, "result": result, "info": info, "uri": paths["tracking"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def test_the_mlflow_ui_serves_the_parent_and_nested_trial_runs(tracked_run: dict[str, Any]) -> None:
    port = _free_port()
    log = (tracked_run["root"] / "ui.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator.cli", "ui", "--out", str(tracked_run["root"]), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the MLflow UI did not come up: " + (tracked_run["root"] / "ui.log").read_text()[-2000:])
                time.sleep(0.5)
        info = tracked_run["info"]
        runs = _post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [info["experiment_id"]], "max_results": 100})["runs"]
        by_id = {r["info"]["run_id"]: r for r in runs}
        parent = by_id[info["parent_run_id"]]
        assert parent["info"]["run_name"] == "fake-sentiment"
        parent_metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
        result = tracked_run["result"]
        assert parent_metrics["winner_test_score"] == pytest.approx(result.winner.test.score)
        assert parent_metrics["baseline_test_score"] == pytest.approx(result.baseline.test.score)
        children = [r for r in runs if {t["key"]: t["value"] for t in r["data"].get("tags", [])}.get("mlflow.parentRunId") == info["parent_run_id"]]
        assert len(children) == result.search.counts["total"] == 5
        for child in children:
            tags = {t["key"]: t["value"] for t in child["data"]["tags"]}
            metrics = {m["key"] for m in child["data"]["metrics"]}
            params = {p["key"] for p in child["data"]["params"]}
            assert child["info"]["run_name"].startswith("#") and " · " in child["info"]["run_name"]
            assert {"dev_score", "cost_usd_per_example", "latency_p50_s", "calls"} <= metrics
            assert {"model", "prompt_id", "demos"} <= params
            assert tags["legacy_model"] == "fake/down" and tags["target_model"] in ("fake/weak", "fake/fewshot")
            assert tags["state"] in ("complete", "pruned", "failed")
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_each_trial_has_its_prompt_and_predictions_as_artifacts(tracked_run: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracked_run["uri"])
    info = tracked_run["info"]
    children = client.search_runs([info["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{info['parent_run_id']}'")
    assert children
    for run in children:
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"prompt.txt", "predictions.json"} <= names
        prompt = Path(client.download_artifacts(run.info.run_id, "prompt.txt")).read_text()
        assert "Review:" in prompt
    parent_files = {a.path for a in client.list_artifacts(info["parent_run_id"], "prompts/candidates")}
    assert "prompts/candidates/original.txt" in parent_files
    table = json.loads(Path(client.download_artifacts(info["parent_run_id"], "candidates.json")).read_text())
    assert "original" in json.dumps(table)


def test_a_resumed_run_reuses_the_parent_run(tracked_run: dict[str, Any]) -> None:
    tracker = MlflowTracker(tracked_run["uri"], None, tracked_run["root"] / "mlartifacts")
    tracker.start(tracked_run["result"].prepared, "study-x", {})
    assert tracker.parent_run_id == tracked_run["info"]["parent_run_id"]
