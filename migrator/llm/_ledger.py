"""What a migration has spent (requests sent, USD, seconds), kept with its study.

A budget only holds across a kill and a resume if what was spent is stored where the
study is and counted *before* each request leaves: the client reserves one call here
before every attempt it sends to a provider (first tries, retries and attempts that
fail alike), adds the reply's cost after it, and the search adds the time it ran. A
request that was reserved but never sent (a kill in between) is counted all the same,
so the provider never sees more requests than ``budget.calls``; a cost, once the reply
is in, is written even if the caller is cancelled meanwhile. The client awaits
``areserve_call``/``aadd_cost``, which make the database's round trip off the event loop.

``StoredLedger`` keeps one row per study in a table of the study's own database
(SQLite or any SQLAlchemy URL Optuna accepts), updated with one atomic
``UPDATE ... WHERE calls < limit`` per reservation, so processes that share a study
share its budget. ``MemoryLedger`` is the same for a process that stores nothing.

Seconds are the study's wall-clock time, not a sum over its processes: four workers
searching for a minute spend one minute of ``budget.minutes``. Each write adds the time
since the later of this process's previous write (or its clock's start) and the last
time any process wrote seconds (``last_at``), in the same atomic UPDATE, so time during
which two processes ran is counted once. This assumes that the machines' wall clocks
agree to well under a second (NTP): a clock ahead of the others makes them count less,
never more. And it assumes that processes write often (every request does): the time
since a process's previous write that another's write has already passed goes
uncounted, so a process silent for long stretches while others write counts less.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from migrator.llm._cache import db_errors, finish_in, sql_engine

__all__ = ["Ledger", "MemoryLedger", "Spent", "StoredLedger"]

_TABLE = "migrator_spend"
_WHAT = "the study's database"

Stretch = tuple[float, float]


@dataclass(frozen=True)
class Spent:
    """Totals of a study: requests sent to providers, their cost, seconds of searching."""

    calls: int = 0
    usd: float = 0.0
    seconds: float = 0.0


def _over(spent: Spent, calls: int | None, usd: float | None) -> str | None:
    if calls is not None and spent.calls >= calls:
        return "calls"
    if usd is not None and spent.usd >= usd:
        return "usd"
    return None


class Ledger(Protocol):
    def reserve_call(self, calls: int | None, usd: float | None) -> str | None:
        """Count one request about to be sent; the budget that is spent instead, if any."""
        ...

    def add_cost(self, usd: float) -> None: ...

    async def areserve_call(self, calls: int | None, usd: float | None) -> str | None:
        """``reserve_call``, leaving the event loop free while the database answers."""
        ...

    async def aadd_cost(self, usd: float) -> None:
        """``add_cost``, leaving the event loop free; written even if the caller is cancelled meanwhile."""
        ...

    def start_clock(self) -> None:
        """Count the seconds from now on (the search calls this when it starts)."""
        ...

    def stop_clock(self) -> None:
        """Stop counting seconds, keeping those counted (the search calls this when it ends)."""
        ...

    def spent(self) -> Spent: ...

    def close(self) -> None: ...


class _Clock:
    """The stretch of time not yet written to the ledger, since the clock was started."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._mark: float | None = None

    def start(self) -> None:
        if self._mark is None:
            self._mark = self._now()

    def take(self) -> Stretch | None:
        """(since, now): the stretch since the last take, ``None`` when stopped; the clock keeps running."""
        if self._mark is None:
            return None
        since, self._mark = self._mark, self._now()
        return since, self._mark

    def peek(self) -> Stretch | None:
        return None if self._mark is None else (self._mark, self._now())

    def stop(self) -> Stretch | None:
        """The stretch since the last take; the clock stops."""
        stretch, self._mark = self.take(), None
        return stretch


def _length(stretch: Stretch | None) -> float:
    return 0.0 if stretch is None else stretch[1] - stretch[0]


class MemoryLedger:
    """A ledger that lives as long as the process (evaluations, tests, the in-memory study)."""

    def __init__(self) -> None:
        self._spent = Spent()
        self._clock = _Clock()
        self._lock = threading.Lock()

    def reserve_call(self, calls: int | None, usd: float | None) -> str | None:
        with self._lock:
            over = _over(self._spent, calls, usd)
            if over is None:
                s = self._spent
                self._spent = Spent(s.calls + 1, s.usd, s.seconds + _length(self._clock.take()))
            return over

    def add_cost(self, usd: float) -> None:
        with self._lock:
            s = self._spent
            self._spent = Spent(s.calls, s.usd + usd, s.seconds + _length(self._clock.take()))

    async def areserve_call(self, calls: int | None, usd: float | None) -> str | None:
        return self.reserve_call(calls, usd)

    async def aadd_cost(self, usd: float) -> None:
        self.add_cost(usd)

    def start_clock(self) -> None:
        self._clock.start()

    def stop_clock(self) -> None:
        with self._lock:
            s = self._spent
            self._spent = Spent(s.calls, s.usd, s.seconds + _length(self._clock.stop()))

    def spent(self) -> Spent:
        s = self._spent
        return Spent(s.calls, s.usd, s.seconds + _length(self._clock.peek()))

    def close(self) -> None:
        return None


class StoredLedger:
    """The ledger of one study, in a table of the study's database.

    Args:
        url: the study's storage URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        study: the study's name; each study has its own row.

    Raises:
        StorageError: the database failed (here or in any method).
    """

    def __init__(self, url: str, study: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.study = study
        self._clock = _Clock(time.time)  # the wall clock: stretches of processes on several machines are compared
        # one write at a time in this process, so that its stretches reach the row in the order they were taken
        self._writing = threading.Lock()
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._engine = sql_engine(url)
        meta = sa.MetaData()
        self._table = sa.Table(
            _TABLE,
            meta,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("calls", sa.BigInteger, nullable=False),
            sa.Column("usd", sa.Float, nullable=False),
            sa.Column("seconds", sa.Float, nullable=False),
            sa.Column("last_at", sa.Float, nullable=True),  # epoch seconds of the last write of seconds, by anyone
        )
        with db_errors(url, _WHAT):
            self._create(meta)
            with self._engine.begin() as conn:
                found = conn.execute(sa.select(self._table.c.study).where(self._table.c.study == study)).first()
            if found is None:
                try:
                    with self._engine.begin() as conn:
                        conn.execute(self._table.insert().values(study=study, calls=0, usd=0.0, seconds=0.0))
                except sa.exc.IntegrityError:  # another process created it first
                    pass

    def _create(self, meta: Any) -> None:
        """The table, made if missing, and given ``last_at`` if an older migrator made it."""
        import sqlalchemy as sa

        try:
            meta.create_all(self._engine, checkfirst=True)
        except sa.exc.DatabaseError:
            # another process created it between the check and the create
            if not sa.inspect(self._engine).has_table(_TABLE):
                raise
        if self._has_last_at():
            return
        column_type = sa.Float().compile(dialect=self._engine.dialect)
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {_TABLE} ADD COLUMN last_at {column_type}"))
        except sa.exc.DatabaseError:
            # another process added it between the check and the ALTER
            if not self._has_last_at():
                raise

    def _has_last_at(self) -> bool:
        import sqlalchemy as sa

        return "last_at" in {c["name"] for c in sa.inspect(self._engine).get_columns(_TABLE)}

    def _seconds(self, stretch: Stretch | None) -> dict[str, Any]:
        """Column updates adding this process's stretch of time, less what another process counted already."""
        import sqlalchemy as sa

        if stretch is None:
            return {}
        since, now = (sa.literal(v, sa.Float) for v in stretch)
        t = self._table
        last = t.c.last_at
        counted_from = sa.case((last.is_(None) | (last < since), since), else_=last)  # max(last_at, since)
        return {
            "seconds": t.c.seconds + sa.case((counted_from < now, now - counted_from), else_=0.0),
            "last_at": sa.case((last.is_(None) | (last < now), now), else_=last),  # never back in time
        }

    def _update(self, conn: Any, values: dict[str, Any], where: Any = None) -> int:
        t = self._table
        statement = t.update().where(t.c.study == self.study)
        if where is not None:
            statement = statement.where(where)
        return int(conn.execute(statement.values(**values)).rowcount)

    def _write(self, stretch: Callable[[], Stretch | None], usd: float = 0.0) -> None:
        """Add ``usd`` and the clock's stretch in one statement."""
        t = self._table
        with self._writing:
            values = {"usd": t.c.usd + usd} if usd else {}
            values.update(self._seconds(stretch()))
            if not values:
                return
            with db_errors(self.url, _WHAT), self._engine.begin() as conn:
                self._update(conn, values)

    def reserve_call(self, calls: int | None, usd: float | None) -> str | None:
        import sqlalchemy as sa

        t = self._table
        conditions = []
        if calls is not None:
            conditions.append(t.c.calls < calls)
        if usd is not None:
            conditions.append(t.c.usd < usd)
        with self._writing, db_errors(self.url, _WHAT), self._engine.begin() as conn:
            seconds = self._seconds(self._clock.take())
            updated = self._update(
                conn, {"calls": t.c.calls + 1, **seconds}, sa.and_(*conditions) if conditions else None
            )
            if updated != 1 and seconds:
                self._update(conn, seconds)
        if updated == 1:
            return None
        return _over(self.spent(), calls, usd) or "calls"

    def add_cost(self, usd: float) -> None:
        if not usd:  # a free reply (a self-hosted model): nothing to write; its seconds go with the next one
            return
        self._write(self._clock.take, usd=usd)

    async def areserve_call(self, calls: int | None, usd: float | None) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread(), self.reserve_call, calls, usd)

    async def aadd_cost(self, usd: float) -> None:
        if usd:
            await finish_in(self._thread(), self.add_cost, usd)

    def _thread(self) -> ThreadPoolExecutor:
        # One thread: this process's writes reach the database one at a time anyway (``_writing``).
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-ledger")
            return self._worker

    def start_clock(self) -> None:
        with self._writing:
            self._clock.start()

    def stop_clock(self) -> None:
        self._write(self._clock.stop)

    def spent(self) -> Spent:
        import sqlalchemy as sa

        t = self._table
        with db_errors(self.url, _WHAT), self._engine.begin() as conn:
            row = conn.execute(
                sa.select(t.c.calls, t.c.usd, t.c.seconds, t.c.last_at).where(t.c.study == self.study)
            ).one()
        unwritten, running = 0.0, self._clock.peek()
        if running is not None:
            since, now = running
            unwritten = max(0.0, now - (since if row.last_at is None else max(since, row.last_at)))
        return Spent(int(row.calls), float(row.usd), float(row.seconds) + unwritten)

    def close(self) -> None:
        """Write the seconds not yet written and release the connections and the thread."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown()
        self._write(self._clock.take)
        self._engine.dispose()
