"""Scaffolding for tests that run ``migrator run`` as a child process against the loopback server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from migrator.testing._fake_provider import make_sentiment_rows
from migrator.testing._specs import KEY_ENV, server_spec

__all__ = ["TEMPLATED", "StudyRow", "awkward_rows", "run_command", "run_env", "study_rows", "wait_for", "write_project"]

StudyRow = tuple[int, str, dict[str, Any], list[float] | None, str]

# Inputs that look like template syntax to Jinja2 or Nunjucks: exports must pass them through as text.
TEMPLATED = ("{{ env.HOME }}", "{% if true %}yes{% endif %}", "{{ _expected }}")


def run_command(spec: Path, out: Path, *extra: str) -> list[str]:
    """``python -m migrator run SPEC --out OUT --quiet --no-tracking [extra]``."""
    return [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(out), "--quiet", "--no-tracking", *extra]


def run_env(key: str) -> dict[str, str]:
    """This process's environment with the loopback server's key set and litellm offline."""
    return {**os.environ, KEY_ENV: key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def study_rows(out: Path) -> list[StudyRow]:
    """(number, state, params, values, note) of every trial, read while another process may write.

    The note of a trial that its process lost, and that was queued again, is "interrupted".
    """
    db = sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True, timeout=30)
    try:
        trials = db.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        params: dict[int, dict[str, Any]] = {}
        for trial_id, name, value in db.execute("SELECT trial_id, param_name, param_value FROM trial_params"):
            params.setdefault(trial_id, {})[name] = value
        values: dict[int, list[float]] = {}
        for trial_id, value in db.execute("SELECT trial_id, value FROM trial_values ORDER BY objective"):
            values.setdefault(trial_id, []).append(value)
        notes = dict(db.execute("SELECT trial_id, value_json FROM trial_user_attributes WHERE key = 'note'").fetchall())
        requeued = {
            int(json.loads(v))
            for (v,) in db.execute("SELECT value_json FROM trial_user_attributes WHERE key = 'requeued_from'")
        }
    finally:
        db.close()
    return [
        (n, state, params.get(tid, {}), values.get(tid), "interrupted" if n in requeued else json.loads(notes.get(tid, '""')))
        for tid, n, state in trials
    ]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str] | None = None, timeout: float = 180) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def write_project(folder: Path, api_base: str, rows: int = 30, **overrides: Any) -> Path:
    """A dataset (written once) and a new numbered spec in ``folder`` against the server at ``api_base``."""
    data = folder / "reviews.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(rows)))
    spec = folder / f"migration-{len(list(folder.glob('migration-*.yaml')))}.yaml"
    spec.write_text(yaml.safe_dump(server_spec(api_base, str(data), **overrides)))
    return spec


def awkward_rows(awkward: bool) -> list[dict[str, str]]:
    """70 sentiment rows, some of them bare YAML numbers; awkward ones also hold template
    syntax, a trailing newline or a file URL."""
    rows = make_sentiment_rows(70, rng_words=lambda i: TEMPLATED[i % 3] if awkward and i % 5 == 0 else f"visit {i}")
    for i, row in enumerate(rows):
        if i % 10 == 3:
            row["review"] = ("1e3", "0o17", "true")[i % 3]  # YAML 1.2 would read these as a number or a bool
        if awkward and i % 5 == 1:
            row["review"] += "\n"
        if awkward and i % 5 == 2:
            row["review"] = "file:///etc/hostname " + row["review"]
    return rows
