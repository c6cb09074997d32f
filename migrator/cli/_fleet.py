"""``migrator fleet run | report | export``: every app of a folder tree, migrated, compared and exported.

Each app is a ``migrator run`` of its own (its study, its outputs in ``DIR/<app>/``), loaded
with the fleet's ``fleet.yaml`` defaults; all record under one MLflow experiment (parent
runs tagged ``migrator.app``) and share one response cache, so an identical request from
two apps is paid once. The studies share one database, ``DIR/studies.db`` (or
``--storage``). A bad app spec is reported and skipped. Re-running resumes every app: one
whose summary.json already records its current study, and whose report was written, is
not run again.

While an app's report is drawn (in a child process) and its MLflow record finished, the
next app already searches.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from pathlib import Path
from typing import Any, Literal

from migrator.cli._commands import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, SearchedApp, search_app
from migrator.cli._terminal import log
from migrator.errors import InputError, MigratorError

__all__ = ["cmd_fleet_export", "cmd_fleet_report", "cmd_fleet_run", "load_app"]


def _today() -> date:
    from migrator.retirement import today  # MIGRATOR_TODAY, checked as `migrator check` checks it

    return today()


def load_app(fleet: Any, app: Any, deprecations: Path | None, unreachable: Literal["drop", "keep"] = "drop") -> Any:
    """An app's spec under its fleet's defaults (``unreachable`` as :func:`migrator.spec.load_spec` takes it)."""
    from migrator.spec import load_spec

    return load_spec(
        app.spec,
        defaults=fleet.defaults,
        defaults_file=fleet.defaults_file,
        deprecations=deprecations,
        today=_today(),
        unreachable=unreachable,
    )


def _plan_row(fleet: Any, app: Any, deprecations: Path | None, within: int) -> tuple[dict[str, Any], Any]:
    """The app's row of the plan and its loaded spec (None when the spec is refused)."""
    from migrator.retirement import load_deprecations, retirement_of, status

    row: dict[str, Any] = {"app": app.name, "spec": str(app.spec)}
    try:
        spec = load_app(fleet, app, deprecations)
    except InputError as exc:
        row.update(status="error", error=str(exc))
        return row, None
    overrides = load_deprecations(deprecations) if deprecations else {}
    retirement = retirement_of(spec.app.model, overrides)
    today = _today()
    days = (retirement.deprecation_date - today).days if retirement.deprecation_date else None
    row.update(
        status="queued",
        model=spec.app.model,
        targets=[t.model for t in spec.targets],
        deprecation_date=retirement.deprecation_date.isoformat() if retirement.deprecation_date else None,
        days_left=days,
        successor=retirement.successor,
        retirement=status(retirement, today, within),
        source=retirement.source,
        study=f"{spec.name}-{spec.spec_hash()}",
    )
    return row, spec


def cmd_fleet_run(args: argparse.Namespace) -> int:
    """Migrate every selected app of the fleet; write fleet.json and fleet.html."""
    from migrator.fleet import discover, fleet_rows, write_fleet_outputs, write_plan

    fleet = discover(args.paths)
    deprecations = args.deprecations or fleet.deprecations_file()
    out: Path = args.out
    planned = [_plan_row(fleet, app, deprecations, args.within) for app in fleet.apps]
    selected = [(row, spec) for row, spec in planned if spec is not None and _selected(row, args.only)]
    for row, spec in planned:
        if spec is not None and not _selected(row, args.only):
            row["status"] = "skipped"
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out, [row for row, _ in planned])
    refused = [row for row, _ in planned if row["status"] == "error"]
    for row in refused:
        log.error("error: app %s: %s", row["app"], row["error"])
    totals = {"calls": 0, "usd": 0.0}
    interrupted = False
    # An app's report and MLflow record are finished on another thread while the next app searches.
    with _Finisher(out, [r for r, _ in planned], totals) as finisher:
        for done, (row, spec) in enumerate(selected):
            _show(selected, done, row, totals, quiet=args.quiet)
            try:
                searched = _migrate_app(args, fleet, row, spec)
            except KeyboardInterrupt:
                interrupted = True
                break
            except InputError as exc:  # found only when the app ran (its dataset, its template)
                row.update(status="error", error=str(exc))
                log.error("error: app %s: %s", row["app"], exc)
                continue
            except MigratorError as exc:  # a provider or a database failed for this app: the others go on
                row.update(status="failed", error=str(exc))
                log.error("error: app %s failed: %s", row["app"], exc)
                continue
            finisher.submit(row, searched)
    write_plan(out, [r for r, _ in planned])
    rows = fleet_rows(out, [r for r, _ in planned])
    json_path, html_path = write_fleet_outputs(out, rows)
    if not args.quiet:
        print(f"fleet: {sum(r['status'] == 'migrated' for r in rows)} of {len(rows)} apps migrated · "
              f"calls {totals['calls']} · ${totals['usd']:.4f} · wrote {json_path}, {html_path}")
    if interrupted:
        log.warning("interrupted; re-run the same command to resume every app")
        return EXIT_INTERRUPTED
    refused = [r for r in rows if r["status"] == "error"]
    if refused:
        log.error("error: %d app spec(s) refused: %s", len(refused), ", ".join(r["app"] for r in refused))
        return EXIT_INPUT
    return EXIT_OK


def _selected(row: Mapping[str, Any], only: str | None) -> bool:
    return only is None or row.get("retirement") in ("retired", "retiring")


# apps searched but not yet finished, at most: a fast search does not pile up results in memory
_QUEUED_FINISHES = 2


class _Finisher:
    """Finishes each searched app on one thread, in order, and records its status.

    The report's charts are drawn in a child process, on another core: a thread of this
    process would hold the GIL while the next app's search waits to read its replies.
    The MLflow record is finished here (its own worker thread does the writing).
    """

    def __init__(self, out: Path, rows: list[dict[str, Any]], totals: dict[str, Any]) -> None:
        self._out, self._rows, self._totals = out, rows, totals
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-fleet-finish")
        self._drawer = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(_QUEUED_FINISHES)

    def __enter__(self) -> _Finisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # every report is written before fleet.json links it
        self._drawer.shutdown(wait=True)

    def submit(self, row: dict[str, Any], searched: SearchedApp | None) -> None:
        """Queue the app's finish; waits while two are queued already (each holds its app's results)."""
        with self._lock:  # its summary.json is written: the progress line counts its calls from now
            _add_spent(self._out / row["app"], self._totals)
        self._slots.acquire()
        self._pool.submit(self._finish_and_release, row, searched)

    def _finish_and_release(self, row: dict[str, Any], searched: SearchedApp | None) -> None:
        try:
            self._finish(row, searched)
        finally:
            self._slots.release()

    def _write_report(self, path: Path, result: Any, summary: Mapping[str, Any]) -> None:
        from migrator.outputs.report import write_report

        try:
            self._drawer.submit(write_report, path, result, summary).result()
        except BrokenProcessPool:  # the drawing process died (killed, out of memory): draw here
            write_report(path, result, summary)

    def _finish(self, row: dict[str, Any], searched: SearchedApp | None) -> None:
        try:
            code = EXIT_OK if searched is None else searched.finish(self._write_report)
        except Exception as exc:  # one app's report must not stop the fleet's
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            log.error("error: app %s: its report or MLflow record failed: %s", row["app"], exc)
            return
        from migrator.fleet import write_plan

        with self._lock:
            row["status"] = "ran" if code == EXIT_OK else f"exit {code}"
            # copies (each one atomic): the main thread may be updating the running app's row
            write_plan(self._out, [dict(r) for r in self._rows])


def _migrate_app(args: argparse.Namespace, fleet: Any, row: dict[str, Any], spec: Any) -> SearchedApp | None:
    """One app's search and verdict into DIR/<app>/, under the fleet's experiment, cache and tracking.

    None when an earlier fleet run finished the app (its summary.json records its current
    study, and its report was written).
    """
    out: Path = args.out
    app_out = out / row["app"]
    summary = app_out / "summary.json"
    done = summary.is_file() and (app_out / "report.html").is_file()
    if done and json.loads(summary.read_text()).get("study", {}).get("name") == row["study"]:
        return None  # nothing to pay for again
    row["status"] = "running"
    storage = args.storage
    # Every app's study in one database of the fleet (opening a new one costs a quarter of a
    # second), unless an earlier fleet run left this app's in its own folder.
    own = app_out / "study.db"
    default_storage = f"sqlite:///{(own if own.is_file() else out / 'studies.db').resolve()}"
    run_args = argparse.Namespace(
        spec=Path(row["spec"]),
        out=app_out,
        storage=storage,
        default_storage=default_storage,
        tracking_uri=args.tracking_uri or f"sqlite:///{(out / 'mlflow.db').resolve()}",
        cache=args.cache or (None if storage and storage.startswith("postgresql") else str(out / "cache.db")),
        no_cache=args.no_cache,
        no_tracking=args.no_tracking,
        quiet=True,
        workers=args.workers,
        experiment=f"fleet-{fleet.root.resolve().name}",
        tags={"migrator.app": row["app"], "migrator.fleet": str(fleet.root.resolve().name)},
        artifacts=out / "mlartifacts",
        fleet=fleet.root,
    )
    return search_app(spec, run_args)


def _add_spent(app_out: Path, totals: dict[str, Any]) -> None:
    summary = app_out / "summary.json"
    if summary.is_file():
        # the study's totals (every worker's requests), not this process's
        spent = (json.loads(summary.read_text()).get("budget") or {}).get("spent") or {}
        totals["calls"] += int(spent.get("calls") or 0)
        totals["usd"] += float(spent.get("usd") or 0.0)


def _show(selected: list[Any], done: int, row: Mapping[str, Any], totals: Mapping[str, Any], *, quiet: bool) -> None:
    if quiet:
        return
    queued = len(selected) - done - 1
    print(f"fleet: {done} done · running {row['app']} ({row.get('model')} -> {', '.join(row.get('targets') or [])}) · "
          f"{queued} queued · calls {totals['calls']} · ${totals['usd']:.4f}", flush=True)


def cmd_fleet_report(args: argparse.Namespace) -> int:
    """Rebuild fleet.json and fleet.html from what a fleet run stored; calls nothing."""
    from migrator.fleet import fleet_rows, read_plan, write_fleet_outputs

    rows = fleet_rows(args.out, read_plan(args.out))
    json_path, html_path = write_fleet_outputs(args.out, rows)
    print(f"wrote {json_path}, {html_path} ({len(rows)} apps)")
    return EXIT_OK


def cmd_fleet_export(args: argparse.Namespace) -> int:
    """Copy each migrated app's winner.yaml next to its spec (under ``--to``, by app name)."""
    from migrator.fleet import read_plan
    from migrator.outputs import read_lockfile, write_atomic

    written = 0
    for app in read_plan(args.out):
        lock = args.out / app["app"] / "winner.yaml"
        if app.get("status") == "error" or not lock.is_file():
            continue
        read_lockfile(lock)  # a lockfile that would not load is not exported
        target = (args.to / app["app"] if args.to else Path(app["spec"]).parent) / "winner.yaml"
        if not target.parent.is_dir():
            raise InputError(f"no folder for app {app['app']} here", file=str(target.parent))
        write_atomic(target, lock.read_text(encoding="utf-8"))
        print(f"{app['app']}: wrote {target}")
        written += 1
    if not written:
        log.error("no app has a winner.yaml in %s; run `migrator fleet run` first", args.out)
        return EXIT_INPUT
    return EXIT_OK
