"""optuna stays the search's business: loaded on first use, its noise muted only while the search runs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrator.llm import LiteLLMClient
from migrator.migration import build_setup, prepare
from migrator.search import SearchResult, run_search
from migrator.spec import load_spec


def test_importing_the_search_does_not_load_optuna() -> None:
    code = "import sys, migrator.search; print('optuna' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def optuna_log() -> Iterator[_Records]:
    """What optuna logs, at whatever level its logger lets through."""
    handler = _Records()
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def optuna_verbosity() -> Iterator[None]:
    """The test may set optuna's level; the tests after it get back the one they had."""
    import optuna

    previous = optuna.logging.get_verbosity()
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _search(write_spec: Callable[..., Path]) -> SearchResult:
    # TPE's `group` and the Wilcoxon pruner are the experimental features the search uses
    spec = write_spec(search_space={"sampler": "tpe", "pruner": "wilcoxon", "max_retries": 0}, budget={"trials": 3})
    setup = build_setup(prepare(load_spec(spec)), {})
    client = LiteLLMClient(backoff_s=0.001, max_retries=0)
    with asyncio.Runner() as runner:
        return run_search(setup, client, runner, storage="memory", study_name="quiet")


@pytest.mark.usefixtures("optuna_verbosity")
def test_a_search_mutes_optuna_only_while_it_runs(write_spec: Callable[..., Path], optuna_log: _Records) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        result = _search(write_spec)
        after = list(warnings.filters)
    assert result.counts["total"] == 3
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert not [r for r in optuna_log.records if r.levelno < logging.WARNING], "an INFO line per trial told"
    # the caller's settings are theirs again
    assert after == filters
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


@pytest.mark.usefixtures("optuna_verbosity")
def test_a_caller_who_made_optuna_quieter_keeps_it_so(write_spec: Callable[..., Path]) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _search(write_spec)
    assert optuna.logging.get_verbosity() == optuna.logging.ERROR
