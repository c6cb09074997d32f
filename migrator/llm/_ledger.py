"""What a migration has spent (requests sent, USD, seconds), kept with its study.

A budget only holds across a kill and a resume if what was spent is stored where the
study is and counted *before* each request leaves: the client reserves one call here
before every attempt it sends to a provider (first tries, retries and attempts that
fail alike), adds the reply's cost after it, and the search adds the time it ran. A
request that was reserved but never sent (a kill in between) is counted all the same,
so the provider never sees more requests than ``budget.calls``.

``StoredLedger`` keeps one row per study in a table of the study's own database
(SQLite or any SQLAlchemy URL Optuna accepts), updated with one atomic
``UPDATE ... WHERE calls < limit`` per reservation, so processes that share a study
share its budget. ``MemoryLedger`` is the same for a process that stores nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Ledger", "MemoryLedger", "Spent", "StoredLedger"]

_TABLE = "migrator_spend"


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

    def start_clock(self) -> None:
        """Count the seconds from now on (the search calls this when it starts)."""
        ...

    def stop_clock(self) -> None:
        """Stop counting seconds, keeping those counted (the search calls this when it ends)."""
        ...

    def spent(self) -> Spent: ...

    def close(self) -> None: ...


class _Clock:
    """Seconds not yet written to the ledger, since the clock was started."""

    def __init__(self) -> None:
        self._mark: float | None = None

    def start(self) -> None:
        if self._mark is None:
            self._mark = time.monotonic()

    def take(self) -> float:
        """The seconds since the last take; the clock keeps running."""
        if self._mark is None:
            return 0.0
        now = time.monotonic()
        elapsed, self._mark = now - self._mark, now
        return elapsed

    def peek(self) -> float:
        return 0.0 if self._mark is None else time.monotonic() - self._mark

    def stop(self) -> float:
        """The seconds since the last take; the clock stops."""
        elapsed, self._mark = self.take(), None
        return elapsed


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
                self._spent = Spent(s.calls + 1, s.usd, s.seconds + self._clock.take())
            return over

    def add_cost(self, usd: float) -> None:
        with self._lock:
            s = self._spent
            self._spent = Spent(s.calls, s.usd + usd, s.seconds + self._clock.take())

    def start_clock(self) -> None:
        self._clock.start()

    def stop_clock(self) -> None:
        with self._lock:
            s = self._spent
            self._spent = Spent(s.calls, s.usd, s.seconds + self._clock.stop())

    def spent(self) -> Spent:
        s = self._spent
        return Spent(s.calls, s.usd, s.seconds + self._clock.peek())

    def close(self) -> None:
        return None


class StoredLedger:
    """The ledger of one study, in a table of the study's database.

    Args:
        url: the study's storage URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        study: the study's name; each study has its own row.
    """

    def __init__(self, url: str, study: str) -> None:
        import sqlalchemy as sa

        from migrator.llm._cache import SQLITE_ENGINE_KWARGS, wal_on_connect

        self.study = study
        self._clock = _Clock()
        sqlite = url.startswith("sqlite")
        self._engine = sa.create_engine(url, **(SQLITE_ENGINE_KWARGS if sqlite else {}))
        if sqlite:
            wal_on_connect(self._engine)
        meta = sa.MetaData()
        self._table = sa.Table(
            _TABLE,
            meta,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("calls", sa.BigInteger, nullable=False),
            sa.Column("usd", sa.Float, nullable=False),
            sa.Column("seconds", sa.Float, nullable=False),
        )
        try:
            meta.create_all(self._engine, checkfirst=True)
        except sa.exc.DatabaseError:
            # another process created it between the check and the create
            if not sa.inspect(self._engine).has_table(_TABLE):
                raise
        with self._engine.begin() as conn:
            found = conn.execute(sa.select(self._table.c.study).where(self._table.c.study == study)).first()
        if found is None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(self._table.insert().values(study=study, calls=0, usd=0.0, seconds=0.0))
            except sa.exc.IntegrityError:  # another process created it first
                pass

    def _update(self, conn: Any, where: Any = None, **deltas: float) -> int:
        t = self._table
        values = {name: getattr(t.c, name) + delta for name, delta in deltas.items()}
        statement = t.update().where(t.c.study == self.study)
        if where is not None:
            statement = statement.where(where)
        return int(conn.execute(statement.values(**values)).rowcount)

    def reserve_call(self, calls: int | None, usd: float | None) -> str | None:
        import sqlalchemy as sa

        t = self._table
        conditions = []
        if calls is not None:
            conditions.append(t.c.calls < calls)
        if usd is not None:
            conditions.append(t.c.usd < usd)
        seconds = self._clock.take()
        with self._engine.begin() as conn:
            updated = self._update(conn, sa.and_(*conditions) if conditions else None, calls=1, seconds=seconds)
            if updated != 1:
                self._update(conn, seconds=seconds)
        if updated == 1:
            return None
        return _over(self.spent(), calls, usd) or "calls"

    def add_cost(self, usd: float) -> None:
        if not usd:  # a free reply (a self-hosted model): nothing to write; its seconds go with the next one
            return
        with self._engine.begin() as conn:
            self._update(conn, usd=usd, seconds=self._clock.take())

    def start_clock(self) -> None:
        self._clock.start()

    def stop_clock(self) -> None:
        with self._engine.begin() as conn:
            self._update(conn, seconds=self._clock.stop())

    def spent(self) -> Spent:
        import sqlalchemy as sa

        t = self._table
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(t.c.calls, t.c.usd, t.c.seconds).where(t.c.study == self.study)).one()
        return Spent(int(row.calls), float(row.usd), float(row.seconds) + self._clock.peek())

    def close(self) -> None:
        """Write the seconds not yet written and release the connections."""
        with self._engine.begin() as conn:
            self._update(conn, seconds=self._clock.take())
        self._engine.dispose()
