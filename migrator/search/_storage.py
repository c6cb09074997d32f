"""Where the study lives: Optuna storage, the study itself, and the repair of trials a process lost.

A trial is lost when the process running it dies (a kill, a crash, a machine gone): it
stays RUNNING in the study. Whoever notices first fails it and queues it again with the
same parameters, marked ``requeued_from`` its number; the failed one is then not
counted (the copy stands for it), so a study repaired this way runs the configurations
an uninterrupted one would have run. A trial is lost when:

- its heartbeat is older than ``GRACE_S`` (Optuna's ``fail_stale_trials``; any machine);
- the process that ran it closed without finishing it (its row in ``migrator_workers``
  is done: a Ctrl-C, a budget hit inside the trial);
- it ran on this machine and its process no longer exists (found at once on resume,
  rather than after the grace period);
- it never got a first heartbeat and started more than ``GRACE_S`` ago (a kill between
  Optuna's ask and the first beat).

Each is failed through Optuna's atomic state change, which only one process can win, so
a lost trial is queued again exactly once.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from migrator.llm import PG_ENGINE_KWARGS, SQLITE_ENGINE_KWARGS, db_errors, wal_on_connect
from migrator.search._coordination import GRACE_S, HEARTBEAT_S, Coordinator, machine_id, pid_alive
from migrator.search._optuna import experimental_features, load_optuna, quiet_logs
from migrator.search._pruners import make_pruner
from migrator.search._setup import SearchSetup
from migrator.search._space import warm_start_params


def open_storage(url: str) -> Any:
    """Optuna storage for a URL ("memory" for none), with heartbeats on a database.

    SQLite gets WAL and no fsync per commit: each intermediate report is a commit, and an
    fsync per commit costs more than the LLM call it records. WAL with synchronous=NORMAL
    still survives a killed process; only a power cut can lose the last commits.

    Workers that start at once on a new database race to create Optuna's tables; the
    losers see the winner's tables (or rows) and open them.
    """
    import sqlalchemy as sa

    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return _storage(url)
        except sa.exc.DatabaseError as exc:
            # PostgreSQL says "already exists" or "duplicate key"; SQLite "UNIQUE constraint failed"
            raced = isinstance(exc, sa.exc.IntegrityError) or "already exists" in str(exc)
            if not raced or attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


_CREATE_ATTEMPTS = 5


def _storage(url: str) -> Any:
    with quiet_logs() as optuna, experimental_features():
        if url == "memory":
            return optuna.storages.InMemoryStorage()
        sqlite = url.startswith("sqlite:")
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=SQLITE_ENGINE_KWARGS if sqlite else PG_ENGINE_KWARGS if url.startswith("postgresql") else {},
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=requeue,
            # the schema check reads Optuna's migration scripts (a quarter of a second); once per database
            skip_compatibility_check=url in _CHECKED,
        )
        _CHECKED.add(url)
        if sqlite:
            wal_on_connect(storage.engine)
            storage.engine.dispose()
        return storage


# the databases whose schema this process has checked (or created) already
_CHECKED: set[str] = set()


def open_study(setup: SearchSetup, storage: str, study_name: str) -> Any:
    """The study of this name in ``storage``, created if it does not exist yet.

    Its first objective (dev score) is maximized, any others (cost, latency) minimized.
    """
    objectives = setup.spec.objective
    with quiet_logs() as optuna, db_errors(storage, "the study's database"):
        return optuna.create_study(
            study_name=study_name,
            storage=open_storage(storage),
            directions=["maximize"] + ["minimize"] * (len(objectives) - 1),
            pruner=make_pruner(setup.space, len(objectives) > 1),
            load_if_exists=True,
        )


def queue_warm_starts(study: Any, setup: SearchSetup) -> None:
    """A new study queues one warm start per target; call under the study's lock (exactly once)."""
    if study.get_trials(deepcopy=False):
        return
    for model in setup.endpoints:
        study.enqueue_trial(warm_start_params(setup, model), user_attrs={"warm_start": True})


def requeue(study: Any, lost: Any) -> None:
    """Queue a lost (now failed) trial again with its parameters; the copy stands for it."""
    params = {**(lost.system_attrs.get("fixed_params") or {}), **lost.params}
    attrs: dict[str, Any] = {"requeued": True, "requeued_from": lost.number}
    if lost.user_attrs.get("warm_start"):
        attrs["warm_start"] = True
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)


def repair_lost_trials(study: Any, coordinator: Coordinator) -> int:
    """Fail and queue again every trial its process lost (see the module's list); how many."""
    optuna = load_optuna()
    with experimental_features(), quiet_logs():
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            return 0  # only a running trial can be lost: one query, in the common case
        before = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        optuna.storages.fail_stale_trials(study)  # by heartbeat, on any machine; requeues through the callback
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if running:
            finished = coordinator.finished_workers()
            for trial in running:
                if _lost(trial, finished, coordinator):
                    _fail_and_requeue(study, trial)
        after = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    return max(0, after - before)


def _lost(trial: Any, finished: set[str], coordinator: Coordinator) -> bool:
    worker = trial.user_attrs.get("worker")
    if not isinstance(worker, dict):
        started = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() > GRACE_S
    if worker.get("id") == coordinator.worker_id:
        return False  # this process's own trial, still in flight
    if worker.get("id") in finished:
        return True
    return worker.get("machine") == machine_id() and not pid_alive(int(worker.get("pid", 0)))


def _fail_and_requeue(study: Any, trial: Any) -> None:
    optuna = load_optuna()
    try:
        failed = study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another process repaired it, or its worker finished it meanwhile
    if failed:
        requeue(study, study._storage.get_trial(trial._trial_id))


@dataclass(frozen=True)
class SharedStudy:
    """The study as one of its processes holds it: the Optuna study and this process's coordinator."""

    study: Any
    coordinator: Coordinator
    storage: str
    name: str

    def ready(self) -> bool:
        """Whether the process that sets the study up (``migrator run``) has finished doing so."""
        return bool(self.study.user_attrs.get(READY_ATTR))


# the study's user attrs that ``migrator run`` sets up for every worker, and the flag that it is done
READY_ATTR = "migrator.ready"


@contextlib.contextmanager
def shared_study(setup: SearchSetup, storage: str, study_name: str, role: str = "run") -> Iterator[SharedStudy]:
    """Open (or create) the study and take part in it until the block ends."""
    study = open_study(setup, storage, study_name)
    heartbeat = getattr(study._storage, "record_heartbeat", None) if storage != "memory" else None
    coordinator = Coordinator(storage, study_name, heartbeat, role)
    coordinator.start()
    try:
        yield SharedStudy(study, coordinator, storage, study_name)
    finally:
        coordinator.close()


def study_names(storage: str) -> list[str]:
    """The studies in a storage (none for "memory")."""
    if storage == "memory":
        return []
    with quiet_logs() as optuna, experimental_features():
        return [s.study_name for s in optuna.study.get_all_study_summaries(open_storage(storage), include_best_trial=False)]
