"""benchmarks/vs_peers.py end to end on the fake provider (``--smoke``), its rerun and its summary.

The real comparison needs hours of llama.cpp; the smoke run goes through the same pipeline
(MIPROv2, GEPA, then migrator at the smaller of their call totals, one curve point) on
migrator's fake provider, in a temporary results folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCH / "vs_peers.py"
sys.path.insert(0, str(BENCH))

from vs_peers import paired, t_interval  # noqa: E402

SYSTEMS = ("migrator", "miprov2", "gepa")


def _vs_peers(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("vs_peers") / "runs"
    done = _vs_peers("--smoke", "--curve", "--curve-points", "200", "--results", str(results))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return results


def _record(results: Path, system: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((results / f"review-sentiment-seed1-{system}.json").read_text())
    return record


def test_smoke_writes_a_result_per_system(smoke: Path) -> None:
    for system in SYSTEMS:
        record = _record(smoke, system)
        score, calls = record["test_score"], record["total_calls"]
        assert isinstance(score, float) and 0.0 <= score <= 1.0, (system, record.get("error"))
        assert isinstance(calls, int) and calls > 0, system
        assert record["smoke"] is True and "in process" in record["calls_counted_by"]
        assert "200" in record["curve"]["points"] and record["curve"]["meaning"]


def test_migrator_gets_no_more_calls_than_either_peer(smoke: Path) -> None:
    totals = {peer: _record(smoke, peer)["total_calls"] for peer in ("miprov2", "gepa")}
    ours = _record(smoke, "migrator")
    assert ours["budget_calls"] == min(totals.values())
    assert ours["total_calls"] <= ours["budget_calls"]


def test_a_rerun_skips_what_is_stored(smoke: Path) -> None:
    before = {s: (smoke / f"review-sentiment-seed1-{s}.json").read_text() for s in SYSTEMS}
    done = _vs_peers("--smoke", "--curve", "--curve-points", "200", "--results", str(smoke))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("stored, skipped") == len(SYSTEMS)
    assert before == {s: (smoke / f"review-sentiment-seed1-{s}.json").read_text() for s in SYSTEMS}


def test_summary_prints_a_table_naming_every_system(smoke: Path) -> None:
    done = _vs_peers("--summary", "--results", str(smoke))
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout.split("Markdown (README):")[0]
    for name in ("migrator", "MIPROv2", "GEPA", "@200", "SMOKE RUN"):
        assert name in table
    assert "| **migrator** |" in done.stdout
    summary = json.loads((smoke.parent / "runs.json").read_text())
    assert set(summary["datasets"]["review-sentiment"]["systems"]) == set(SYSTEMS)


def test_seed_statistics() -> None:
    mean, low, high = t_interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9)
    # t(0.975, 2) = 4.3027; sd 0.1 over sqrt(3)
    assert (low, high) == pytest.approx((0.9 - 0.24841, 0.9 + 0.24841), abs=1e-4)
    assert t_interval([0.5]) == (0.5, None, None)
    ours = {1: 0.90, 2: 0.92, 3: 0.88, 4: 0.95, 5: 0.91}
    theirs = {1: 0.85, 2: 0.90, 3: 0.88, 4: 0.90, 5: 0.86, 6: 0.99}  # seed 6: migrator has none
    test = paired(ours, theirs)
    assert test["seeds"] == [1, 2, 3, 4, 5]
    assert (test["wins"], test["losses"], test["ties"]) == (4, 0, 1)
    assert test["mean_diff"] == pytest.approx(0.034)
    # paired t on the differences (0.05, 0.02, 0, 0.05, 0.05): t = 3.302 on 4 df
    assert test["t_test_p"] == pytest.approx(0.02987, abs=1e-4)
    # exact Wilcoxon on the 4 non-zero differences: all positive, p = 2 / 2^4
    assert test["wilcoxon_p"] == pytest.approx(0.125)
    assert paired({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6})["t_test_p"] == 1.0
