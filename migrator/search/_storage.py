"""Where the study lives: Optuna storage, the study itself, and what a resumed study repairs."""

from __future__ import annotations

from typing import Any

from migrator.llm import SQLITE_ENGINE_KWARGS, wal_on_connect
from migrator.search._optuna import load_optuna, quiet_logs
from migrator.search._pruners import make_pruner
from migrator.search._setup import SearchSetup
from migrator.search._space import warm_start_params
from migrator.search._trials import INTERRUPTED_NOTE


def open_storage(url: str) -> Any:
    """Optuna storage for a URL ("memory" for none); SQLite gets WAL and no fsync per commit.

    Each intermediate report is a commit, and an fsync per commit costs more than the
    LLM call it records. WAL with synchronous=NORMAL still survives a killed process;
    only a power cut can lose the last commits.
    """
    with quiet_logs() as optuna:
        if url == "memory":
            return optuna.storages.InMemoryStorage()
        if not url.startswith("sqlite:"):
            return optuna.storages.RDBStorage(url, heartbeat_interval=None)
        storage = optuna.storages.RDBStorage(url, engine_kwargs=SQLITE_ENGINE_KWARGS)
        wal_on_connect(storage.engine)
        storage.engine.dispose()
        return storage


def open_study(setup: SearchSetup, storage: str, study_name: str) -> Any:
    """The study of this name in ``storage``, created if it does not exist yet.

    Its first objective (dev score) is maximized, any others (cost, latency) minimized.
    """
    objectives = setup.spec.objective
    with quiet_logs() as optuna:
        return optuna.create_study(
            study_name=study_name,
            storage=open_storage(storage),
            directions=["maximize"] + ["minimize"] * (len(objectives) - 1),
            pruner=make_pruner(setup.space, len(objectives) > 1),
            load_if_exists=True,
        )


def queue_first_trials(study: Any, setup: SearchSetup) -> None:
    """A new study queues the warm starts; a resumed one re-queues the trials a killed run left running.

    Re-queued trials run the same configurations an uninterrupted study would have run.
    """
    trials = study.get_trials(deepcopy=False)
    if not trials:
        for model in setup.endpoints:
            study.enqueue_trial(warm_start_params(setup, model), user_attrs={"warm_start": True})
        return
    failed = load_optuna().trial.TrialState.FAIL
    for stale in (t for t in trials if t.state.name == "RUNNING"):
        # the note first: a finished trial's attrs can no longer be set
        study._storage.set_trial_user_attr(stale._trial_id, "note", INTERRUPTED_NOTE)
        study._storage.set_trial_state_values(stale._trial_id, state=failed)
        study.enqueue_trial(stale.params, user_attrs={**stale.user_attrs, "requeued": True}, skip_if_exists=False)
