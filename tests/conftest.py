"""Shared fixtures: fake-provider datasets and specs written to a temp dir."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from migrator.testing import base_spec, make_sentiment_rows, register_fake_provider

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
    """Under CI=true a skipped test fails: a missing chromium, promptfoo or llama.cpp is a red run.

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
