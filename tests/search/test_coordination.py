"""Many processes on one study: the lock, the repair of lost trials, warm starts queued once.

Whole runs with workers are in ``tests/test_workers.py``.

Each test runs on SQLite and on a real PostgreSQL server (the ``postgres_url`` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.migration import build_setup, prepare
from migrator.search import SearchSetup, _coordination, _storage, queue_warm_starts, shared_study
from migrator.search._coordination import Coordinator, machine_id
from migrator.spec import load_spec


@pytest.fixture
def storage(database_url: str) -> str:
    return database_url


def _setup(write_spec: Callable[..., Path], **overrides: Any) -> SearchSetup:
    return build_setup(prepare(load_spec(write_spec(**overrides))), {})


_LOCKER = textwrap.dedent(
    """
    import sys, time
    from migrator.search._coordination import Coordinator
    url, log, rounds, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    c = Coordinator(url, "s", role="worker")
    for _ in range(rounds):
        with c.lock():
            with open(log, "a") as f:
                f.write(f"in {sys.argv[5]}\\n")
            time.sleep(hold)
            with open(log, "a") as f:
                f.write(f"out {sys.argv[5]}\\n")
    print("locked", flush=True)
    if rounds == 0:
        with c.lock():
            print("holding", flush=True)
            time.sleep(600)
    """
)


def _locker(storage: str, log: Path, rounds: int, name: str, hold: float = 0.01) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", _LOCKER, storage, str(log), str(rounds), str(hold), name]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def test_two_processes_never_hold_the_study_lock_at_once(storage: str, tmp_path: Path) -> None:
    log = tmp_path / "lock.log"
    procs = [_locker(storage, log, 15, name) for name in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 60
    # every "in x" is followed by "out x": no one entered while another held the lock
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("in ") and leave == "out " + enter[3:]
    assert {line[3:] for line in lines[::2]} == {"a", "b"}


def test_a_killed_holder_releases_the_study_lock(storage: str, tmp_path: Path) -> None:
    holder = _locker(storage, tmp_path / "unused.log", 0, "h")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked" and holder.stdout.readline().strip() == "holding"
    mine = Coordinator(storage, "s")
    got = threading.Event()

    def take() -> None:
        with mine.lock():
            got.set()

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    assert not got.wait(1.0), "the lock was taken while another process held it"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert got.wait(30), "a killed process kept the study locked"
    mine.close()


def _asked_by(study: Any, identity: dict[str, Any]) -> Any:
    trial = study.ask()
    trial.set_user_attr("worker", identity)
    return trial


def _states(study: Any) -> list[tuple[int, str, Any]]:
    return [(t.number, t.state.name, t.user_attrs.get("requeued_from")) for t in study.get_trials(deepcopy=False)]


def test_a_trial_whose_heartbeat_stopped_on_another_machine_is_run_again(
    storage: str, write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_coordination, "GRACE_S", 1)
    monkeypatch.setattr(_storage, "GRACE_S", 1)
    setup = _setup(write_spec)
    with shared_study(setup, storage, "s") as shared:
        study = shared.study
        study.enqueue_trial({"model": "fake/weak", "prompt": "original", "demos": 2, "demo_strategy": "random"})
        elsewhere = {"id": "other-host:1:abc", "machine": "other-host:boot:ns", "pid": 1}
        lost = _asked_by(study, elsewhere)
        study._storage.record_heartbeat(lost._trial_id)
        assert _storage.repair_lost_trials(study, shared.coordinator) == 0  # still beating, as far as anyone knows
        time.sleep(2.5)
        assert _storage.repair_lost_trials(study, shared.coordinator) == 1
        assert _storage.repair_lost_trials(study, shared.coordinator) == 0  # queued again exactly once
        assert _states(study) == [(0, "FAIL", None), (1, "WAITING", 0)]
        copy = study.get_trials(deepcopy=False)[1]
        assert copy.system_attrs["fixed_params"]["demos"] == 2


def test_a_trial_of_a_process_that_died_here_is_run_again_at_once(storage: str, write_spec: Callable[..., Path]) -> None:
    setup = _setup(write_spec)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with shared_study(setup, storage, "s") as shared:
        study = shared.study
        dead = _asked_by(study, {"id": "dead", "machine": machine_id(), "pid": gone.pid})
        study._storage.record_heartbeat(dead._trial_id)
        alive = _asked_by(study, {"id": "alive", "machine": machine_id(), "pid": os.getpid()})
        study._storage.record_heartbeat(alive._trial_id)
        mine = _asked_by(study, shared.coordinator.identity)
        assert _storage.repair_lost_trials(study, shared.coordinator) == 1
        assert _states(study) == [(0, "FAIL", None), (1, "RUNNING", None), (2, "RUNNING", None), (3, "WAITING", 0)]
        del mine


def test_a_trial_left_running_by_a_process_that_closed_is_run_again_at_once(storage: str, write_spec: Callable[..., Path]) -> None:
    setup = _setup(write_spec)
    with shared_study(setup, storage, "s", role="worker") as first:
        left = _asked_by(first.study, first.coordinator.identity)
        first.coordinator.watch(left._trial_id)
    with shared_study(setup, storage, "s") as second:
        assert _storage.repair_lost_trials(second.study, second.coordinator) == 1
        assert _states(second.study) == [(0, "FAIL", None), (1, "WAITING", 0)]


def test_concurrent_setups_queue_the_warm_starts_once(storage: str, write_spec: Callable[..., Path]) -> None:
    setup = _setup(write_spec)
    barrier = threading.Barrier(4, timeout=60)  # a set-up that fails first must not hang the others
    errors: list[BaseException] = []

    def set_up() -> None:
        try:
            with shared_study(setup, storage, "s") as shared:
                barrier.wait()
                with shared.coordinator.lock():
                    queue_warm_starts(shared.study, setup)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=set_up, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with shared_study(setup, storage, "s") as shared:
        trials = shared.study.get_trials(deepcopy=False)
    assert len(trials) == len(setup.endpoints) == 2
    assert all(t.user_attrs.get("warm_start") for t in trials)
