"""The recorded grid: every config of benchmarks/data/sentiment_grid.yaml and its replies.

Shared by record_grid.py (which fills the cache with real local-model replies) and
search_efficiency.py (which replays search strategies against it).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

from migrator.evaluate import Config
from migrator.pipeline import Prepared, build_setup, prepare
from migrator.search import SearchSetup, config_from_params
from migrator.spec import load_spec

DATA = Path(__file__).resolve().parent / "data"
SPEC = DATA / "sentiment_grid.yaml"
CACHE = DATA / "sentiment_grid_cache.db"
TABLE = DATA / "sentiment_grid.csv"


def load(api_bases: dict[str, str] | None = None) -> tuple[Prepared, SearchSetup]:
    prepared = prepare(load_spec(SPEC))
    return prepared, build_setup(prepared, api_bases or {})


def grid_configs(setup: SearchSetup) -> list[Config]:
    """Every point of the search space (what a full grid search evaluates)."""
    space = setup.space
    temps = []
    t = space.temperature
    assert t is not None and t.step
    value = t.low
    while value <= t.high + 1e-9:
        temps.append(round(value, 6))
        value += t.step
    demo_options: list[dict[str, Any]] = []
    for k in space.demos.k:
        if k == 0:
            demo_options.append({"demos": 0})
        else:
            demo_options += [{"demos": k, "demo_strategy": s} for s in space.demos.strategies]
    configs = []
    for model, prompt, demos, temp in itertools.product(setup.endpoints, setup.prompts, demo_options, temps):
        configs.append(config_from_params(setup, {"model": model, "prompt": prompt, **demos, "temperature": temp}))
    return configs


def seal_cache() -> None:
    """Back to SQLite's rollback journal, so the committed file stands alone (no -wal/-shm)."""
    with contextlib.closing(sqlite3.connect(CACHE)) as db:
        db.execute("pragma journal_mode=delete")
