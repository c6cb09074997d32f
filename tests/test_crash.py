"""Crash safety: a SIGKILLed `migrator run` resumes where it stopped; shared files survive.

The provider is the loopback fault server, holding requests at a chosen point so the
kill lands mid-search every time, not when the scheduler happens to allow it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from migrator import cli
from migrator.testing import (
    KEY_ENV,
    FaultPlan,
    LoopbackServer,
    run_command,
    run_env,
    study_rows,
    wait_for,
    write_project,
)

KEY = "sk-test-crash-0123456789abcdef"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "prompt_id", "params", "demos", "demo_strategy", "dev_score", "test_score", "test_ci")
    return {role: {k: summary[role][k] for k in keys} for role in ("winner", "baseline")}


def _searched(trials: list[tuple[int, str, dict[str, Any], list[float] | None, str]]) -> list[tuple[Any, ...]]:
    """The search as a sequence of (state, params, values), without the trials a kill cut short."""
    return [(state, params, values) for _, state, params, values, note in trials if not note.startswith("interrupted")]


def test_a_killed_run_resumes_keeping_its_trials_and_cache_and_ends_as_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trials 0 and 1 (the warm start) take 15 dev calls each; the server then answers 10
    # more of the killed run's calls and holds the rest, so the kill lands inside trial 2
    # or 3. The uninterrupted run has another key, so it is never held: it runs meanwhile.
    with LoopbackServer(FaultPlan(hold_after=40, hold_key=KEY)) as server:
        # a long timeout: held requests must not time out and fail before the kill
        space = {"timeout_s": 60.0, "demos": {"k": [0, 2, 4], "strategies": ["random"]}}
        spec = write_project(tmp_path, server.api_base, search_space=space, budget={"trials": 7})
        out = tmp_path / "out"
        proc = subprocess.Popen(
            run_command(spec, out), env=run_env(KEY), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            monkeypatch.setenv(KEY_ENV, "sk-test-crash-uninterrupted-0123456789")
            assert cli.main(["run", str(spec), "--out", str(tmp_path / "straight"), "--quiet", "--no-tracking"]) == 0
            wait_for(lambda: sum(server.held().values()) > 0 and (out / "study.db").exists(), proc)
            wait_for(lambda: sum(t[1] == "COMPLETE" for t in study_rows(out)) >= 2, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        before = study_rows(out)
        with sqlite3.connect(out / "cache.db") as db:
            answered = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        server.release()
        assert any(state == "RUNNING" for _, state, *_ in before), "killed between trials, not inside one"
        finished = [t for t in before if t[1] in ("COMPLETE", "PRUNED")]
        assert len(finished) >= 2 and answered > 0

        rerun = subprocess.run(run_command(spec, out), env=run_env(KEY), capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr

    resumed = json.loads((out / "summary.json").read_text())
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    after = {t[0]: t for t in study_rows(out)}
    # the trials finished before the kill are kept as they were
    for number, state, params, values, _ in finished:
        assert after[number][1:4] == (state, params, values)
    # no answered call is paid for again: the rerun makes only the calls that were never answered
    assert resumed["llm_calls"]["cached"] > 0
    assert resumed["llm_calls"]["made"] <= straight["llm_calls"]["made"] - answered
    # and the migration ends exactly as one that was never killed
    assert _searched(list(after.values())) == _searched(study_rows(tmp_path / "straight"))
    assert _verdict(resumed) == _verdict(straight)
    assert resumed["trials"] == straight["trials"]


def test_two_migrations_sharing_one_cache_and_one_study_store_both_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    cache = shared / "cache.db"
    keys = {"main": "sk-test-crash-main-0123456789", "child": "sk-test-crash-child-0123456789"}
    # Every request waits until both processes are calling, so their writes overlap.
    with LoopbackServer(FaultPlan(hold_after=0)) as server:
        storage = f"sqlite:///{shared / 'study.db'}"
        patient = {"timeout_s": 60.0}  # held requests wait for the other process to start, not time out
        spec_a = write_project(tmp_path, server.api_base, study=storage, search_space=patient)
        spec_b = write_project(tmp_path, server.api_base, study=storage, search_space=patient, seed=1)

        def release_when_both_call() -> None:
            wanted = {f"Bearer {k}" for k in keys.values()}
            wait_for(lambda: wanted <= set(server.held()), timeout=240)
            server.release()

        releaser = threading.Thread(target=release_when_both_call, daemon=True)
        releaser.start()
        child = subprocess.Popen(
            run_command(spec_b, tmp_path / "b", "--cache", str(cache)),
            env=run_env(keys["child"]),
            stderr=subprocess.PIPE,
            text=True,
        )
        monkeypatch.setenv(KEY_ENV, keys["main"])
        code = cli.main(
            ["run", str(spec_a), "--out", str(tmp_path / "a"), "--quiet", "--no-tracking", "--cache", str(cache)]
        )
        _, child_err = child.communicate(timeout=300)
        releaser.join(timeout=1)
    assert code == 0
    assert child.returncode == 0, child_err
    summaries = [json.loads((tmp_path / side / "summary.json").read_text()) for side in ("a", "b")]
    for summary in summaries:
        # 2 targets x 0 or 2 demos: the search ends once those 4 configs are scored
        assert summary["trials"]["complete"] == summary["trials"]["total"] == 4
        assert summary["space_exhausted"] is True
        assert summary["winner"] is not None
    assert summaries[0]["study"]["name"] != summaries[1]["study"]["name"]
    for db_path in (cache, shared / "study.db"):
        with sqlite3.connect(db_path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    made = [s["llm_calls"]["made"] for s in summaries]
    # every answered call is in the cache once; calls both made at the same moment are kept once
    assert max(made) <= rows <= sum(made)


def test_a_call_budget_holds_across_a_kill_and_a_resume_as_counted_at_the_provider(tmp_path: Path) -> None:
    # What the provider saw, not what migrator counted: every attempt the loopback server
    # received, from the killed run and the resumed one (retries of its 429s and 500s too).
    budget = 90
    plan = FaultPlan(rates={"rate_limit": 0.1, "server_error": 0.05}, seed=3, hold_after=55, hold_key=KEY)
    with LoopbackServer(plan) as server:
        space = {"timeout_s": 60.0, "demos": {"k": [0, 2, 4], "strategies": ["random", "stratified"]}, "max_retries": 4}
        spec = write_project(tmp_path, server.api_base, search_space=space, budget={"trials": 40, "calls": budget})
        out = tmp_path / "out"
        proc = subprocess.Popen(run_command(spec, out), env=run_env(KEY), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: sum(server.held().values()) > 0, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        before_kill = len(server.attempts)
        server.release()
        assert before_kill >= 55
        rerun = subprocess.run(run_command(spec, out), env=run_env(KEY), capture_output=True, text=True, timeout=300)
        assert rerun.returncode in (0, 3), rerun.stderr
        sent_in_all = len(server.attempts)
    summary = json.loads((out / "summary.json").read_text())
    assert server.faults(), "the provider faulted, so retries were sent"
    assert sent_in_all > before_kill, "the resumed run sent requests of its own"
    assert sent_in_all <= budget
    # the study's count is the provider's: the resumed run continued the killed run's count
    assert sent_in_all <= summary["budget"]["spent"]["calls"] <= budget
    assert summary["stopped_by"] == "calls"
