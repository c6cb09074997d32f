"""`migrator check`: one row per app of a fleet, its legacy model's retirement, and an exit code for CI.

Dates from litellm 1.110.2's shipped map, judged on MIGRATOR_TODAY=2026-12-01.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from migrator.cli import main

TODAY = "2026-12-01"
NOTICE = "https://docs.anthropic.com/en/docs/about-claude/model-deprecations"
# app folder -> legacy model
APPS = {
    "invoices": "openai/gpt-4-0613",  # retired 2026-10-23 (litellm)
    "support/triage": "openai/gpt-4o-mini-2024-07-18",  # retires 2027-01-14 (litellm)
    "search": "azure/gpt-4o-2024-08-06",  # retires 2027-04-14 (litellm, Azure's own entry)
    "summaries": "anthropic/claude-3-5-sonnet-20240620",  # no date in litellm; the team's file has one
}


@pytest.fixture(autouse=True)
def _fixed_day(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MIGRATOR_TODAY", TODAY)
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    monkeypatch.chdir(tmp_path)  # paths as a user types them: fleet/...


@pytest.fixture
def fleet(write_spec: Callable[..., Path], tmp_path: Path) -> Path:
    """Four apps with fleet.yaml defaults (a catalog, a budget, the team's deprecations file); the root, relative."""
    for folder, model in APPS.items():
        # invoices' targets come from its successor and the fleet's catalog
        extra = {"targets": "auto"} if folder == "invoices" else {}
        write_spec(rows=20, folder=f"fleet/{folder}", app={"model": model}, **extra)
    root = tmp_path / "fleet"
    (root / "fleet.yaml").write_text(
        yaml.safe_dump({"catalog": ["openai/gpt-5.6-sol"], "budget": {"trials": 5}, "deprecations": "deprecations.yaml"})
    )
    (root / "deprecations.yaml").write_text(
        "- model: anthropic/claude-3-5-sonnet-20240620\n"
        "  deprecation_date: 2025-10-22\n"
        "  successor: anthropic/claude-sonnet-4-5\n"
        f"  source: {NOTICE}\n"
    )
    return root.relative_to(tmp_path)


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> list[list[str]]:
    """The table's body rows, as their cells."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")]


def test_the_table_lists_retired_first_then_retiring_then_ok_with_where_each_date_came_from(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _check(capsys, str(fleet))

    assert code == 1, err
    assert "retirements on 2026-12-01 (retiring: within 90 days)" in out
    assert _rows(out) == [
        ["summaries", APPS["summaries"], "2025-10-22", "-405", "anthropic/claude-sonnet-4-5", "retired", str(fleet / "deprecations.yaml")],
        ["invoices", APPS["invoices"], "2026-10-23", "-39", "openai/gpt-5.6-sol", "retired", "litellm"],
        ["support/triage", APPS["support/triage"], "2027-01-14", "44", "openai/gpt-6-luna", "retiring", "litellm"],
        ["search", APPS["search"], "2027-04-14", "134", "azure/gpt-5.1", "ok", "litellm"],
    ]
    assert err == ""


def test_json_gives_every_field_for_other_tools(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _check(capsys, str(fleet), "--json")

    rows = {row["app"]: row for row in json.loads(out)}
    assert code == 1
    assert list(rows) == ["summaries", "invoices", "support/triage", "search"]
    assert rows["summaries"] == {
        "app": "summaries",
        "spec": str(fleet / "summaries" / "migration.yaml"),
        "model": "anthropic/claude-3-5-sonnet-20240620",
        "deprecation_date": "2025-10-22",
        "days_left": -405,
        "successor": "anthropic/claude-sonnet-4-5",
        "status": "retired",
        "source": str(fleet / "deprecations.yaml"),
        "notice": NOTICE,
        "error": None,
    }
    assert {app: (r["status"], r["days_left"], r["source"]) for app, r in rows.items() if app != "summaries"} == {
        "invoices": ("retired", -39, "litellm"),
        "support/triage": ("retiring", 44, "litellm"),
        "search": ("ok", 134, "litellm"),
    }


def test_no_app_retiring_exits_0_and_an_undated_model_is_unknown(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the apps on their own: fleet.yaml (and its deprecations file) is not theirs, so summaries has no date
    code, out, _ = _check(capsys, str(fleet / "search"), str(fleet / "summaries"))

    assert code == 0
    assert [(row[0], row[5], row[6]) for row in _rows(out)] == [("summaries", "unknown", "-"), ("search", "ok", "litellm")]


def test_the_window_and_another_deprecations_file_change_the_verdict(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extension = tmp_path / "extension.yaml"
    extension.write_text("- {model: openai/gpt-4-0613, deprecation_date: '2027-06-30'}\n")

    code, out, _ = _check(capsys, str(fleet), "--within", "30", "--deprecations", str(extension), "--json")

    rows = {row["app"]: (row["status"], row["source"]) for row in json.loads(out)}
    assert code == 0
    assert rows == {
        "support/triage": ("ok", "litellm"),  # 44 days left, outside 30
        "search": ("ok", "litellm"),
        "invoices": ("ok", str(extension)),
        "summaries": ("unknown", None),  # fleet.yaml's file no longer applies
    }


def test_a_bad_app_is_a_row_and_a_line_and_the_others_are_still_checked(
    fleet: Path, write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_spec(rows=20, folder="fleet/broken", app={"model": "gpt-4o"})

    code, out, err = _check(capsys, str(fleet))

    assert code == 2
    rows = _rows(out)
    assert [row[0] for row in rows] == ["summaries", "invoices", "support/triage", "search", "broken"]
    assert rows[-1][5] == "error"
    assert err == (
        "migrator: error: fleet/broken/migration.yaml: app.model: must be a provider-prefixed model id such as 'openai/gpt-4o-mini', got 'gpt-4o'\n"
    )


def test_a_bad_app_in_json_carries_its_message(
    fleet: Path, write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_spec(rows=20, folder="fleet/broken", budgett={"trials": 1})

    code, out, _ = _check(capsys, str(fleet), "--json")

    broken = json.loads(out)[-1]
    assert code == 2
    assert (broken["app"], broken["status"], broken["model"]) == ("broken", "error", None)
    assert broken["error"] == "fleet/broken/migration.yaml: budgett: unknown key (not one of the fields this section accepts)"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--within", "-1"], "--within: must be a number of days >= 0, got -1"),
        (["--deprecations", "DEPRECATIONS"], "[0].deprecation_date: must be a date YYYY-MM-DD, got 'soon'"),
        (["--deprecations", "nowhere.yaml"], "nowhere.yaml: file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {model: openai/gpt-4-0613, deprecation_date: soon}\n")
    args = [str(bad) if a == "DEPRECATIONS" else a for a in args]

    code, out, err = _check(capsys, str(fleet), *args)

    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and needle in err


def test_a_bad_migrator_today_and_a_missing_folder_exit_2(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _check(capsys, str(tmp_path / "nowhere"))[::2] == (2, f"migrator: error: {tmp_path / 'nowhere'}: no such file or folder\n")
    monkeypatch.setenv("MIGRATOR_TODAY", "tomorrow")
    assert _check(capsys, str(fleet))[::2] == (2, "migrator: error: MIGRATOR_TODAY: must be a date YYYY-MM-DD, got 'tomorrow'\n")


def test_the_command_as_a_nightly_job_runs_it(fleet: Path) -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # MIGRATOR_TODAY is set
    proc = subprocess.run(
        [sys.executable, "-m", "migrator", "check", str(fleet), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )

    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["app"], r["status"]) for r in rows][:2] == [("summaries", "retired"), ("invoices", "retired")]
    assert rows[0]["spec"] == "fleet/summaries/migration.yaml" and rows[0]["source"] == "fleet/deprecations.yaml"


def test_the_shipped_example_fleet_has_a_retired_app_retiring_ones_and_an_undated_one(capsys: pytest.CaptureFixture[str]) -> None:
    datasets = Path(__file__).resolve().parents[2] / "datasets"

    code, out, _ = _check(capsys, str(datasets), "--json")

    rows = {row["app"]: row for row in json.loads(out)}
    assert code == 1  # some are retired or retiring: a nightly job alerts
    assert {app: row["status"] for app, row in rows.items()} == {
        "support-sentiment": "retired",
        "invoice-extraction": "retiring",
        "order-math": "retiring",
        "order-math-gpt41": "retiring",
        "review-sentiment": "retiring",
        "ticket-routing": "retiring",
        "support-replies": "retiring",
        "claude-invoices": "unknown",
    }
    # the team's own file moves the retired app in-house; litellm dates the others
    assert rows["support-sentiment"]["source"] == str(datasets / "deprecations.yaml")
    assert rows["support-sentiment"]["successor"] == "local/qwen2.5-coder-0.5b-instruct"
    assert {rows[app]["source"] for app in ("invoice-extraction", "order-math-gpt41")} == {"litellm"}
    assert rows["claude-invoices"]["source"] is None and rows["claude-invoices"]["deprecation_date"] is None
