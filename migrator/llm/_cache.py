"""Content-addressed response cache in SQLite.

An identical request is never paid for twice: not in one run, not across runs, not
across processes. WAL mode lets several processes read and write one file; each
write is its own transaction, so a crash loses at most the call in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["SQLITE_ENGINE_KWARGS", "ResponseCache", "request_key", "use_wal", "wal_on_connect"]


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


def request_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines a reply."""
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> JSON value store on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

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
        self._conn().execute(
            "INSERT OR IGNORE INTO responses (key, model, value, created) VALUES (?, ?, ?, ?)",
            (key, model, json.dumps(value, ensure_ascii=False), time.time()),
        )

    def __len__(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(row[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
