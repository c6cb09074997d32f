"""The recorded grid: every config of benchmarks/data/sentiment_grid.yaml and its replies.

Shared by record_grid.py (which fills the cache with real local-model replies) and
search_efficiency.py (which replays search strategies against it).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from migrator.evaluate import Config
from migrator.migration import Prepared, build_setup, prepare
from migrator.search import SearchSetup, config_from_params, space_points
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
    return [config_from_params(setup, params) for params in space_points(setup)]


def seal_cache() -> None:
    """Back to SQLite's rollback journal, so the committed file stands alone (no -wal/-shm)."""
    with contextlib.closing(sqlite3.connect(CACHE)) as db:
        db.execute("pragma journal_mode=delete")
