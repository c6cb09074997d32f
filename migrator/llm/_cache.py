"""Content-addressed response caches: one SQLite file, or one PostgreSQL database for many machines.

An identical request is never paid for twice: not in one run, not across runs, not
across processes. ``ResponseCache`` keeps replies in one SQLite file (the embedded
default); WAL mode lets several processes of one machine read and write it.
``PostgresCache`` keeps them in a PostgreSQL database that workers on many machines
share, through a small pool per process so that N workers hold a bounded number of the
server's connections. Both have one table, ``responses(key, model, value, created)``;
the first reply stored under a key wins; each write is its own transaction, so a crash
loses at most the call in flight. ``open_cache`` picks the backend from a location.

The client reads and writes through ``aget``/``aput``, which run on the cache's own
thread (``Cache``, shared by both): a database call can wait seconds for another
process's lock or for the network, and the event loop must not wait with it.
``get``/``put`` run on the caller's thread.

Keys are request hashes and values replies: a cache holds no secrets. What its
database says when it fails (server gone, refused) becomes one ``StorageError``
(``db_errors``, shared with the study's ledger), its URL's password redacted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from migrator.errors import InputError, StorageError
from migrator.redaction import redact

__all__ = [
    "PG_ENGINE_KWARGS",
    "SQLITE_ENGINE_KWARGS",
    "Cache",
    "PostgresCache",
    "ResponseCache",
    "db_errors",
    "finish_in",
    "open_cache",
    "sql_engine",
    "use_wal",
    "wal_on_connect",
]

T = TypeVar("T")


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

# Connections per process and engine on PostgreSQL: one thread off the loop uses one at a
# time, a caller's thread another; pre-ping replaces a connection the server dropped.
PG_ENGINE_KWARGS: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 1800}


def wal_on_connect(engine: Any) -> None:
    """Have every new connection of a SQLAlchemy engine on SQLite use WAL (see ``use_wal``)."""
    from sqlalchemy import event

    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        use_wal(cursor)
        cursor.close()

    event.listen(engine, "connect", _pragmas)


def sql_engine(url: str) -> Any:
    """A SQLAlchemy engine for a URL: WAL and lock waits on SQLite, a small pool on PostgreSQL."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        engine = sa.create_engine(url, **SQLITE_ENGINE_KWARGS)
        wal_on_connect(engine)
        return engine
    return sa.create_engine(url, **(PG_ENGINE_KWARGS if url.startswith("postgresql") else {}))


@contextmanager
def db_errors(url: str, what: str) -> Iterator[None]:
    """The one place SQLAlchemy's exceptions become ours; ``what`` names the database ("the response cache")."""
    import sqlalchemy as sa

    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        # the driver's own words, without SQLAlchemy's statement dump and link
        reason = str(exc.orig) if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else str(exc)
        raise StorageError(" ".join(reason.split()), url=url, what=what) from exc


async def finish_in(executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the executor's thread, seen through even if the caller is cancelled meanwhile.

    A caller cancelled while the call runs (a sibling call spent the budget) waits for it to
    land before the cancellation goes on: a reply or a cost that was paid for is never lost.
    """
    done = asyncio.wrap_future(executor.submit(fn, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(done)
            break
        except asyncio.CancelledError:
            if done.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


class Cache(ABC):
    """A key -> JSON value store whose reads and writes can also run off the event loop.

    Subclasses say how ``get``, ``put`` and ``len`` reach their database; this base runs
    them on the cache's one thread for ``aget``/``aput`` and closes that thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None

    @abstractmethod
    def get(self, key: str) -> dict[str, Any] | None:
        """The reply stored under a key, ``None`` when there is none."""

    @abstractmethod
    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        """Store a reply; a key already stored keeps its first reply."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _release_thread(self) -> None:
        """Close the calling thread's own connection, if it has one."""

    @abstractmethod
    def _release(self) -> None:
        """Release what every thread of the cache shares."""

    async def aget(self, key: str) -> dict[str, Any] | None:
        """``get`` on the cache's thread, leaving the event loop free meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._thread(), self.get, key)

    async def aput(self, key: str, model: str, value: dict[str, Any]) -> None:
        """``put`` on the cache's thread, leaving the event loop free meanwhile.

        A caller cancelled meanwhile still waits for the write to land before the
        cancellation goes on (see ``finish_in``).
        """
        await finish_in(self._thread(), self.put, key, model, value)

    def _thread(self) -> ThreadPoolExecutor:
        # One thread, so one connection, however many loops and tasks share the cache.
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-cache")
            return self._worker

    def close(self) -> None:
        """Close the caller's connection and the cache thread's; the cache stays usable."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.submit(self._release_thread).result()
            worker.shutdown()
        self._release_thread()
        self._release()


class ResponseCache(Cache):
    """A key -> JSON value store on one SQLite file; each thread has its own connection."""

    def __init__(self, path: Path) -> None:
        super().__init__()
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
        """Store a reply; a key already stored keeps its first reply."""
        self._conn().execute(
            "INSERT OR IGNORE INTO responses (key, model, value, created) VALUES (?, ?, ?, ?)",
            (key, model, json.dumps(value, ensure_ascii=False), time.time()),
        )

    def __len__(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(row[0])

    def _release_thread(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _release(self) -> None:
        return None  # every connection belongs to one thread


class PostgresCache(Cache):
    """A key -> JSON value store in a PostgreSQL database that processes on many machines share.

    Args:
        url: a SQLAlchemy URL, ``postgresql+psycopg://user@host:5432/db``; the table is
            made on first use.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._engine: Any = None
        self._table: Any = None
        self._making = threading.Lock()

    def _ready(self) -> tuple[Any, Any]:
        """The engine and the table, made (and the table created) on first use."""
        with self._making:
            if self._engine is None:
                import sqlalchemy as sa

                meta = sa.MetaData()
                table = sa.Table(
                    "responses",
                    meta,
                    sa.Column("key", sa.Text, primary_key=True),
                    sa.Column("model", sa.Text, nullable=False),
                    sa.Column("value", sa.Text, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                )
                engine = sql_engine(self.url)
                with db_errors(self.url, "the response cache"):
                    try:
                        meta.create_all(engine, checkfirst=True)
                    except sa.exc.DatabaseError:
                        # another process created it between the check and the create
                        if not sa.inspect(engine).has_table("responses"):
                            raise
                self._engine, self._table = engine, table
            return self._engine, self._table

    def get(self, key: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        engine, t = self._ready()
        with db_errors(self.url, "the response cache"), engine.connect() as conn:
            found = conn.execute(sa.select(t.c.value).where(t.c.key == key)).scalar()
        if found is None:
            return None
        value: dict[str, Any] = json.loads(found)
        return value

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        """Store a reply; a key already stored keeps its first reply."""
        from sqlalchemy.dialects.postgresql import insert

        engine, t = self._ready()
        row = {"key": key, "model": model, "value": json.dumps(value, ensure_ascii=False), "created": time.time()}
        with db_errors(self.url, "the response cache"), engine.begin() as conn:
            conn.execute(insert(t).values(**row).on_conflict_do_nothing(index_elements=["key"]))

    def __len__(self) -> int:
        import sqlalchemy as sa

        engine, t = self._ready()
        with db_errors(self.url, "the response cache"), engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

    def _release_thread(self) -> None:
        return None  # a thread holds a pooled connection only while it reads or writes

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.dispose()  # the engine stays usable, with new connections


def open_cache(location: str | os.PathLike[str]) -> Cache:
    """The response cache at a location: a file path or ``sqlite:///path`` (SQLite), or a ``postgresql://`` URL.

    Raises:
        InputError: a URL of another database, or one that names no file.
    """
    if not (isinstance(location, str) and "://" in location):
        return ResponseCache(Path(location))
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(location)
    except sa.exc.ArgumentError as exc:
        raise InputError(
            f"The cache location must be a file path or a database URL. Got {redact(location)!r} instead."
        ) from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresCache(location)
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        return ResponseCache(Path(url.database))
    raise InputError(
        "The cache location must be a file path, a sqlite:///path URL or a postgresql:// URL. "
        f"Got {redact(location)!r} instead."
    )
