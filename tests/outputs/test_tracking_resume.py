"""MLflow tracking across a kill: a resumed run leaves one nested run per finished trial.

The killed run is a real ``migrator run`` subprocess against the loopback fault server.
The test holds mlflow.db's write lock from the moment the tracker's worker is inside a
trial's nested run (created, not yet terminated) until the kill, so the kill finds that
run half-written and the trials the search finished meanwhile still queued: both are
read from mlflow.db and study.db before the kill, not assumed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.llm import LiteLLMClient
from migrator.migration import default_out_paths, prepare, run_migration
from migrator.outputs.tracking import MlflowTracker
from migrator.search import TrialOutcome
from migrator.spec import load_spec
from migrator.testing import FaultPlan, LoopbackServer, run_command, run_env, study_rows, wait_for, write_project

KEY = "sk-test-crash-0123456789abcdef"

_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def _tracked(spec: Path, out: Path) -> list[str]:
    """test_crash's `migrator run` command, with MLflow tracking on."""
    return [arg for arg in run_command(spec, out) if arg != "--no-tracking"]


def _finished(out: Path) -> dict[int, tuple[str, list[float] | None]]:
    """(state, values) of the study's finished trials, without the ones a kill cut short."""
    return {
        number: (state, values)
        for number, state, _, values, note in study_rows(out)
        if state in _STATUS and not note.startswith("interrupted")
    }


def _nested(db: sqlite3.Connection) -> list[tuple[int, str]]:
    """(trial number, status) of the live nested trial runs, read from the store's own tables."""
    rows = db.execute(
        "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'migrator.trial' "
        "WHERE r.lifecycle_stage = 'active'"
    ).fetchall()
    return [(int(number), status) for number, status in rows]


_TESTED = {"test_score", "test_ci_low", "test_ci_high"}


def _own_tags(run: Any) -> set[str]:
    """The tags migrator sets on a nested run (MLflow adds its own, e.g. for a logged table)."""
    return {k for k in run.data.tags if not k.startswith("mlflow.") and k != "note"}


def _lock_inside_a_trial_write(path: Path, proc: subprocess.Popen[str]) -> sqlite3.Connection:
    """A connection holding mlflow.db's write lock while a nested trial run is created but not terminated.

    Between attempts the lock is let go, so the worker gets on with its writes.
    """
    wait_for(path.exists, proc)
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill: {proc.communicate()}")
        assert time.monotonic() < deadline, "never caught the tracker inside a trial's nested run"
        db.execute("BEGIN EXCLUSIVE")
        try:
            if any(status == "RUNNING" for _, status in _nested(db)):
                return db
        except sqlite3.OperationalError:  # the worker is still creating the store's tables
            pass
        db.execute("ROLLBACK")
        time.sleep(0.01)


def test_a_resumed_run_logs_every_trial_the_kill_left_unlogged_or_half_written_exactly_once(tmp_path: Path) -> None:
    # 6 configs (2 targets x 0, 2 or 4 demos), 15 dev calls each; the server holds the
    # killed run after 70 calls, inside trial 4, so trials 0-3 finish before the kill.
    with LoopbackServer(FaultPlan(hold_after=70, hold_key=KEY)) as server:
        space = {"timeout_s": 60.0, "demos": {"k": [0, 2, 4], "strategies": ["random"]}}
        spec = write_project(tmp_path, server.api_base, search_space=space, budget={"trials": 6})
        out = tmp_path / "out"
        proc = subprocess.Popen(_tracked(spec, out), env=run_env(KEY), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        locked: sqlite3.Connection | None = None
        try:
            locked = _lock_inside_a_trial_write(out / "mlflow.db", proc)
            # the worker now waits on the lock while the search goes on until the server holds it
            wait_for(lambda: sum(server.held().values()) > 0, proc)
            wait_for(lambda: len(_finished(out)) >= 4, proc)
            logged_before = _nested(locked)
            finished_before = _finished(out)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            if locked is not None:
                locked.close()
        half_written = {n for n, status in logged_before if status == "RUNNING"}
        whole = {n for n, status in logged_before if status != "RUNNING"}
        assert len(half_written) == 1, logged_before
        queued = set(finished_before) - whole - half_written
        assert queued, f"no finished trial was waiting for the tracker at the kill: {logged_before}, {finished_before}"
        server.release()

        rerun = subprocess.run(_tracked(spec, out), env=run_env(KEY), capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr

    from mlflow.tracking import MlflowClient

    summary = json.loads((out / "summary.json").read_text())
    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    experiment_id, parent_id = summary["mlflow"]["experiment_id"], summary["mlflow"]["parent_run_id"]
    assert client.get_run(parent_id).info.status == "FINISHED"
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`migrator.role` = 'trial'"
    )
    numbers = Counter(int(r.data.tags["migrator.trial"]) for r in runs)
    finished = _finished(out)
    assert set(numbers) == set(finished) and len(runs) == len(finished), (numbers, sorted(finished))
    assert set(finished) > set(finished_before)  # the resumed run added trials of its own

    by_number = {int(r.data.tags["migrator.trial"]): r for r in runs}
    normal = by_number[min(whole | (set(finished) - set(finished_before)))]
    for number, (state, values) in finished.items():
        run = by_number[number]
        assert run.info.status == _STATUS[state], (number, state)
        assert run.data.tags["state"] == {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[state]
        assert run.info.run_name.startswith(f"#{number} ")
        assert set(run.data.params) == set(normal.data.params)
        # a trial the verdict scored on test has its test score too
        assert set(run.data.metrics) - _TESTED == set(normal.data.metrics) - _TESTED
        assert _own_tags(run) - {"migrator.backfilled"} == _own_tags(normal)
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        if values is not None:
            assert run.data.metrics["dev_score"] == pytest.approx(values[0])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "prompt.txt" in artifacts
        # the trials the killed run never finished logging lack only their predictions, and say so
        backfilled = number in queued | half_written
        assert (run.data.tags.get("migrator.backfilled") == "true") == backfilled, number
        assert ("predictions.json" in artifacts) != backfilled, number
    prompt = Path(client.download_artifacts(by_number[min(queued)].info.run_id, "prompt.txt")).read_text()
    assert "Review:" in prompt


def _migrate(root: Path, trials: int, forward: Callable[[TrialOutcome], bool] = lambda _: True) -> tuple[Any, dict[str, Any]]:
    """A tracked migration of the fake provider; ``forward`` says which trials reach the tracker."""
    import yaml

    from migrator.testing import base_spec, make_sentiment_rows

    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(40)))
    (root / "migration.yaml").write_text(yaml.safe_dump(base_spec(budget={"trials": trials})))
    prepared = prepare(load_spec(root / "migration.yaml"))
    paths = default_out_paths(root)
    tracker = MlflowTracker(paths["tracking"], None, root / "mlartifacts")
    tracker.start(prepared, "study-resume", {})

    def log_trial(outcome: TrialOutcome) -> None:
        if forward(outcome):
            tracker.log_trial(outcome)

    result = run_migration(
        prepared, LiteLLMClient(max_retries=0), storage=paths["storage"], study_name="study-resume", callbacks=[log_trial]
    )
    return result, tracker.finish(result, {})


def _trial_runs(info: dict[str, Any]) -> dict[int, Any]:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(tracking_uri=info["tracking_uri"]).search_runs(
        [info["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{info['parent_run_id']}'"
    )
    numbers = [int(r.data.tags["migrator.trial"]) for r in runs]
    assert len(set(numbers)) == len(numbers), f"a trial was logged twice: {sorted(numbers)}"
    return dict(zip(numbers, runs, strict=True))


def test_a_trial_the_tracker_never_got_is_logged_by_finish_as_the_callback_would_have(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    seen: list[TrialOutcome] = []

    def first_only(outcome: TrialOutcome) -> bool:
        seen.append(outcome)
        return outcome.number == 0

    result, info = _migrate(tmp_path, trials=5, forward=first_only)
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    runs = _trial_runs(info)
    assert sorted(runs) == [o.number for o in result.search.trials] == [o.number for o in seen]
    assert any(o.config.demos for o in seen[1:])  # a lost trial whose prompt shows demos
    for outcome in seen:
        run = runs[outcome.number]
        assert (run.data.tags.get("migrator.backfilled") == "true") == (outcome.number != 0)
        assert run.info.status == {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}[outcome.state]
        assert run.data.metrics["dev_score"] == pytest.approx(outcome.summary.score)
        assert run.data.metrics["calls"] == outcome.summary.calls
        assert run.data.params["model"] == outcome.config.model and run.data.params["demos"] == str(outcome.config.demos)
        assert run.data.tags["target_model"] == outcome.config.model
        assert Path(client.download_artifacts(run.info.run_id, "prompt.txt")).read_text() == outcome.prompt_text
    assert client.get_run(info["parent_run_id"]).info.status == "FINISHED"


def test_rerunning_a_finished_migration_adds_no_nested_run(tmp_path: Path) -> None:
    first, info = _migrate(tmp_path, trials=3)
    again, info_again = _migrate(tmp_path, trials=3)
    assert info_again["parent_run_id"] == info["parent_run_id"]
    assert [o.number for o in again.search.trials] == [o.number for o in first.search.trials]
    runs = _trial_runs(info)
    assert sorted(runs) == [o.number for o in first.search.trials]
    assert not any("migrator.backfilled" in r.data.tags for r in runs.values())
