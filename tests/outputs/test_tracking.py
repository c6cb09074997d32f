"""What a reviewer sees in MLflow after a run, read through the MLflow UI server's REST API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.llm import LiteLLMClient
from migrator.migration import default_out_paths, prepare, run_migration
from migrator.outputs.tracking import MlflowTracker, TrackingError
from migrator.spec import load_spec


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import yaml

    from migrator.testing import base_spec, make_sentiment_rows, register_fake_provider

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
        [sys.executable, "-m", "migrator", "ui", "--out", str(tracked_run["root"]), "--port", str(port)],
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
        assert parent_metrics["winner_test_score"] == pytest.approx(result.verdict.winner.test.score)
        assert parent_metrics["baseline_test_score"] == pytest.approx(result.verdict.baseline.test.score)
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


def _nested_runs(uri: str, experiment_id: str, parent_run_id: str) -> dict[int, Any]:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(tracking_uri=uri).search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return {int(r.data.tags["migrator.trial"]): r for r in runs}


def test_every_trial_is_a_nested_run_with_its_state_once_finish_returns(tracked_run: dict[str, Any]) -> None:
    info, result = tracked_run["info"], tracked_run["result"]
    nested = _nested_runs(tracked_run["uri"], info["experiment_id"], info["parent_run_id"])
    assert sorted(nested) == sorted(o.number for o in result.search.trials)
    status = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
    for outcome in result.search.trials:
        assert nested[outcome.number].info.status == status[outcome.state]
        assert nested[outcome.number].data.metrics["dev_score"] == pytest.approx(outcome.summary.score)


def test_closing_an_interrupted_run_keeps_the_trials_logged_before_it(tracked_run: dict[str, Any], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = tracked_run["result"]
    tracker = MlflowTracker(uri, None, tmp_path / "mlartifacts")
    tracker.start(result.prepared, "study-x", {})
    for outcome in result.search.trials[:3]:
        tracker.log_trial(outcome)
    tracker.close()
    assert tracker.experiment_id is not None and tracker.parent_run_id is not None
    assert sorted(_nested_runs(uri, tracker.experiment_id, tracker.parent_run_id)) == [o.number for o in result.search.trials[:3]]
    # not finished: a rerun reopens this parent run and goes on
    assert MlflowClient(tracking_uri=uri).get_run(tracker.parent_run_id).info.status == "RUNNING"


def test_a_store_that_cannot_be_opened_is_reported_at_once_and_fails_finish(tracked_run: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    reported: list[Exception] = []
    failed = threading.Event()

    def on_failure(error: Exception) -> None:
        reported.append(error)
        failed.set()

    result = tracked_run["result"]
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'not-a-dir' / 'mlflow.db'}", None, tmp_path / "mlartifacts", on_failure=on_failure)
    tracker.start(result.prepared, "study-x", {})
    assert failed.wait(timeout=120), "the failure was not reported while the search could still go on"
    for outcome in result.search.trials:
        tracker.log_trial(outcome)
    with pytest.raises(TrackingError, match="opening the parent run") as raised:
        tracker.finish(result, {})
    assert reported == [raised.value]
    assert "not-a-dir" in str(raised.value)
    assert tracker.parent_run_id is None


def test_a_failed_trial_log_names_the_trial_and_nothing_after_it_is_recorded(
    tracked_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    result = tracked_run["result"]
    broken = result.search.trials[2].number
    create_run = MlflowClient.create_run

    def failing_create_run(self: MlflowClient, experiment_id: str, *args: Any, run_name: str | None = None, **kwargs: Any) -> Any:
        if run_name is not None and run_name.startswith(f"#{broken} "):
            raise OSError("No space left on device")
        return create_run(self, experiment_id, *args, run_name=run_name, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_run", failing_create_run)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, None, tmp_path / "mlartifacts")
    tracker.start(result.prepared, "study-x", {})
    for outcome in result.search.trials:
        tracker.log_trial(outcome)
    with pytest.raises(TrackingError, match=f"logging trial #{broken}.*No space left on device"):
        tracker.finish(result, {})
    assert tracker.experiment_id is not None and tracker.parent_run_id is not None
    assert sorted(_nested_runs(uri, tracker.experiment_id, tracker.parent_run_id)) == [o.number for o in result.search.trials[:2]]
    assert MlflowClient(tracking_uri=uri).get_run(tracker.parent_run_id).info.status == "RUNNING"


def test_a_run_whose_tracking_fails_still_writes_its_outputs_and_exits_1(write_spec: Any, tmp_path: Path) -> None:
    import yaml

    (tmp_path / "not-a-dir").write_text("")
    spec = write_spec(budget={"trials": 4}, tracking={"uri": f"sqlite:///{tmp_path / 'not-a-dir' / 'mlflow.db'}"})
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "MLflow tracking" in proc.stderr and "were written" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["winner"] and summary["mlflow"]["parent_run_id"] is None
    assert (out / "report.html").is_file()
    assert yaml.safe_load((out / "winner.yaml").read_text())["model"] == summary["winner"]["model"]


# Records MLFLOW_DISABLE_TELEMETRY as mlflow starts to load, then loads it through migrator
# (``migrator export <run id>``; the made-up scheme fails once mlflow is in).
_TELEMETRY_PROBE = """
import json, os, sys
from pathlib import Path

seen = {}


class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow":
            seen.setdefault("as_mlflow_loads", os.environ.get("MLFLOW_DISABLE_TELEMETRY"))
        return None


sys.meta_path.insert(0, Probe())
import migrator.outputs.tracking as tracking

seen["after_import"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
try:
    tracking.download_lockfile("no-such-scheme://store", "no-such-run", Path(sys.argv[1]))
except Exception:
    pass
print(json.dumps(seen))
"""


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}

    def probe(env: dict[str, str]) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-c", _TELEMETRY_PROBE, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    off = probe(env)
    assert off["after_import"] is None  # importing migrator changes no environment variable
    assert off["as_mlflow_loads"] == "true"
    allowed = probe({**env, "MLFLOW_DISABLE_TELEMETRY": "false"})
    assert allowed["as_mlflow_loads"] == "false"


@pytest.mark.parametrize("mode_written", [True, False], ids=["as-migrator-writes-it", "no-endpoint-mode"])
def test_an_exported_winner_is_registered_with_its_prompt_and_how_it_is_called(
    tracked_run: dict[str, Any], tmp_path: Path, mode_written: bool
) -> None:
    import yaml
    from mlflow.tracking import MlflowClient

    from migrator import cli
    from migrator.outputs import winner_dict, write_outputs

    result = tracked_run["result"]
    write_outputs(tmp_path, {}, winner_dict(result, tmp_path))
    lock_path = tmp_path / "winner.yaml"
    winner = yaml.safe_load(lock_path.read_text())
    if not mode_written:  # a hand-written lockfile: read as a chat one, as `migrator eval` reads it
        del winner["endpoint"]["mode"]
        lock_path.write_text(yaml.safe_dump(winner, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    assert cli.main(["export", str(lock_path), "--format", "mlflow", "--tracking-uri", uri, "--name", "sentiment"]) == 0

    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_prompt_version_by_alias("sentiment", "production")
    assert version.template == winner["messages"]
    assert version.model_config["model_name"] == result.verdict.winner.config.model
    tags = version.tags
    assert tags["migrator.mode"] == "chat"  # the fake targets are chat models
    assert tags["migrator.spec_hash"] == result.spec.spec_hash()
    assert tags["migrator.demos"] == f"{winner['demos']['k']} ({winner['demos']['strategy']})"
    assert float(tags["migrator.test_score"]) == pytest.approx(result.verdict.winner.test.score)
