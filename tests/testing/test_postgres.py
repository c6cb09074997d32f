"""The real PostgreSQL cluster and mlflow server of the integration tests: separate databases, a study
shared across processes, runs and artifacts that come back, and rows that really sit in PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import optuna
import pytest

from migrator.testing import MlflowServer, PostgresServer, _postgres, postgres_available

psycopg = pytest.importorskip("psycopg")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _libpq(url: str) -> str:
    """psycopg's own form of a SQLAlchemy URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _trials(storage: optuna.storages.BaseStorage, study: str) -> list[tuple[int, dict[str, float], float | None]]:
    loaded = optuna.load_study(study_name=study, storage=storage)
    return [(t.number, t.params, t.value) for t in loaded.get_trials(deepcopy=False)]


def test_the_url_is_the_sqlalchemy_form_on_loopback(postgres_server: PostgresServer, postgres_url: str) -> None:
    assert postgres_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/t_")
    assert postgres_server.url("x", driver=None) == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/x"


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_an_empty_database_of_its_own(postgres_url: str, turn: int) -> None:
    # run twice: the second would find the first's study if the database were shared
    storage = optuna.storages.RDBStorage(postgres_url)
    assert optuna.get_all_study_names(storage) == []
    optuna.create_study(study_name="same-name", storage=storage).add_trial(
        optuna.trial.create_trial(
            params={"x": 1.0}, distributions={"x": optuna.distributions.FloatDistribution(0, 2)}, value=1.0
        )
    )
    assert optuna.get_all_study_names(storage) == ["same-name"]


def test_two_databases_on_one_server_do_not_see_each_other(postgres_server: PostgresServer, postgres_url: str) -> None:
    other = postgres_server.create_database(f"other_{uuid.uuid4().hex[:8]}")
    optuna.create_study(study_name="mine", storage=postgres_url)

    def tables(url: str) -> set[str]:
        with psycopg.connect(_libpq(url)) as conn:
            return {name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    assert "studies" in tables(postgres_url)
    assert tables(other) == set()
    assert optuna.get_all_study_names(other) == []


def test_a_study_is_shared_with_a_second_process(postgres_url: str) -> None:
    storage = optuna.storages.RDBStorage(postgres_url)
    study = optuna.create_study(study_name="shared", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=3)
    child = textwrap.dedent(
        """
        import json, sys
        import optuna
        study = optuna.load_study(study_name="shared", storage=sys.argv[1])
        seen = [[t.number, t.params, t.value] for t in study.get_trials()]
        study.enqueue_trial({"x": 0.5})
        study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=1)
        print(json.dumps(seen))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child, postgres_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    mine = _trials(storage, "shared")
    assert [tuple(t) for t in json.loads(done.stdout)] == mine[:3]
    assert len(mine) == 4 and mine[3][1:] == ({"x": 0.5}, 0.25)  # the child's trial, seen here


def test_runs_nested_runs_and_artifacts_come_back_through_another_client(mlflow_server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    writer = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment_id = writer.create_experiment(f"roundtrip-{uuid.uuid4().hex[:8]}")
    parent = writer.create_run(experiment_id, run_name="parent")
    child = writer.create_run(experiment_id, run_name="child", tags={"mlflow.parentRunId": parent.info.run_id})
    writer.log_param(child.info.run_id, "model", "fake/good")
    writer.log_metric(child.info.run_id, "accuracy", 0.75)
    writer.log_text(parent.info.run_id, "what the migration found", "report/summary.txt")
    for run in (child, parent):
        writer.set_terminated(run.info.run_id)

    reader = MlflowClient(tracking_uri=mlflow_server.uri)
    nested = reader.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [r.info.run_id for r in nested] == [child.info.run_id]
    assert nested[0].data.params == {"model": "fake/good"} and nested[0].data.metrics == {"accuracy": 0.75}
    assert reader.get_run(parent.info.run_id).info.status == "FINISHED"
    assert [a.path for a in reader.list_artifacts(parent.info.run_id, "report")] == ["report/summary.txt"]
    fetched = Path(reader.download_artifacts(parent.info.run_id, "report/summary.txt", dst_path=None))
    assert fetched.read_text() == "what the migration found"
    assert mlflow_server.artifacts is not None  # the fixture names the folder: the server stores uploads there
    stored = list(mlflow_server.artifacts.rglob("summary.txt"))
    assert [p.read_text() for p in stored] == ["what the migration found"]


def test_the_mlflow_servers_runs_are_rows_in_postgres(mlflow_server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment_id = client.create_experiment(f"rows-{uuid.uuid4().hex[:8]}")
    run_ids = {client.create_run(experiment_id, run_name=f"r{i}").info.run_id for i in range(2)}
    with psycopg.connect(_libpq(mlflow_server.backend_store_uri)) as conn:
        rows = conn.execute("SELECT run_uuid FROM runs WHERE experiment_id = %s", (int(experiment_id),)).fetchall()
    assert {run_uuid for (run_uuid,) in rows} == run_ids


def test_stop_shuts_the_cluster_down_and_removes_its_files() -> None:
    if (reason := postgres_available()) is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        url = server.url(driver=None)
        with psycopg.connect(url) as conn:
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        assert data_dir.is_dir()
    assert not data_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_postgres, "_DEBIAN_BIN", tmp_path)  # fault: a machine without PostgreSQL
    reason = postgres_available()
    assert reason is not None and "initdb" in reason and "apt-get install postgresql" in reason
    with pytest.raises(RuntimeError, match="initdb"):
        PostgresServer().start()


def test_an_mlflow_server_that_dies_at_start_fails_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"exited \(\d+\)[\s\S]*nowhere"):
        MlflowServer("nowhere://at/all", artifacts=tmp_path).start()
