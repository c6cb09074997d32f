"""Content-addressed response cache in SQLite.

An identical request is never paid for twice: not in one run, not across runs, not
across processes. WAL mode lets several processes read and write one file; each
write is its own transaction, so a crash loses at most the call in flight.

The client reads and writes through ``aget``/``aput``, which run on the cache's own
thread: a SQLite call can wait seconds for another process's lock, and the event loop
must not wait with it. ``get``/``put`` run on the caller's thread, each thread with its
own connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["SQLITE_ENGINE_KWARGS", "ResponseCache", "use_wal", "wal_on_connect"]


def use_wal(conn: Any, timeout_s: float = 60.0) -> None:
    """WAL journal with synchronous=NORMAL on a SQLite connection (or cursor).

    Switching to WAL needs an exclusive lock and SQLite does not wait for it (no busy
    handler), so two processes opening a new file at once must retry.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")


# SQLAlchemy engines on a SQLite file shared by processes wait for a lock instead of failing
SQLITE_ENGINE_KWARGS: dict[str, Any] = {"connect_args": {"timeout": 60}}


def wal_on_connect(engine: Any) -> None:
    """Have every new connection of a SQLAlchemy engine on SQLite use WAL (see ``use_wal``)."""
    from sqlalchemy import event

    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        use_wal(cursor)
        cursor.close()

    event.listen(engine, "connect", _pragmas)


class ResponseCache:
    """A key -> JSON value store on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            use_wal(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._local.conn = conn
        return conn

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        """Store a reply; a key already stored keeps its first reply."""
        self._conn().execute(
            "INSERT OR IGNORE INTO responses (key, model, value, created) VALUES (?, ?, ?, ?)",
            (key, model, json.dumps(value, ensure_ascii=False), time.time()),
        )

    async def aget(self, key: str) -> dict[str, Any] | None:
        """``get`` on the cache's thread, leaving the event loop free meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._thread(), self.get, key)

    async def aput(self, key: str, model: str, value: dict[str, Any]) -> None:
        """``put`` on the cache's thread, leaving the event loop free meanwhile.

        A caller cancelled meanwhile (a sibling call spent the budget) still waits for the
        write to land before the cancellation goes on: a reply that was paid for is never lost.
        """
        written = asyncio.wrap_future(self._thread().submit(self.put, key, model, value))
        cancelled = False
        while True:
            try:
                await asyncio.shield(written)
                break
            except asyncio.CancelledError:
                if written.cancelled():
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def _thread(self) -> ThreadPoolExecutor:
        # One thread, so one connection, however many loops and tasks share the cache.
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-cache")
            return self._worker

    def __len__(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the caller's connection and the cache thread's; the cache stays usable."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.submit(self._close_local).result()
            worker.shutdown()
        self._close_local()

    def _close_local(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
