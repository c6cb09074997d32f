"""`migrator run SPEC --dry-run` as a user runs it: the plan printed, exit 0, no call, no file."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator import cli
from migrator.models import import_litellm
from migrator.testing import KEY_ENV, LoopbackServer, make_sentiment_rows, server_spec

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
REPO = Path(__file__).resolve().parents[2]
SpecWriter = Callable[..., Path]


def migrator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dry_run_prints_the_plan_and_creates_nothing(write_spec: SpecWriter, tmp_path: Path) -> None:
    space = {
        "demos": {"k": [0, 2], "strategies": ["random", "knn"]},
        "temperature": {"low": 0.0, "high": 0.4, "step": 0.2},
    }
    spec = write_spec(rows=40, search_space=space, budget={"trials": 10, "calls": 300, "finalists": 2})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = _files(tmp_path)
    proc = migrator("run", str(spec), "--out", str(tmp_path / "out"), "--dry-run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "fake/weak" in out and "fake/fewshot" in out
    # 2 targets x 1 prompt x 3 demo options x 3 temperatures
    assert "search space: 18 configs" in out
    # the search gets 300 - 189 kept for the verdict and the legacy probe; the total is capped by the budget
    assert "binds: calls" in out and "leaves 111 for the search" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert " 300 " in total and "capped by budget.calls" in total
    # no output directory, study, cache or MLflow store, here or in the working directory
    assert _files(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_dry_run_sends_no_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-dry-run-0123456789")
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(30)))
    spec = tmp_path / "migration.yaml"
    with LoopbackServer() as server:
        # a proposer on the server too: rewrites and reflections are planned, not asked for
        proposer = {"model": "openai/fault-echo", "api_base": server.api_base, "api_key_env": KEY_ENV}
        space = {"prompt": {"transforms": [], "proposer": proposer, "rewrites": 2, "reflections": 1}}
        spec.write_text(yaml.safe_dump(server_spec(server.api_base, str(data), search_space=space)))
        code = cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"])
        assert server.attempts == [] and server.served == 0
    assert code == 0
    out = capsys.readouterr().out
    assert "openai/fault-fewshot" in out and "openai/fault-weak" in out
    assert "up to 2 rewrites for openai/fault" in out and "reflect-1" in out
    # the legacy app lives on the server as well: it is planned on the test split
    assert "openai/fault-oracle on" in out
    assert not (tmp_path / "out").exists()


def test_dry_run_prices_calls_from_litellms_map(
    write_spec: SpecWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {"demos": {"k": [0]}, "temperature": None}
    spec = write_spec(rows=40, search_space=space, targets=["openai/gpt-4o-mini"], app={"model": "openai/gpt-4o-mini"})
    assert cli.main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    price = import_litellm().model_cost["gpt-4o-mini"]
    from migrator.migration import prepare
    from migrator.spec import load_spec

    dev = prepare(load_spec(spec)).splits.dev
    system = "Classify the sentiment of the review."
    tokens = math.ceil(statistics.fmean(len(system) + len(f"Review: {ex.inputs['review']}") for ex in dev) / 4)
    per_call = tokens * price["input_cost_per_token"] + 5 * price["output_cost_per_token"]
    assert f"${per_call:.6f} (~{tokens} in + 5 out tokens)" in out
    # 20 dev calls for the one config, 48 for the verdict (1 baseline + 3 finalists on 12 test rows)
    assert f"${68 * per_call:.4f}" in next(line for line in out.splitlines() if "total" in line)


def test_a_model_without_a_price_says_so(write_spec: SpecWriter, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(rows=40, targets=["openai/no-such-model-anywhere", "fake/weak"])
    assert cli.main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "price unknown for openai/no-such-model-anywhere" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert "price unknown" in total and "$0.0000" not in total


def test_local_models_are_planned_without_starting_their_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import migrator.local

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run started a llama.cpp server")

    monkeypatch.setattr(migrator.local, "LocalServer", no_server)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(REPO / "datasets" / "review-sentiment" / "migration.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "local/qwen2.5-coder-0.5b-instruct" in out and "local/gemma-3-270m" in out
    assert "$0.0000" in next(line for line in out.splitlines() if "total" in line)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["budget"].update(usd=-1), "budget.usd"),
        (lambda d: d["dataset"].update(path="missing.jsonl"), "dataset.path"),
        (lambda d: d.update(targets=["gpt-4o"]), "targets.0.model"),
        (lambda d: d["app"]["messages"][1].update(content="Review: {{ reveiw }}"), "reveiw"),
        (lambda d: d.update(storage="mysql://db/x"), "storage"),
    ],
)
def test_a_bad_spec_exits_2_with_one_line_naming_file_and_field(
    write_spec: SpecWriter, tmp_path: Path, edit: Callable[[dict], None], needle: str
) -> None:
    spec = write_spec()
    data = yaml.safe_load(spec.read_text())
    edit(data)
    spec.write_text(yaml.safe_dump(data))
    proc = migrator("run", str(spec), "--out", str(tmp_path / "out"), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "migration.yaml" in lines[0] and needle in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_run_without_out_or_dry_run_exits_2_naming_out(write_spec: SpecWriter, tmp_path: Path) -> None:
    proc = migrator("run", str(write_spec()), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "migrator: error: migrator run needs --out DIR (the output directory), unless it is a --dry-run"
    ]
