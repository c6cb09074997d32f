"""The response cache: an identical request is never paid for twice, even across processes and machines.

The semantics are the same on both backends (a SQLite file, a PostgreSQL database), so most
tests run on each: ``location`` is a file path or a database URL, as ``open_cache`` takes it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import InputError, StorageError
from migrator.llm import Cache, PostgresCache, ResponseCache, open_cache, request_key

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a cache lives: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "cache.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


class _WritesBlocked:
    """Another process in the middle of a write that the cache's write of ``key`` must wait for."""

    def __init__(self, location: str, key: str) -> None:
        if "://" not in location:
            self._sqlite: sqlite3.Connection | None = sqlite3.connect(location, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
            return
        import sqlalchemy as sa

        # an uncommitted row under the same key: an insert of it waits to learn whether it stays
        self._sqlite = None
        self._engine = sa.create_engine(location)
        self._conn = self._engine.connect()
        self._conn.execute(
            sa.text("INSERT INTO responses (key, model, value, created) VALUES (:k, 'm/other', '{}', 0)"), {"k": key}
        )

    def release(self) -> None:
        """End the other write without keeping anything, so that the cache's write is the one that lands."""
        if self._sqlite is not None:
            self._sqlite.execute("COMMIT")
            self._sqlite.close()
            return
        self._conn.rollback()
        self._conn.close()
        self._engine.dispose()


def test_put_then_get_roundtrip(location: str) -> None:
    cache = open_cache(location)
    value = {"text": "positive ✓", "usage": {"prompt_tokens": 12, "completion_tokens": 1}, "cost": 1.5e-5}

    cache.put("k1", "openai/gpt-4o-mini", value)

    assert cache.get("k1") == value
    assert cache.get("other") is None
    assert len(cache) == 1


def test_cache_file_and_folder_are_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "deep" / "cache.db"
    cache = ResponseCache(path)
    assert not path.exists()  # constructing does no work
    cache.put("k", "m/x", {"text": "a"})
    assert path.is_file()


def test_entries_persist_across_instances(location: str) -> None:
    first = open_cache(location)
    first.put("k1", "m/a", {"text": "one"})
    first.close()

    second = open_cache(location)
    assert second.get("k1") == {"text": "one"}
    assert len(second) == 1


def test_the_first_stored_reply_wins(location: str) -> None:
    cache = open_cache(location)
    cache.put("k", "m/a", {"text": "first"})
    cache.put("k", "m/a", {"text": "second"})
    open_cache(location).put("k", "m/a", {"text": "another instance"})
    assert cache.get("k") == {"text": "first"}
    assert len(cache) == 1


def test_usable_after_close(location: str) -> None:
    cache = open_cache(location)
    cache.put("k", "m/a", {"text": "x"})
    cache.close()
    assert cache.get("k") == {"text": "x"}


def test_threads_share_one_cache(location: str) -> None:
    cache = open_cache(location)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                cache.put(f"t{t}-{i}", "m/a", {"i": i})
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(cache) == 200


def test_a_write_waiting_for_another_process_lock_leaves_the_event_loop_free(location: str) -> None:
    cache = open_cache(location)
    cache.get("warm-up")  # the database and its table exist
    other = _WritesBlocked(location, "k")  # another process writing: our write must wait for it

    async def meanwhile() -> int:
        """How many of 10 ticks the loop made while the write was still waiting."""
        put = asyncio.create_task(cache.aput("k", "m/a", {"text": "x"}))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += not put.done()  # a write blocking the loop would be done (or failed) first
        assert not put.done()
        other.release()
        await put
        return ticks

    assert asyncio.run(meanwhile()) == 10
    assert cache.get("k") == {"text": "x"}


def test_a_write_whose_caller_is_cancelled_still_lands_before_the_cancellation(location: str) -> None:
    # a sibling call spending the budget cancels the calls in flight; their paid replies stay
    cache = open_cache(location)
    cache.get("warm-up")
    other = _WritesBlocked(location, "k")  # keeps the write waiting while the caller is cancelled

    async def cancelled_midway() -> None:
        put = asyncio.create_task(cache.aput("k", "m/a", {"text": "paid"}))
        await asyncio.sleep(0.05)
        put.cancel()
        await asyncio.sleep(0.05)
        assert not put.done()  # still waiting for its write
        other.release()
        with pytest.raises(asyncio.CancelledError):
            await put

    asyncio.run(cancelled_midway())
    assert cache.get("k") == {"text": "paid"}


def test_async_reads_and_writes_are_the_same_store(location: str) -> None:
    cache = open_cache(location)

    async def roundtrip() -> tuple[object, object]:
        await cache.aput("k", "m/a", {"text": "first"})
        await cache.aput("k", "m/a", {"text": "second"})
        return await cache.aget("k"), await cache.aget("other")

    assert asyncio.run(roundtrip()) == ({"text": "first"}, None)
    cache.close()
    assert cache.get("k") == {"text": "first"} and len(cache) == 1
    assert asyncio.run(cache.aget("k")) == {"text": "first"}  # usable after close, on a new loop too


def _writer(location: str, worker: int, n: int, start: Any) -> None:
    cache = open_cache(location)
    cache.get("warm-up")  # open the connection and create the table before the race
    start.wait(timeout=30)
    for i in range(n):
        cache.put(f"w{worker}-{i}", "fake/oracle", {"worker": worker, "i": i})
        # both processes also race on the same keys
        cache.put(f"shared-{i}", "fake/oracle", {"i": i})
    cache.close()


def test_two_processes_writing_concurrently_lose_nothing(location: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(location, w, 200, start)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)

    assert [p.exitcode for p in procs] == [0, 0]
    cache = open_cache(location)
    assert len(cache) == 600
    for w in range(2):
        for i in range(200):
            assert cache.get(f"w{w}-{i}") == {"worker": w, "i": i}
    assert all(cache.get(f"shared-{i}") == {"i": i} for i in range(200))


def test_the_location_picks_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    as_path, as_text, as_url = open_cache(path), open_cache(str(path)), open_cache(f"sqlite:///{path}")
    assert all(isinstance(c, ResponseCache) and c.path == path for c in (as_path, as_text, as_url))
    as_url.put("k", "m/a", {"text": "x"})
    assert as_path.get("k") == {"text": "x"}  # one file, whichever way it was named
    # a database URL: nothing is connected to until the cache is used
    server = open_cache("postgresql+psycopg://migrator@db.invalid:5432/cache")
    assert isinstance(server, PostgresCache) and isinstance(server, Cache)


@pytest.mark.parametrize(
    "location", ["mysql://migrator:s3cret-pass@db/cache", "sqlite://", "sqlite:///:memory:", "no such://x"]
)
def test_a_location_that_is_not_a_cache_is_refused_without_its_password(location: str) -> None:
    with pytest.raises(InputError, match="The cache location must be") as refused:
        open_cache(location)
    assert "s3cret-pass" not in str(refused.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_database_that_is_gone_is_one_storage_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    cache = open_cache(f"postgresql+psycopg://migrator:s3cret-pass@127.0.0.1:{_closed_port()}/cache")
    for attempt in (lambda: cache.get("k"), lambda: asyncio.run(cache.aput("k", "m/a", {"text": "x"}))):
        with pytest.raises(
            StorageError, match=r"the response cache at postgresql\+psycopg://migrator:\*\*\*@"
        ) as failed:
            attempt()
        assert "s3cret-pass" not in str(failed.value) and "s3cret-pass" not in failed.value.url
        assert "refused" in str(failed.value).lower()


def test_request_key_is_canonical() -> None:
    a = request_key({"model": "openai/x", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0})
    b = request_key({"temperature": 0.0, "messages": [{"content": "hi", "role": "user"}], "model": "openai/x"})
    assert a == b
    assert len(a) == 64


def test_request_key_changes_with_anything_that_changes_the_reply() -> None:
    base = {"model": "openai/x", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    keys = {
        request_key(base),
        request_key({**base, "model": "openai/y"}),
        request_key({**base, "temperature": 0.1}),
        request_key({**base, "messages": [{"role": "user", "content": "hi!"}]}),
        request_key({**base, "messages": [{"role": "system", "content": "hi"}]}),
    }
    assert len(keys) == 5


def test_a_model_moved_to_another_server_is_asked_again_not_answered_from_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import yaml

    from migrator import cli
    from migrator.testing import KEY_ENV, FaultPlan, LoopbackServer, make_sentiment_rows, server_spec

    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(20)))
    spec, out = tmp_path / "migration.yaml", tmp_path / "out"
    made = []
    monkeypatch.setenv(KEY_ENV, "sk-test-cache-0123456789")
    for _ in ("old server", "new server"):  # same model ids, same output dir and cache
        with LoopbackServer(FaultPlan()) as server:
            spec.write_text(yaml.safe_dump(server_spec(server.api_base, str(data), budget={"trials": 2})))
            assert cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"]) == 0
            made.append((len(server.attempts), json.loads((out / "summary.json").read_text())["llm_calls"]["made"]))
    (old_seen, old_made), (new_seen, new_made) = made
    assert old_seen == old_made > 0
    assert new_seen == new_made > 0  # the new server answered; nothing came from the old one's replies
