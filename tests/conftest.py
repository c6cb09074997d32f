"""Shared fixtures: fake-provider datasets and specs written to a temp dir, and real PostgreSQL and mlflow servers."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from migrator.testing import (
    MlflowServer,
    PostgresServer,
    base_spec,
    make_sentiment_rows,
    postgres_available,
    register_fake_provider,
)

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session", autouse=True)
def _fake_provider() -> None:
    register_fake_provider()


def _fail_a_skip_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every component must be there: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI=true a skipped test fails: a missing chromium, promptfoo, llama.cpp or PostgreSQL is a red run.

    Elsewhere a test that needs a component the machine lacks skips with the reason.
    """
    outcome = yield
    _fail_a_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """The same for a module that skips as a whole (``importorskip``, ``allow_module_level``)."""
    outcome = yield
    _fail_a_skip_under_ci(outcome.get_result())


SpecWriter = Callable[..., Path]


PromptfooScores = Callable[[Path, str], dict[str, float]]


@pytest.fixture
def promptfoo_scores() -> PromptfooScores:
    """Runs ``promptfoo eval`` on a config in a folder: each test's score, by its description.

    The promptfoo CLI is ``MIGRATOR_PROMPTFOO``, the one on PATH, or the pinned one ``.ci/run``
    installs; the test skips without one (and so fails under CI).
    """
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    found = os.environ.get("MIGRATOR_PROMPTFOO") or shutil.which("promptfoo") or str(root / ".ci/node/node_modules/.bin/promptfoo")
    if not Path(found).is_file():
        pytest.skip("promptfoo is not installed (npm install promptfoo; or set MIGRATOR_PROMPTFOO)")

    def run(folder: Path, config: str) -> dict[str, float]:
        env = {**os.environ, "PROMPTFOO_PYTHON": sys.executable, "PROMPTFOO_DISABLE_TELEMETRY": "1",
               "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(folder / ".promptfoo")}  # fmt: skip
        command = [found, "eval", "-c", config, "--no-cache", "--no-progress-bar", "-o", "promptfoo-out.json"]
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        out = folder / "promptfoo-out.json"
        assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
        results = json.loads(out.read_text())["results"]["results"]
        assert not any(r.get("error") and r["failureReason"] == 2 for r in results), [r["error"] for r in results]
        return {r["testCase"]["description"]: float(r["score"]) for r in results}

    return run


@pytest.fixture
def write_spec(tmp_path: Path) -> SpecWriter:
    """Write a dataset of ``rows`` fake-readable reviews and a spec; returns the spec path."""

    def write(rows: int = 100, folder: str = "app", **overrides: Any) -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        data = root / "reviews.jsonl"
        if not data.exists():
            data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(rows)))
        path = root / "migration.yaml"
        path.write_text(yaml.safe_dump(base_spec(**overrides), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session; skips (fails under CI=true) where it cannot run."""
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The SQLAlchemy URL of a fresh, empty database of this test's own on ``postgres_server``."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return postgres_server.create_database(f"t_{stem}_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def mlflow_server(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real ``mlflow server`` for the session, its runs in a database of its own on ``postgres_server``."""
    backend = postgres_server.create_database("mlflow")
    with MlflowServer(backend, artifacts=tmp_path_factory.mktemp("mlflow-artifacts")) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A study database on SQLite and on a real PostgreSQL server: the same tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    found: str = request.getfixturevalue("postgres_url")
    return found
