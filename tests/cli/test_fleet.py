"""`migrator fleet run | report | export` on a fleet of small apps against the loopback server.

Two apps of the fleet send identical requests (same prompt, data, targets and seed, other
names), so the shared cache is seen at the server: the second app costs no request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.testing import KEY_ENV, LoopbackServer, make_sentiment_rows, run_env, server_spec

KEY = "sk-test-fleet-0123456789abcdef"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("MIGRATOR_TODAY", "2026-12-02")


def _fleet(root: Path, api_base: str) -> Path:
    """support/twin-a and support/twin-b (identical but for their names), billing (its own seed), broken."""
    data = root / "reviews.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(30)))
    (root / "fleet.yaml").write_text(yaml.safe_dump({"budget": {"trials": 4}, "search_space": {"chunk_size": 10}}))
    for folder, name, seed in (("support/twin-a", "twin-a", 0), ("support/twin-b", "twin-b", 0), ("billing", "billing", 3)):
        spec = server_spec(api_base, str(data), name=name, seed=seed)
        del spec["budget"]  # from fleet.yaml
        (root / folder).mkdir(parents=True)
        (root / folder / "migration.yaml").write_text(yaml.safe_dump(spec))
    (root / "broken").mkdir()
    (root / "broken" / "migration.yaml").write_text(yaml.safe_dump({**server_spec(api_base, str(data)), "targets": []}))
    return root


def _migrator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args], capture_output=True, text=True, timeout=600, env=run_env(KEY)
    )


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    return {row["app"]: row for row in json.loads((out / "fleet.json").read_text())["apps"]}


def test_a_fleet_runs_every_app_skips_a_bad_one_shares_its_cache_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with LoopbackServer() as server:
        root = _fleet(tmp_path / "apps", server.api_base)
        first = _migrator("fleet", "run", str(root), "--out", str(out))
        after_first = len(server.attempts)
        first_rows = _rows(out)
        # as if the run was killed after billing's verdict but before its report (drawn in the background)
        (out / "billing" / "report.html").unlink()
        again = _migrator("fleet", "run", str(root), "--out", str(out))
        after_again = len(server.attempts)
    assert first.returncode == 2, first.stderr
    assert "broken" in first.stderr.splitlines()[-1] and "targets" in first.stderr
    rows = first_rows
    assert set(rows) == {"billing", "broken", "support/twin-a", "support/twin-b"}
    assert rows["broken"]["status"] == "error"
    for app in ("billing", "support/twin-a", "support/twin-b"):
        row = rows[app]
        assert row["status"] == "migrated" and (out / app / "report.html").is_file(), app
        assert row["winner"]["model"].startswith("openai/fault-") and row["winner"]["test_score"] is not None
        assert row["baseline"]["prompt_id"] == "original"
        assert row["model"] == "openai/fault-oracle"
    twin_a = json.loads((out / "support/twin-a" / "summary.json").read_text())
    twin_b = json.loads((out / "support/twin-b" / "summary.json").read_text())
    # the progress view counts an app's calls as soon as its search is done, not when its report is
    billing = json.loads((out / "billing" / "summary.json").read_text())["budget"]["spent"]["calls"]
    running_twin_a = next(line for line in first.stdout.splitlines() if "running support/twin-a" in line)
    assert f"calls {billing} ·" in running_twin_a and billing > 0, first.stdout
    assert twin_a["llm_calls"]["sent"] > 0
    assert twin_b["llm_calls"]["sent"] == 0, "the twin's identical requests were paid again"
    assert twin_b["llm_calls"]["cached"] > 0
    # a re-run resumes every app: nothing is paid again, the same rows come out
    assert again.returncode == 2 and after_again == after_first
    assert {a: r["winner"] for a, r in _rows(out).items() if r.get("winner")} == {
        a: r["winner"] for a, r in rows.items() if r.get("winner")
    }
    page = (out / "fleet.html").read_text()
    assert page.index("broken") < page.index("billing"), "the app that needs a look comes first"
    assert 'href="support/twin-a/report.html"' in page


def test_fleet_report_rebuilds_and_export_writes_each_winner_next_to_its_spec(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with LoopbackServer() as server:
        root = _fleet(tmp_path / "apps", server.api_base)
        assert _migrator("fleet", "run", str(root), "--out", str(out), "--no-tracking").returncode == 2
        before = (out / "fleet.json").read_text()
        (out / "fleet.json").unlink()
        (out / "fleet.html").unlink()
        report = _migrator("fleet", "report", str(out))
        assert report.returncode == 0, report.stderr
        assert (out / "fleet.json").read_text() == before and (out / "fleet.html").is_file()
        exported = _migrator("fleet", "export", str(out), "--to", str(root))
        assert exported.returncode == 0, exported.stderr
        assert not (root / "broken" / "winner.yaml").exists()
        for app in ("billing", "support/twin-a", "support/twin-b"):
            lock = root / app / "winner.yaml"
            assert lock.read_text() == (out / app / "winner.yaml").read_text()
            # the exported lockfile is a working one: it re-scores on the test split
            scored = _migrator("eval", str(lock), "--split", "test", "--cache", str(out / "cache.db"))
            assert scored.returncode == 0, scored.stderr
            assert f"score {_rows(out)[app]['winner']['test_score']:.3f}" in scored.stdout


def test_every_app_is_under_one_fleet_experiment_tagged_by_app(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with LoopbackServer() as server:
        root = _fleet(tmp_path / "apps", server.api_base)
        (root / "broken" / "migration.yaml").unlink()
        result = _migrator("fleet", "run", str(root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fleet-apps")
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id], "tags.`migrator.role` = 'parent'")
    assert sorted(r.data.tags["migrator.app"] for r in parents) == ["billing", "support/twin-a", "support/twin-b"]
    assert len({r.info.experiment_id for r in parents}) == 1


def test_a_worker_given_the_fleet_joins_each_app_of_a_fleet_run_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    import optuna

    out = tmp_path / "runs"
    with LoopbackServer() as server:
        root = _fleet(tmp_path / "apps", f"{server.base_url}/lat/0.3/v1")
        fleet = subprocess.Popen(
            [sys.executable, "-m", "migrator", "fleet", "run", str(root), "--out", str(out), "--storage", postgres_url, "--no-tracking", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env(KEY),
        )
        worker = _migrator("worker", str(root), "--storage", postgres_url, "--no-tracking", "--quiet", "--wait", "120")
        _, err = fleet.communicate(timeout=600)
    assert fleet.returncode == 2, err  # the broken app
    assert worker.returncode == 0, worker.stderr
    assert "app broken" in worker.stderr and "skipped" in worker.stderr
    assert worker.stdout.count("worker: ran") == 3
    by_worker: set[str] = set()
    for summary in optuna.study.get_all_study_summaries(postgres_url, include_best_trial=False):
        trials = optuna.load_study(study_name=summary.study_name, storage=postgres_url).get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == len(finished)
        by_worker |= {t.user_attrs["worker"]["id"] for t in finished}
    assert len(by_worker) >= 2, "the worker ran no trial of the fleet"
    assert {r["status"] for a, r in _rows(out).items() if a != "broken"} == {"migrated"}
