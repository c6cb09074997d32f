"""What a study has spent is kept with it: across instances, processes and resumes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from migrator.llm import MemoryLedger, StoredLedger


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.mark.parametrize("kind", ["memory", "stored"])
def test_a_call_is_refused_once_the_budget_is_spent(kind: str, tmp_path: Path) -> None:
    ledger = MemoryLedger() if kind == "memory" else StoredLedger(_url(tmp_path), "s")
    assert [ledger.reserve_call(3, None) for _ in range(5)] == [None, None, None, "calls", "calls"]
    ledger.add_cost(0.5)
    assert ledger.reserve_call(None, 0.5) == "usd"
    assert ledger.spent().calls == 3 and ledger.spent().usd == 0.5


def test_a_new_ledger_on_the_same_study_continues_the_count(tmp_path: Path) -> None:
    first = StoredLedger(_url(tmp_path), "s")
    first.start_clock()
    for _ in range(4):
        assert first.reserve_call(10, 5.0) is None
    first.add_cost(4.9)
    time.sleep(0.05)
    first.close()  # the run is killed or ends; the next one resumes it
    resumed = StoredLedger(_url(tmp_path), "s")
    spent = resumed.spent()
    assert (spent.calls, spent.usd) == (4, pytest.approx(4.9)) and spent.seconds >= 0.05
    assert [resumed.reserve_call(6, None) for _ in range(3)] == [None, None, "calls"]
    # another study in the same database has its own count
    assert StoredLedger(_url(tmp_path), "other").spent().calls == 0


def _reserve_all(url: str, limit: int, out: multiprocessing.Queue[int]) -> None:
    ledger = StoredLedger(url, "shared")
    out.put(sum(ledger.reserve_call(limit, None) is None for _ in range(limit)))


def test_processes_sharing_a_study_never_reserve_more_than_the_budget(tmp_path: Path) -> None:
    # none creates the table first: they race to create it, as workers starting together do
    url, limit = _url(tmp_path), 60
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_reserve_all, args=(url, limit, results)) for _ in range(4)]
    for w in workers:
        w.start()
    granted = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(granted) == limit and StoredLedger(url, "shared").spent().calls == limit
