"""Many processes on one study: one lock, heartbeats, and who is still working.

Every process that runs trials of a study (``migrator run`` and each ``migrator worker``,
on this machine or another) holds a ``Coordinator``. It registers the process in the
study's database (table ``migrator_workers``) and beats every ``HEARTBEAT_S`` seconds from
a thread of its own: for the process (its row) and for the trial it is running (Optuna's
heartbeat table, which ``fail_stale_trials`` reads). A process that stops beating for
``GRACE_S`` seconds is gone; its trial is failed and queued again by whoever notices
first (see ``_storage.repair_lost_trials``).

``lock()`` serialises the few steps that must not interleave between processes: reading
the trials, proposing the next config, queueing and asking it (two processes proposing
at once would draw the same seed and score one config twice), and queueing the warm
starts. On PostgreSQL it is a session advisory lock, on SQLite a lock on a file beside
the database; both die with the process that holds them, so a killed worker never
leaves the study locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["GRACE_S", "HEARTBEAT_S", "Coordinator", "machine_id", "pid_alive"]

HEARTBEAT_S = 2
# A trial or process silent this long is gone. Generous against a busy machine (a beat
# thread waits for the GIL), short enough that a lost trial is re-run within the minute.
GRACE_S = int(os.environ.get("MIGRATOR_HEARTBEAT_GRACE_S", "15"))

_WORKERS = "migrator_workers"


def machine_id() -> str:
    """Where a pid means one process: this boot of this kernel, in this pid namespace.

    The hostname alone is not enough: containers on two machines may share it, and two
    containers on one machine share the kernel but not their pids.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return ":".join(parts)


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid runs here (a pid of another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _FileLock:
    """An exclusive lock on a file beside a SQLite database: one machine, any processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self._threads.acquire()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None
        self._threads.release()

    def close(self) -> None:
        return None


class _AdvisoryLock:
    """A PostgreSQL session advisory lock, on a connection of its own for the process's life."""

    def __init__(self, url: str, key: int) -> None:
        import sqlalchemy as sa

        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._key = key
        self._conn: Any = None
        self._threads = threading.Lock()

    def acquire(self) -> None:
        import sqlalchemy as sa

        self._threads.acquire()
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})

    def release(self) -> None:
        import sqlalchemy as sa

        try:
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


class _ThreadLock:
    """An in-memory study has one process: a thread lock is enough."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        return None


def _lock_for(url: str, study_name: str) -> _FileLock | _AdvisoryLock | _ThreadLock:
    digest = hashlib.blake2b(study_name.encode(), digest_size=8).digest()
    if url.startswith("sqlite:///"):
        return _FileLock(Path(f"{url.removeprefix('sqlite:///')}.{digest.hex()}.lock"))
    if url.startswith("postgresql"):
        return _AdvisoryLock(url, int.from_bytes(digest, "big", signed=True))
    if url == "memory":
        return _ThreadLock()
    raise ValueError(f"a study shared by processes needs SQLite or PostgreSQL storage, not {url.split(':', 1)[0]}")


class Coordinator:
    """This process's part in a shared study: its registration, heartbeats and the study lock.

    Args:
        url: the study's storage URL ("memory" for an in-process study: no table, no beats).
        study_name: the study.
        heartbeat: records a trial's heartbeat (Optuna's storage ``record_heartbeat``), or None.
        role: "run" or "worker", for the table (what a reader of it sees).
    """

    def __init__(self, url: str, study_name: str, heartbeat: Any = None, role: str = "run") -> None:
        self.url, self.study_name, self.role = url, study_name, role
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.identity = {"id": self.worker_id, "machine": machine_id(), "pid": os.getpid()}
        self._heartbeat = heartbeat
        self._lock = _lock_for(url, study_name)
        self._trial: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._table: Any = None
        self.beat_errors = 0

    # -- registration and beats ---------------------------------------------------------------

    def start(self) -> None:
        """Register this process in the study's table and start beating."""
        if self.url != "memory":
            self._open_table()
            now = time.time()
            with self._engine.begin() as conn:
                conn.execute(self._table.insert().values(
                    study=self.study_name, worker=self.worker_id, machine=self.identity["machine"],
                    pid=os.getpid(), role=self.role, started=now, beat=now, done=False,
                ))
        self._thread = threading.Thread(target=self._beat_forever, name="migrator-heartbeat", daemon=True)
        self._thread.start()

    def watch(self, trial_id: int) -> None:
        """Beat for this trial from now on (and once at once: a trial with no beat is never stale)."""
        self._trial = trial_id
        if self._heartbeat is not None:
            self._heartbeat(trial_id)

    def unwatch(self) -> None:
        self._trial = None

    def _beat_forever(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # a database blip: the next beat tries again, GRACE_S allows several
                self.beat_errors += 1

    def _beat(self) -> None:
        trial = self._trial
        if trial is not None and self._heartbeat is not None:
            self._heartbeat(trial)
        if self._table is not None:
            t = self._table
            with self._engine.begin() as conn:
                conn.execute(t.update().where(t.c.study == self.study_name, t.c.worker == self.worker_id).values(beat=time.time()))

    def close(self) -> None:
        """Stop beating and mark this process done (a trial it left running is lost, see ``finished_workers``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S * 2)
        if self._table is not None:
            t = self._table
            with contextlib.suppress(Exception), self._engine.begin() as conn:
                conn.execute(t.update().where(t.c.study == self.study_name, t.c.worker == self.worker_id).values(done=True))
            self._engine.dispose()
        self._lock.close()

    # -- the lock ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The study's lock, held by one process of any machine at a time."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    # -- who else is working --------------------------------------------------------------------

    def live_workers(self) -> list[str]:
        """The ``migrator worker`` processes on the study (not this one) that still beat and have not finished."""
        if self._table is None:
            return []
        import sqlalchemy as sa

        t = self._table
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(t.c.worker, t.c.machine, t.c.pid).where(
                    t.c.study == self.study_name,
                    t.c.worker != self.worker_id,
                    t.c.role == "worker",
                    t.c.done.is_(False),
                    t.c.beat > time.time() - GRACE_S,
                )
            ).all()
        here = self.identity["machine"]
        # a worker of this machine whose process is gone is not waited for until its beat goes stale
        return [str(r.worker) for r in rows if r.machine != here or pid_alive(int(r.pid))]

    def finished_workers(self) -> set[str]:
        """Processes that closed: a trial one of them left RUNNING was interrupted, not in flight."""
        if self._table is None:
            return set()
        import sqlalchemy as sa

        t = self._table
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(t.c.worker).where(t.c.study == self.study_name, t.c.done.is_(True))).all()
        return {str(r.worker) for r in rows}

    def wait_for_workers(self, poll_s: float = 0.5) -> None:
        """Until every worker on the study has finished or stopped beating."""
        while self.live_workers():
            time.sleep(poll_s)

    def _open_table(self) -> None:
        import sqlalchemy as sa

        from migrator.llm import sql_engine

        self._engine = sql_engine(self.url)
        meta = sa.MetaData()
        self._table = sa.Table(
            _WORKERS,
            meta,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("worker", sa.String(256), primary_key=True),
            sa.Column("machine", sa.String(512), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("started", sa.Float, nullable=False),
            sa.Column("beat", sa.Float, nullable=False),
            sa.Column("done", sa.Boolean, nullable=False),
        )
        try:
            meta.create_all(self._engine, checkfirst=True)
        except sa.exc.DatabaseError:
            # another process created it between the check and the create
            if not sa.inspect(self._engine).has_table(_WORKERS):
                raise
