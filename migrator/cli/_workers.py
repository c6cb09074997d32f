"""Many processes on one migration: ``migrator worker``, and the workers ``migrator run --workers`` starts.

A worker loads the same spec, joins the study in the shared storage, runs trials until
the study's budget is spent and exits 0; ``migrator run`` writes the verdict. Workers log
their trials as nested runs under the run's MLflow parent run, whose id the run stores in
the study.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.cli._commands import EXIT_OK, cache_location, make_client, model_servers, models_of, study_of
from migrator.cli._progress import Progress
from migrator.cli._terminal import log
from migrator.errors import InputError
from migrator.redaction import redact

if TYPE_CHECKING:
    from migrator.migration import Prepared
    from migrator.outputs.tracking import Tracker

__all__ = ["cmd_worker", "local_workers", "study_attrs"]

_TRACKING_ATTR = "migrator.tracking"


def study_attrs(tracker: Tracker, tracking_uri: str) -> dict[str, Any]:
    """What a worker needs to log under this run's MLflow parent run (waits until the tracker has opened it)."""
    parent = getattr(tracker, "parent_run_id", None)
    if parent is None:
        return {}
    # a URI with credentials is stored without them: such a worker passes --tracking-uri itself
    return {_TRACKING_ATTR: {"uri": redact(tracking_uri), "experiment_id": tracker.experiment_id, "parent_run_id": parent}}  # type: ignore[attr-defined]


@contextlib.contextmanager
def local_workers(
    args: argparse.Namespace,
    storage: str,
    tracking_uri: str,
    cache: str | Path | None,
    api_bases: Mapping[str, str],
    log_dir: Path,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``--workers N``: N-1 ``migrator worker`` processes beside this one, each logging to ``log_dir``.

    They end by themselves when the study is done; on an error or Ctrl-C here they are
    stopped, and the trials they had running are queued again when the run resumes.
    """
    count = max(1, int(getattr(args, "workers", 1) or 1)) - 1
    if count and storage == "memory":
        raise InputError("--workers needs a study in a database (--storage)")
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "migrator", "worker", str(args.spec), "--quiet"]
    command += [] if not args.no_tracking else ["--no-tracking"]
    command += [] if cache else ["--no-cache"]
    for model, base in api_bases.items():
        command += ["--api-base", f"{model}={base}"]
    if getattr(args, "fleet", None):
        command += ["--fleet", str(args.fleet)]
    # the locations go by the environment: a password in a URL stays out of the process list
    env = {**os.environ, "MIGRATOR_STORAGE": storage, "MIGRATOR_TRACKING_URI": tracking_uri, "MIGRATOR_CACHE": str(cache or "")}
    spawned: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with (log_dir / f"worker-{i + 1}.log").open("wb") as out:
                spawned.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
        yield spawned
        for i, proc in enumerate(spawned):
            if proc.wait(timeout=120) != EXIT_OK:
                log.warning("warning: worker %d exited %d; see %s", i + 1, proc.returncode, log_dir / f"worker-{i + 1}.log")
    finally:
        for proc in spawned:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


class _WorkerTracker:
    """A worker's MLflow record: its trials as nested runs under the run's parent run, once the study says which."""

    def __init__(self, prepared: Prepared, study_name: str, uri: str | None, enabled: bool) -> None:
        from migrator.outputs.tracking import NullTracker

        self.prepared, self.study_name, self.uri, self.enabled = prepared, study_name, uri, enabled
        self.tracker: Tracker = NullTracker()

    def start(self, attrs: Mapping[str, Any]) -> None:
        from migrator.outputs.tracking import MlflowTracker

        recorded = attrs.get(_TRACKING_ATTR) or {}
        uri = self.uri or recorded.get("uri")
        if not self.enabled or not recorded.get("parent_run_id") or not uri:
            return
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            log.warning("warning: the run's MLflow store %s is not on this machine; pass --tracking-uri (the run logs "
                        "this worker's trials when it finishes, without their per-example predictions)", uri)
            return
        tracker = MlflowTracker(uri, experiment=None, artifact_dir=None)
        tracker.join(self.prepared, self.study_name, recorded["parent_run_id"])
        self.tracker = tracker

    def log_trial(self, outcome: Any) -> None:
        self.tracker.log_trial(outcome)

    def close(self) -> None:
        self.tracker.close()


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a migration's study from any machine and run its trials until its budget is spent.

    Given a fleet's folder instead of a spec, join each app's study in the fleet's order
    (``migrator fleet run`` migrates them in that order), each with its fleet.yaml defaults.
    """
    from migrator.spec import load_spec

    if args.spec.is_dir():
        from migrator.cli._fleet import load_app
        from migrator.fleet import discover

        fleet = discover([args.spec])
        for app in fleet.apps:
            try:
                spec = load_app(fleet, app, fleet.deprecations_file())
            except InputError as exc:
                log.error("error: app %s: %s (skipped)", app.name, exc)
                continue
            _work_on(spec, args)
        return EXIT_OK
    spec = _fleet_app_spec(args.spec, args.fleet) if args.fleet else load_spec(args.spec)
    return _work_on(spec, args)


def _work_on(spec: Any, args: argparse.Namespace) -> int:
    from migrator.migration import join_migration, prepare

    prepared = prepare(spec)
    storage, study_name = study_of(spec, args.storage, None)
    default_cache = Path(storage.removeprefix("sqlite:///")).parent / "cache.db" if storage.startswith("sqlite:///") else None
    cache = None if args.no_cache else cache_location(args.cache, storage, default_cache)
    client = make_client(cache, calls=spec.budget.calls, usd=spec.budget.usd, space=spec.search_space, seed=spec.seed)
    tracker = _WorkerTracker(prepared, study_name, args.tracking_uri, enabled=not args.no_tracking)
    progress = Progress(spec.budget.trials, client, enabled=not args.quiet)
    given = dict(_api_base(a) for a in args.api_base or [])
    ran: list[int] = []
    log_dir = (args.out or Path.cwd() / ".migrator-worker") / "logs"
    try:
        with model_servers([m for m in models_of(spec) if m not in given], log_dir) as started, progress.progress:
            result = join_migration(
                prepared,
                client,
                storage=storage,
                study_name=study_name,
                api_bases={**started, **given},
                callbacks=[tracker.log_trial, progress.on_trial, lambda o: ran.append(o.number)],
                on_progress=progress.on_event,
                on_ready=tracker.start,
                on_done=tracker.close,
                wait_s=args.wait,
            )
    finally:
        tracker.close()
    ended = f"the {result.stopped_by} budget is spent" if result.stopped_by else "the study's trials are done"
    print(f"worker: ran {len(ran)} trials of study {study_name} ({json.dumps(result.counts)}); {ended}")
    return EXIT_OK


def _fleet_app_spec(spec: Path, root: Path) -> Any:
    """An app's spec as ``migrator fleet run`` loads it: with the fleet's fleet.yaml defaults."""
    from migrator.cli._fleet import load_app
    from migrator.fleet import App, discover

    fleet = discover([root])
    return load_app(fleet, App(spec.parent.name, spec), fleet.deprecations_file())


def _api_base(value: str) -> tuple[str, str]:
    model, sep, base = value.partition("=")
    if not sep or "://" not in base:
        raise InputError(f"--api-base: expected MODEL=URL (e.g. local/qwen2.5-coder-0.5b-instruct=http://127.0.0.1:8080/v1), got {value!r}")
    return model, base
