"""What a study has spent is kept with it: across instances, processes, machines and resumes.

Stored ledgers run on both databases a study can live in: ``url`` is a SQLite file's URL or
a fresh PostgreSQL database's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrator.errors import StorageError
from migrator.llm import MemoryLedger, StoredLedger


@pytest.fixture
def url(database_url: str) -> str:
    return database_url


@pytest.mark.parametrize("kind", ["memory", "stored"])
def test_a_call_is_refused_once_the_budget_is_spent(kind: str, url: str) -> None:
    ledger = MemoryLedger() if kind == "memory" else StoredLedger(url, "s")
    assert [ledger.reserve_call(3, None) for _ in range(5)] == [None, None, None, "calls", "calls"]
    ledger.add_cost(0.5)
    assert ledger.reserve_call(None, 0.5) == "usd"
    assert ledger.spent().calls == 3 and ledger.spent().usd == 0.5


@pytest.mark.parametrize("kind", ["memory", "stored"])
def test_the_async_variants_count_the_same(kind: str, url: str) -> None:
    ledger = MemoryLedger() if kind == "memory" else StoredLedger(url, "s")

    async def spend() -> list[str | None]:
        refused = [await ledger.areserve_call(3, None) for _ in range(4)]
        await ledger.aadd_cost(0.25)
        await ledger.aadd_cost(0.0)
        return [*refused, await ledger.areserve_call(None, 0.25)]

    assert asyncio.run(spend()) == [None, None, None, "calls", "usd"]
    assert (ledger.spent().calls, ledger.spent().usd) == (3, 0.25)
    ledger.close()


def test_a_new_ledger_on_the_same_study_continues_the_count(url: str) -> None:
    first = StoredLedger(url, "s")
    first.start_clock()
    for _ in range(4):
        assert first.reserve_call(10, 5.0) is None
    first.add_cost(4.9)
    time.sleep(0.05)
    first.close()  # the run is killed or ends; the next one resumes it
    resumed = StoredLedger(url, "s")
    spent = resumed.spent()
    assert (spent.calls, spent.usd) == (4, pytest.approx(4.9)) and spent.seconds >= 0.05
    assert [resumed.reserve_call(6, None) for _ in range(3)] == [None, None, "calls"]
    # another study in the same database has its own count
    assert StoredLedger(url, "other").spent().calls == 0


def _reserve_all(url: str, limit: int, out: multiprocessing.Queue[int]) -> None:
    ledger = StoredLedger(url, "shared")
    out.put(sum(ledger.reserve_call(limit, None) is None for _ in range(limit)))


def test_processes_sharing_a_study_never_reserve_more_than_the_budget(url: str) -> None:
    # none creates the table first: they race to create it, as workers starting together do
    limit = 60
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_reserve_all, args=(url, limit, results)) for _ in range(4)]
    for w in workers:
        w.start()
    granted = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(granted) == limit and StoredLedger(url, "shared").spent().calls == limit
    with sa.create_engine(url).connect() as conn:  # what the database itself holds
        assert conn.execute(sa.text("SELECT calls FROM migrator_spend WHERE study = 'shared'")).scalar_one() == limit


def _run_for(ledgers: list[StoredLedger], seconds: float) -> None:
    """Each ledger's clock runs for ``seconds`` at the same time, its process sending a request every 50 ms."""
    for ledger in ledgers:
        ledger.start_clock()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for ledger in ledgers:
            assert ledger.reserve_call(None, None) is None
            ledger.add_cost(1e-6)
        time.sleep(0.05)
    for ledger in ledgers:
        ledger.stop_clock()


def test_workers_searching_at_the_same_time_spend_the_minutes_once(url: str) -> None:
    workers = [StoredLedger(url, "s"), StoredLedger(url, "s")]
    _run_for(workers, 1.0)
    together = workers[0].spent().seconds
    assert 1.0 <= together < 1.6  # a sum over the workers would be 2 s

    # one after the other, their times add up
    time.sleep(0.3)  # nobody's clock runs: not counted
    _run_for(workers[:1], 0.3)
    _run_for(workers[1:], 0.3)
    assert 0.6 <= StoredLedger(url, "s").spent().seconds - together < 1.0


def test_one_process_counts_the_time_its_clock_ran(url: str) -> None:
    ledger = StoredLedger(url, "s")
    ledger.start_clock()
    time.sleep(0.2)
    assert ledger.reserve_call(None, None) is None  # written with the reservation
    time.sleep(0.2)
    assert 0.4 <= ledger.spent().seconds < 0.7  # counting the stretch not yet written
    ledger.stop_clock()
    time.sleep(0.2)
    ledger.start_clock()
    time.sleep(0.1)
    ledger.close()
    assert 0.5 <= StoredLedger(url, "s").spent().seconds < 0.9


def _old_table(url: str) -> None:
    """The spend table as migrator made it before it kept ``last_at``, with a study's row."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE migrator_spend (study VARCHAR(512) PRIMARY KEY, calls BIGINT NOT NULL,"
                " usd FLOAT NOT NULL, seconds FLOAT NOT NULL)"
            )
        )
        conn.execute(sa.text("INSERT INTO migrator_spend VALUES ('s', 3, 1.5, 10.0)"))
    engine.dispose()


def test_a_table_of_an_older_version_is_migrated_in_place(url: str) -> None:
    _old_table(url)
    ledger = StoredLedger(url, "s")
    assert ledger.spent() == ledger.spent().__class__(3, 1.5, 10.0)  # what was spent is kept
    ledger.start_clock()
    time.sleep(0.1)
    assert ledger.reserve_call(4, None) is None and ledger.reserve_call(4, None) == "calls"
    ledger.close()
    spent = StoredLedger(url, "s").spent()
    assert (spent.calls, spent.usd) == (4, 1.5) and 10.1 <= spent.seconds < 10.5
    assert "last_at" in {c["name"] for c in sa.inspect(sa.create_engine(url)).get_columns("migrator_spend")}


def test_two_processes_migrating_an_old_table_at_once_both_go_on(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_table(url)
    StoredLedger(url, "s")  # the first process adds the column ...
    checks: list[bool] = []
    real = StoredLedger._has_last_at

    def stale_first_check(self: StoredLedger) -> bool:
        # ... after the second one found it missing: its ALTER TABLE then fails
        checks.append(real(self))
        return checks[-1] and len(checks) > 1

    monkeypatch.setattr(StoredLedger, "_has_last_at", stale_first_check)
    second = StoredLedger(url, "s")
    assert len(checks) == 2 and second.reserve_call(None, None) is None
    assert second.spent().calls == 4


def _hold_the_row(url: str) -> Any:
    """Another process in a write of the study's row, which our writes must wait for; returns its release."""
    if url.startswith("sqlite"):
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        return lambda: (other.execute("COMMIT"), other.close())
    engine = sa.create_engine(url)
    conn = engine.connect()
    conn.execute(sa.text("SELECT * FROM migrator_spend WHERE study = 's' FOR UPDATE"))
    return lambda: (conn.rollback(), conn.close(), engine.dispose())


def test_a_reservation_waiting_for_the_database_leaves_the_event_loop_free(url: str) -> None:
    ledger = StoredLedger(url, "s")
    release = _hold_the_row(url)

    async def meanwhile() -> tuple[int, str | None]:
        reserve = asyncio.create_task(ledger.areserve_call(1, None))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += not reserve.done()
        release()
        return ticks, await reserve

    assert asyncio.run(meanwhile()) == (10, None)
    assert ledger.spent().calls == 1


def test_a_cost_whose_caller_is_cancelled_is_still_written(url: str) -> None:
    # a sibling call spending the budget cancels the calls in flight; what they cost stays counted
    ledger = StoredLedger(url, "s")
    release = _hold_the_row(url)

    async def cancelled_midway() -> None:
        add = asyncio.create_task(ledger.aadd_cost(0.75))
        await asyncio.sleep(0.05)
        add.cancel()
        await asyncio.sleep(0.05)
        assert not add.done()  # still waiting for its write
        release()
        with pytest.raises(asyncio.CancelledError):
            await add

    asyncio.run(cancelled_midway())
    assert ledger.spent().usd == 0.75


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_database_that_is_gone_is_one_storage_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError, match=r"the study's database at postgresql\+psycopg://migrator:\*\*\*@") as failed:
        StoredLedger(f"postgresql+psycopg://migrator:s3cret-pass@127.0.0.1:{_closed_port()}/study", "s")
    assert "s3cret-pass" not in str(failed.value)


def test_a_database_that_fails_midway_is_one_storage_error(tmp_path: Path) -> None:
    ledger = StoredLedger(f"sqlite:///{tmp_path / 'study.db'}", "s")
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("DROP TABLE migrator_spend")  # the database is there, what the ledger needs is not
    for spend in (lambda: ledger.reserve_call(5, None), lambda: asyncio.run(ledger.aadd_cost(0.1)), ledger.spent):
        with pytest.raises(StorageError, match=r"the study's database at sqlite:///.* failed: no such table"):
            spend()
