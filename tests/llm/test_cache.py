"""The response cache: an identical request is never paid for twice, even across processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from migrator.llm import ResponseCache, request_key


def test_put_then_get_roundtrip(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
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


def test_entries_persist_across_instances(tmp_path: Path) -> None:
    first = ResponseCache(tmp_path / "cache.db")
    first.put("k1", "m/a", {"text": "one"})
    first.close()

    second = ResponseCache(tmp_path / "cache.db")
    assert second.get("k1") == {"text": "one"}
    assert len(second) == 1


def test_the_first_stored_reply_wins(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
    cache.put("k", "m/a", {"text": "first"})
    cache.put("k", "m/a", {"text": "second"})
    assert cache.get("k") == {"text": "first"}
    assert len(cache) == 1


def test_usable_after_close(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
    cache.put("k", "m/a", {"text": "x"})
    cache.close()
    assert cache.get("k") == {"text": "x"}


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
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


def test_a_write_waiting_for_another_process_lock_leaves_the_event_loop_free(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
    cache.get("warm-up")  # the file and its table exist
    other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing: our write must wait for it

    async def meanwhile() -> int:
        """How many of 10 ticks the loop made while the write was still waiting."""
        put = asyncio.create_task(cache.aput("k", "m/a", {"text": "x"}))
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += not put.done()  # a write blocking the loop would be done (or failed) first
        assert not put.done()
        other.execute("COMMIT")
        await put
        return ticks

    assert asyncio.run(meanwhile()) == 10
    assert cache.get("k") == {"text": "x"}
    other.close()


def test_a_write_whose_caller_is_cancelled_still_lands_before_the_cancellation(tmp_path: Path) -> None:
    # a sibling call spending the budget cancels the calls in flight; their paid replies stay
    cache = ResponseCache(tmp_path / "cache.db")
    cache.get("warm-up")
    other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # keeps the write waiting while the caller is cancelled

    async def cancelled_midway() -> None:
        put = asyncio.create_task(cache.aput("k", "m/a", {"text": "paid"}))
        await asyncio.sleep(0.05)
        put.cancel()
        await asyncio.sleep(0.05)
        assert not put.done()  # still waiting for its write
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await put

    asyncio.run(cancelled_midway())
    assert cache.get("k") == {"text": "paid"}
    other.close()


def test_async_reads_and_writes_are_the_same_store(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")

    async def roundtrip() -> tuple[object, object]:
        await cache.aput("k", "m/a", {"text": "first"})
        await cache.aput("k", "m/a", {"text": "second"})
        return await cache.aget("k"), await cache.aget("other")

    assert asyncio.run(roundtrip()) == ({"text": "first"}, None)
    cache.close()
    assert cache.get("k") == {"text": "first"} and len(cache) == 1
    assert asyncio.run(cache.aget("k")) == {"text": "first"}  # usable after close, on a new loop too


def _writer(path: str, worker: int, n: int, start: Any) -> None:
    cache = ResponseCache(Path(path))
    cache.get("warm-up")  # open the connection and create the table before the race
    start.wait(timeout=30)
    for i in range(n):
        cache.put(f"w{worker}-{i}", "fake/oracle", {"worker": worker, "i": i})
        # both processes also race on the same keys
        cache.put(f"shared-{i}", "fake/oracle", {"i": i})
    cache.close()


def test_two_processes_writing_concurrently_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), w, 200, start)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)

    assert [p.exitcode for p in procs] == [0, 0]
    cache = ResponseCache(path)
    assert len(cache) == 600
    for w in range(2):
        for i in range(200):
            assert cache.get(f"w{w}-{i}") == {"worker": w, "i": i}
    assert all(cache.get(f"shared-{i}") == {"i": i} for i in range(200))


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
