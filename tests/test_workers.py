"""Many workers on one migration, end to end: a real PostgreSQL study, a real `mlflow server`, real processes.

`migrator run --workers N --storage postgresql+psycopg://...` and `migrator worker`, against
the loopback server with a fixed latency, so that trials last long enough for the workers
to share them (and for a kill to land inside one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

from migrator.testing import KEY_ENV, FaultPlan, LoopbackServer, MlflowServer, run_env, wait_for, write_project

KEY = "sk-test-workers-0123456789abcdef"
HELD_KEY = "sk-test-workers-held-0123456789"
# 2 targets x (no demos + 2 strategies x 2 sizes): 10 configs, all scored within the budget
SPACE = {"demos": {"k": [0, 2, 4], "strategies": ["random", "knn"]}, "timeout_s": 120.0, "concurrency": 8}


@pytest.fixture(autouse=True)
def _fast_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # child processes read it: a worker silent for 5 s is gone
    monkeypatch.setenv("MIGRATOR_HEARTBEAT_GRACE_S", "5")
    monkeypatch.setenv(KEY_ENV, KEY)


def _project(tmp_path: Path, server: LoopbackServer, latency_s: float, **overrides: Any) -> Path:
    api_base = f"{server.base_url}/lat/{latency_s}/v1"
    return write_project(tmp_path, api_base, rows=30, search_space=SPACE, **overrides)


def _run(spec: Path, out: Path, *extra: str, key: str = KEY, cwd: Path | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, env=run_env(key), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def _worker(spec: Path, storage: str, *extra: str, key: str, cwd: Path) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "migrator", "worker", str(spec), "--storage", storage, "--quiet", *extra]
    return subprocess.Popen(cmd, env=run_env(key), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _trials(storage: str) -> list[Any]:
    (summary,) = optuna.study.get_all_study_summaries(storage, include_best_trial=False)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def _scored(trials: list[Any]) -> list[str]:
    """The configs the study scored (a lost trial is not; its re-queued copy is)."""
    requeued = {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}
    return [json.dumps(t.params, sort_keys=True) for t in trials if t.state.is_finished() and t.number not in requeued]


def _mlflow_runs(server: MlflowServer, study: str) -> tuple[Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, f"tags.`migrator.study` = '{study}' and tags.`migrator.role` = 'parent'")
    assert len(parents) == 1, "one parent run per migration, whatever the number of workers"
    trials = client.search_runs(experiments, f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'", max_results=1000)
    return parents[0], trials


def test_four_workers_share_one_study_one_budget_and_one_parent_run(
    tmp_path: Path, postgres_url: str, mlflow_server: MlflowServer
) -> None:
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.4, budget={"trials": 12})
        code, _, err = _finish(_run(spec, tmp_path / "out", "--workers", "4", "--storage", postgres_url, "--tracking-uri", mlflow_server.uri))
        served = len(server.attempts)
    assert code == 0, err
    trials = _trials(postgres_url)
    scored = _scored(trials)
    # 10 configs in the space: all scored, none twice, and the search says it ran out of configs
    assert len(scored) == 10 and len(set(scored)) == 10
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    workers = {t.user_attrs["worker"]["id"] for t in trials if t.state.is_finished()}
    assert len(workers) >= 2, f"one process ran every trial: {workers}"
    # the budget is counted once, at the server's database, for every process
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        calls = conn.execute(sa.text("SELECT calls FROM migrator_spend")).scalar_one()
        roles = dict(conn.execute(sa.text("SELECT role, COUNT(*) FROM migrator_workers GROUP BY role")).all())
        cached = conn.execute(sa.text("SELECT COUNT(*) FROM responses")).scalar_one()
    engine.dispose()
    assert calls == served and roles == {"run": 1, "worker": 3}
    assert cached > 0, "the replies are cached in the study's PostgreSQL database"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["winner"]["model"] in ("openai/fault-fewshot", "openai/fault-weak")
    parent, nested = _mlflow_runs(mlflow_server, summary["study"]["name"])
    assert parent.info.status == "FINISHED"
    numbers = sorted(int(r.data.tags["migrator.trial"]) for r in nested if r.data.tags.get("migrator.role") == "trial")
    assert numbers == sorted(t.number for t in trials if t.state.is_finished())
    assert not [r for r in nested if "migrator.backfilled" in r.data.tags], "a worker's trial was not logged by the worker"


def test_the_calls_budget_holds_across_workers(tmp_path: Path, postgres_url: str) -> None:
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.2, budget={"trials": 40, "calls": 90})
        code, _, err = _finish(_run(spec, tmp_path / "out", "--workers", "3", "--storage", postgres_url, "--no-tracking"))
        served = len(server.attempts)
    assert code in (0, 3), err
    assert served <= 90, f"the provider saw {served} requests against a budget of 90"
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT calls FROM migrator_spend")).scalar_one() == served
    engine.dispose()


def test_a_killed_worker_on_another_machine_loses_only_its_trial(tmp_path: Path, postgres_url: str, postgres_server: Any) -> None:
    # The "second machine" is a worker in a directory of its own whose requests the server
    # holds: its first trial never ends until it is killed. The run then re-runs that trial.
    with LoopbackServer(FaultPlan(hold_after=0, hold_key=HELD_KEY)) as server:
        spec = _project(tmp_path, server, 0.2, budget={"trials": 12})
        run = _run(spec, tmp_path / "out", "--storage", postgres_url, "--no-tracking")
        worker = _worker(spec, postgres_url, "--no-tracking", key=HELD_KEY, cwd=tmp_path / "machine2")
        try:
            wait_for(lambda: _running_trial_of(postgres_url, worker.pid) is not None, run)
            lost = _running_trial_of(postgres_url, worker.pid)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.communicate()
        code, _, err = _finish(run)
        server.release()
        # the same migration in one process, on a database of its own
        single = postgres_server.create_database("single_" + os.urandom(4).hex())
        single_code, _, single_err = _finish(_run(spec, tmp_path / "single", "--storage", single, "--no-tracking"))
    assert code == 0, err
    assert single_code == 0, single_err
    trials = _trials(postgres_url)
    assert [t.state.name for t in trials if t.number == lost] == ["FAIL"]
    copies = [t for t in trials if t.user_attrs.get("requeued_from") == lost]
    assert len(copies) == 1 and copies[0].state.is_finished()
    assert sorted(_scored(trials)) == sorted(_scored(_trials(single)))
    assert len(set(_scored(trials))) == len(_scored(trials))


def _running_trial_of(storage: str, pid: int) -> int | None:
    try:
        trials = _trials(storage)
    except (ValueError, KeyError):  # no study yet
        return None
    for t in trials:
        if t.state.name == "RUNNING" and t.user_attrs.get("worker", {}).get("pid") == pid:
            return int(t.number)
    return None


def test_a_worker_on_a_spec_nobody_runs_gives_up_with_one_line(tmp_path: Path, postgres_url: str) -> None:
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.0)
        started = time.monotonic()
        code, _, err = _finish(_worker(spec, postgres_url, "--no-tracking", "--wait", "2", key=KEY, cwd=tmp_path / "w"))
    assert code == 2 and time.monotonic() - started < 60
    assert "no study" in err and "migrator run" in err and len(err.strip().splitlines()) == 1


def test_a_storage_that_is_no_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.0)
        code, _, err = _finish(_run(spec, tmp_path / "out", "--storage", "redis://cache:6379/0", "--no-tracking"))
    assert code == 2
    assert err.strip() == (
        "migrator: error: --storage: expected a database URL such as sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, got 'redis'"
    )
    assert not (tmp_path / "out").exists(), "nothing is written for a bad input"


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.0)
        url = "postgresql+psycopg://mig:hunter2-secret@127.0.0.1:1/migrator"
        code, out, err = _finish(_run(spec, tmp_path / "out", "--storage", url, "--no-tracking"))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "mig:***@" in lines[0], err
    assert "hunter2" not in err + out


def test_a_password_in_the_storage_url_reaches_no_process_list_log_or_output(
    tmp_path: Path, postgres_server: Any, mlflow_server: MlflowServer
) -> None:
    # the test server trusts every local connection, so any password gets in
    secret = "pw-" + os.urandom(6).hex()
    url = postgres_server.create_database("secret_" + os.urandom(4).hex()).replace("postgres@", f"postgres:{secret}@")
    seen_in_ps: list[str] = []
    with LoopbackServer() as server:
        spec = _project(tmp_path, server, 0.3, budget={"trials": 6})
        run = _run(spec, tmp_path / "out", "--workers", "3", "--storage", url, "--tracking-uri", mlflow_server.uri)
        while run.poll() is None:
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if secret in text and str(run.pid) not in cmdline.parts[2]:
                    seen_in_ps.append(text.replace("\0", " "))
            time.sleep(0.2)
        code, out, err = _finish(run)
    assert code == 0, err
    assert not seen_in_ps, f"a worker's command line shows the password: {seen_in_ps[0]}"
    assert secret not in out + err
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix != ".db":
            assert secret.encode() not in path.read_bytes(), f"{path} holds the password"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["study"]["storage"].startswith("postgresql+psycopg://postgres:***@")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    for r in runs:
        assert secret not in json.dumps([r.data.params, r.data.tags, r.data.metrics])


def test_migrator_ui_points_at_a_running_mlflow_server(mlflow_server: MlflowServer) -> None:
    ui = subprocess.run(
        [sys.executable, "-m", "migrator", "ui", "--tracking-uri", mlflow_server.uri],
        capture_output=True, text=True, timeout=120, env=run_env(KEY),
    )
    assert ui.returncode == 0, ui.stderr
    assert f"{mlflow_server.uri}/#/experiments" in ui.stdout
    gone = subprocess.run(
        [sys.executable, "-m", "migrator", "ui", "--tracking-uri", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=120, env=run_env(KEY),
    )
    assert gone.returncode == 1 and "does not answer" in gone.stderr
