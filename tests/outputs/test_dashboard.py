"""The trial dashboard as a newcomer opens it: `migrator ui` on a finished run, in a real browser.

A real `migrator run` (fake provider, MLflow tracking on) and a real `migrator ui`; the pages
are opened in Debian's chromium by playwright-core from npm (``.ci/run`` installs both; the
browser tests skip elsewhere without them, and fail under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.testing import base_spec, make_sentiment_rows, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = Path(os.environ.get("MIGRATOR_PLAYWRIGHT", ROOT / ".ci/node/node_modules/playwright-core"))
SCRIPT = Path(__file__).with_name("browser") / "dashboard.js"
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
RANKED = ["dev_score", "test_score", "cost_usd_per_1k_examples", "latency_p50_s", "calls"]


def _write_app(root: Path, **overrides: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(60)))
    spec = root / "migration.yaml"
    spec.write_text(yaml.safe_dump(base_spec(budget={"trials": 8}, **overrides), sort_keys=False))
    return spec


def _run(spec: Path, out: Path, *extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(out), "--quiet", *extra],
        capture_output=True, text=True, timeout=600, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("dashboard")
    out = root / "out"
    _run(_write_app(root / "app"), out)
    summary = json.loads((out / "summary.json").read_text())
    return {"root": root, "out": out, "summary": summary, "uri": summary["mlflow"]["tracking_uri"]}


def _client(uri: str) -> Any:
    from migrator.outputs.tracking._mlflow import mlflow_client

    return mlflow_client(uri, registry_uri=uri)


def _trial_runs(finished: dict[str, Any]) -> list[Any]:
    info = finished["summary"]["mlflow"]
    return list(
        _client(finished["uri"]).search_runs(
            [info["experiment_id"]],
            filter_string=f"tags.mlflow.parentRunId = '{info['parent_run_id']}' and tags.`migrator.role` = 'trial'",
            max_results=1000,
        )
    )


def test_every_run_names_the_dataset_its_digest_and_the_split_it_used(finished: dict[str, Any]) -> None:
    import hashlib

    digest = hashlib.sha256((finished["root"] / "app" / "reviews.jsonl").read_bytes()).hexdigest()[:12]
    client = _client(finished["uri"])
    parent = client.get_run(finished["summary"]["mlflow"]["parent_run_id"])
    trials = _trial_runs(finished)
    assert len(trials) == finished["summary"]["trials"]["total"]
    for run, split in [(parent, "train, dev, test"), *((t, "dev") for t in trials)]:
        (used,) = run.inputs.dataset_inputs
        assert (used.dataset.name, used.dataset.digest) == ("reviews.jsonl", digest)
        assert {t.key: t.value for t in used.tags} == {"mlflow.data.context": split}
    assert json.loads(parent.inputs.dataset_inputs[0].dataset.profile) == {"num_rows": 60, "train": 12, "dev": 30, "test": 18}


def test_the_trials_scored_on_test_carry_their_test_score_and_cost_per_1k_examples(finished: dict[str, Any]) -> None:
    summary = finished["summary"]
    tested = {row["trial"]: row["test_score"] for row in [*summary["finalists"], *summary["baselines_by_target"].values()]}
    for run in _trial_runs(finished):
        metrics = run.data.metrics
        assert metrics["cost_usd_per_1k_examples"] == pytest.approx(metrics["cost_usd_per_example"] * 1000)
        trial = int(run.data.tags["migrator.trial"])
        if trial in tested:
            assert metrics["test_score"] == pytest.approx(tested[trial])
        else:
            assert "test_score" not in metrics


def test_a_bad_prompt_alias_is_one_line_naming_the_field(tmp_path: Path) -> None:
    spec = _write_app(tmp_path / "app", tracking={"prompt_alias": "not an alias"})
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "tracking.prompt_alias" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui(finished: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`migrator ui --out DIR` on the finished run: its printed lines and base URL, once it answers."""
    port = _free_port()
    log_path = finished["root"] / "ui.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrator", "ui", "--out", str(finished["out"]), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ENV,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for(lambda: _answers(f"{base}/health"), proc, timeout=180)
            except AssertionError:
                pytest.fail("migrator ui did not come up: " + log_path.read_text()[-2000:])
            yield {"base": base, "printed": log_path.read_text()}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_migrator_ui_prints_the_page_with_the_ranked_trials(finished: dict[str, Any], ui: dict[str, Any]) -> None:
    experiment = finished["summary"]["mlflow"]["experiment_id"]
    landing = f"{ui['base']}/#/experiments/{experiment}/runs?viewStateShareKey=migrator-ranked&workflowType=machine_learning"
    assert f"fake-sentiment: trials ranked by dev score: {landing}" in ui["printed"]


def _printed(ui: dict[str, Any], what: str) -> str:
    """The address `migrator ui` printed after ``what``."""
    return next(line.split(": ", 2)[2] for line in ui["printed"].splitlines() if f": {what}: " in line)


def _evaluation_runs(finished: dict[str, Any]) -> dict[str, Any]:
    info = finished["summary"]["mlflow"]
    runs = _client(finished["uri"]).search_runs(
        [info["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{info['parent_run_id']}' and tags.`migrator.role` = 'evaluation'",
    )
    return {run.info.run_name: run for run in runs}


def test_the_verdicts_configs_are_mlflow_evaluation_runs_with_a_record_and_a_trace_per_example(
    finished: dict[str, Any],
) -> None:
    from mlflow.entities import SpanType

    summary, client = finished["summary"], _client(finished["uri"])
    runs = _evaluation_runs(finished)
    scored = [("winner", summary["winner"])] + [
        ("baseline", row) for row in summary["baselines_by_target"].values() if row["label"] != summary["winner"]["label"]
    ] + [("finalist", row) for row in summary["finalists"] if row["label"] != summary["winner"]["label"]]
    sizes = {"dev": summary["splits"]["dev"], "test": summary["splits"]["test"]}
    for role, row in scored:
        for split in ("dev", "test"):
            run = runs[f"{role} · {split} · {row['label']}"]
            assert run.data.tags["mlflow.runType"] == "genai_evaluate"  # mlflow.genai.evaluate logged it
            contexts = [{t.key: t.value for t in d.tags}.get("mlflow.data.context") for d in run.inputs.dataset_inputs]
            assert split in contexts
            expected = row["test_score"] if split == "test" else row["dev_score"]
            assert run.data.metrics["score/mean"] == pytest.approx(expected)
            traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, max_results=500)
            assert len(traces) == sizes[split]
    # the winner's test traces: the rendered prompt sent, the reply, and the scores as assessments
    winner = runs[f"winner · test · {summary['winner']['label']}"]
    traces = client.search_traces(locations=[winner.info.experiment_id], run_id=winner.info.run_id, max_results=500)
    rows = [json.loads(line) for line in (finished["root"] / "app" / "reviews.jsonl").read_text().splitlines()]
    reviews = {r["id"]: r["review"] for r in rows}
    for trace in traces:
        (call,) = [s for s in trace.data.spans if s.span_type in (SpanType.CHAT_MODEL, SpanType.LLM)]
        example_id = json.loads(trace.info.request_preview or "{}").get("example_id") or trace.data.spans[0].inputs["example_id"]
        assert reviews[example_id] in call.inputs["messages"][-1]["content"]
        assert call.outputs == trace.data.spans[0].outputs
        assessments = {a.name: a for a in trace.info.assessments}
        assert {"score", "latency_s", "cost_usd", "expected_response"} <= set(assessments)
    assert sum(a.value for t in traces for a in t.info.assessments if a.name == "score") == pytest.approx(
        summary["winner"]["test_score"] * summary["splits"]["test"]
    )


def _browse(finished: dict[str, Any], ui: dict[str, Any], shots: Path) -> dict[str, Any]:
    for needed, why in ((CHROMIUM, "needs /usr/bin/chromium (apt-get install chromium)"),
                        (PLAYWRIGHT, "needs playwright-core from npm (.ci/run installs it in .ci/node)")):  # fmt: skip
        if not needed.exists():
            pytest.skip(why)
    if shutil.which("node") is None:
        pytest.skip("needs node (for playwright-core)")
    info = finished["summary"]["mlflow"]
    config = {
        "playwright": str(PLAYWRIGHT),
        "chromium": str(CHROMIUM),
        "landing": _printed(ui, "trials ranked by dev score"),
        "parent": f"{ui['base']}/#/experiments/{info['experiment_id']}/runs/{info['parent_run_id']}",
        "compare": _printed(ui, "winner vs naive migration, example by example"),
        "shots": str(shots),
    }
    proc = subprocess.run(["node", str(SCRIPT), json.dumps(config)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def seen(finished: dict[str, Any], ui: dict[str, Any]) -> dict[str, Any]:
    shots = Path(os.environ.get("MIGRATOR_SCREENSHOTS") or finished["root"] / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    return {**_browse(finished, ui, shots), "shots": shots}


def test_the_landing_page_shows_every_trial_ranked_by_dev_score_without_a_click(
    finished: dict[str, Any], seen: dict[str, Any]
) -> None:
    trials = {run.info.run_id: run for run in _trial_runs(finished)}
    rows = seen["rows"]
    shown = [r for r in rows if r["run_id"] in trials]
    assert len(shown) == len(trials), "a trial is folded away or missing"
    assert not {r["run_id"] for r in rows} & {run.info.run_id for run in _evaluation_runs(finished).values()}
    scores = [float(r["dev_score"]) for r in shown]
    assert scores == sorted(scores, reverse=True)
    assert scores == sorted((run.data.metrics["dev_score"] for run in trials.values()), reverse=True)
    # the reviewer's columns, in this order, then where the trial's data came from
    reviewed = [c for c in seen["columns"] if c.startswith(("metrics.", "tags."))]
    assert reviewed == [*(f"metrics.`{m}`" for m in RANKED), "tags.`state`"]
    for row in shown:
        run = trials[row["run_id"]]
        assert row["state"] == run.data.tags["state"]
        assert row["dataset"].startswith("reviews.jsonl") and "Dev" in row["dataset"]
        assert (row["test_score"] != "-") == ("test_score" in run.data.metrics)
    assert (seen["shots"] / "ranked-runs.png").stat().st_size > 20_000


def test_the_parent_run_page_shows_the_verdict_the_report_and_the_registered_prompt(
    finished: dict[str, Any], seen: dict[str, Any]
) -> None:
    summary, text = finished["summary"], seen["parent_text"]
    assert f"Winner: {summary['winner']['label']}" in text
    assert f"test {summary['winner']['test_score']:.3f}" in text
    assert "report.html" in text
    assert "fake-sentiment-prompt (v1)" in text  # MLflow's own "Registered prompts" link
    assert (seen["shots"] / "parent-run.png").stat().st_size > 20_000


def test_mlflows_evaluation_view_compares_winner_and_naive_migration_example_by_example(
    finished: dict[str, Any], seen: dict[str, Any]
) -> None:
    summary, text = finished["summary"], seen["compare_text"]
    n = summary["splits"]["test"]
    assert f"winner · test · {summary['winner']['label']}" in text
    assert f"baseline · test · {summary['baseline']['label']}" in text
    assert f"{n} of {n}" in text  # every test example, matched across the two runs
    assert (seen["shots"] / "compare.png").stat().st_size > 20_000


# after the browser tests: it adds a second migration to the store they look at
def test_each_migration_registers_its_winners_prompt_as_a_new_version_under_the_alias(
    finished: dict[str, Any], tmp_path: Path
) -> None:
    uri = finished["uri"]
    load_prompt = _client(uri).load_prompt  # the run's own store is the registry
    winner = yaml.safe_load((finished["out"] / "winner.yaml").read_text())
    parent = _client(uri).get_run(finished["summary"]["mlflow"]["parent_run_id"])
    assert parent.data.tags["migrator.prompt"] == "prompts:/fake-sentiment-prompt/1"
    assert json.loads(parent.data.tags["mlflow.linkedPrompts"]) == [{"name": "fake-sentiment-prompt", "version": "1"}]
    first = load_prompt("prompts:/fake-sentiment-prompt@migrated")
    assert first.version == 1
    assert first.template == [{"role": m["role"], "content": m["content"]} for m in winner["messages"]]
    assert first.model_config["model_name"] == winner["model"]
    # the same migration run again (a resume of a finished study) registers nothing new
    _run(finished["root"] / "app" / "migration.yaml", finished["out"])
    assert load_prompt("prompts:/fake-sentiment-prompt@migrated").version == 1
    # another migration of the app (a new spec: a new study) into the same store is version 2, with its alias
    spec = _write_app(tmp_path / "again", seed=7, tracking={"prompt_alias": "candidate"})
    _run(spec, tmp_path / "out", "--tracking-uri", uri)
    assert load_prompt("prompts:/fake-sentiment-prompt@candidate").version == 2
    assert load_prompt("prompts:/fake-sentiment-prompt@migrated").version == 1
