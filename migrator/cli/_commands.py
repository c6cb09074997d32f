"""The commands, one function each: run, eval, demo, ui, export. Thin: the work is elsewhere.

Each takes the parsed arguments and returns the exit code (see :mod:`migrator.cli`);
bad input raises :class:`~migrator.errors.InputError`, which ``main`` turns into exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.cli._progress import Progress, print_demo_result, print_run_result
from migrator.cli._terminal import log
from migrator.errors import InputError
from migrator.models import is_local, local_name
from migrator.redaction import redact

if TYPE_CHECKING:
    from migrator.llm import LiteLLMClient
    from migrator.migration import MigrationResult, Plan, Prepared
    from migrator.outputs import Lockfile, WinnerLock
    from migrator.outputs.tracking import Tracker
    from migrator.spec import MigrationSpec, SearchSpace

__all__ = [
    "EXIT_BUDGET",
    "EXIT_ERROR",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "cmd_demo",
    "cmd_eval",
    "cmd_export",
    "cmd_run",
    "cmd_ui",
]

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# -- migrator run -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Search, write summary.json, report.html and winner.yaml, record in MLflow; show the table.

    With ``--dry-run``: check the spec as a run does and print its plan; no call, no file.
    """
    from migrator.spec import load_spec

    if getattr(args, "dry_run", False):
        return dry_run(load_spec(args.spec), args)
    if args.out is None:
        raise InputError("migrator run needs --out DIR (the output directory), unless it is a --dry-run")
    return run_spec(load_spec(args.spec), args)


def dry_run(spec: MigrationSpec, args: argparse.Namespace) -> int:
    """``migrator run --dry-run``: the inputs checked as a run checks them, and the plan printed.

    Nothing is opened or started: no output directory, study, cache, MLflow run or local server.
    """
    from migrator.migration import plan_migration, prepare

    prepared = prepare(spec)
    # a --storage or storage: that a run would refuse is refused here too (the URL is only read)
    study_of(spec, args.storage, "memory")
    print_plan(plan_migration(prepared))
    return EXIT_OK


def print_plan(plan: Plan) -> None:
    """The plan as ``--dry-run`` shows it: candidates, search space, budget, then the estimate per step."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)  # a pipe or a CI log: rich's 80 columns would fold every line
    say = functools.partial(console.print, markup=False, highlight=False)
    train, dev, test = plan.splits
    say(f"dry run of migration {plan.name}: no call made, nothing written")
    say(f"data: {train} train, {dev} dev, {test} test rows")
    console.print(_targets_table(plan))
    _print_candidates(plan, say)
    b = plan.budget
    set_by_spec = (("calls", b.calls), ("usd", b.usd), ("minutes", b.minutes))
    limits = [f"{k} {'not set' if v is None else format(v, 'g')}" for k, v in set_by_spec]
    say(f"budget: trials {b.trials}, {', '.join(limits)}, finalists {b.finalists}")
    say(f"  binds: {plan.binds}: {plan.binds_why}")
    if plan.space_note:
        say(f"  {plan.space_note}")
    for caveat in plan.caveats:
        say(f"  {caveat}")
    console.print(_estimate_table(plan))
    if plan.unpriced:
        unknown = ", ".join(plan.unpriced)
        say(f"price unknown for {unknown}: litellm's price map has none, so their calls have no USD estimate")


def _targets_table(plan: Plan) -> Any:
    from rich.table import Table

    table = Table(title=f"targets ({len(plan.targets)})", title_justify="left")
    for name in ("model", "mode", "sampling searched", "configs", "one dev call"):
        table.add_column(name, overflow="fold", justify="right" if name == "configs" else "left")
    for t in plan.targets:
        call = f"{_usd(t.price.usd, 6)} (~{t.price.input_tokens} in + {t.price.output_tokens} out tokens)"
        table.add_row(t.model, t.mode, "; ".join(t.sampling) or "-", _span(t.configs), call)
    return table


def _print_candidates(plan: Plan, say: Callable[[str], object]) -> None:
    """The prompts (those written before or during the search as planned), the demos, the space's size."""
    fixed = [p for p in plan.prompts if p.kind in ("original", "transform")]
    count = _span((sum(p.count for p in plan.prompts if p.kind != "rewrite"), sum(p.count for p in plan.prompts)))
    transforms = f"the original and {len(fixed) - 1} transforms" if len(fixed) > 1 else "the original only"
    say(f"prompts ({count}): {', '.join(p.id for p in fixed)} ({transforms})")
    for p in plan.prompts:
        if p not in fixed:
            say(f"  + {'up to ' + str(p.count) + ' ' if p.kind == 'rewrite' else ''}{p.id}: {p.note}")
    strategies = ", ".join(plan.demo_strategies)
    say(f"demos: k in {', '.join(map(str, plan.demo_k))}, each k > 0 by {strategies}: {plan.demo_options} options")
    size = f"search space: {_span(plan.configs)} configs"
    if plan.configs[0] != plan.configs[1]:
        size += " (as many rewrites as are accepted)"
    say(f"{size}; picked by the {plan.sampler}")
    if plan.continuous:
        listed = plan.sampler == "linear planner"
        how = "counted at the points the planner lists" if listed else "counted at the planner's points, sampled anywhere"
        say(f"  {', '.join(plan.continuous)} without a step: {how}")


def _estimate_table(plan: Plan) -> Any:
    from rich.table import Table

    title = "estimate, each step at its most (a run from scratch; cached replies and retries not counted)"
    table = Table(title=title, title_justify="left")
    for name in ("step", "calls", "USD", "what"):
        table.add_column(name, overflow="fold", justify="right" if name in ("calls", "USD") else "left")
    for s in plan.stages:
        table.add_row(s.name, str(s.calls), _usd(s.usd, 4), s.detail)
    capped = []
    if sum(s.calls for s in plan.stages) > plan.calls:
        capped.append("budget.calls")
    if plan.usd is not None and plan.usd == plan.budget.usd:
        capped.append("budget.usd")
    table.add_row("total", str(plan.calls), _usd(plan.usd, 4), f"capped by {' and '.join(capped)}" if capped else "")
    return table


def _span(bounds: tuple[int, int]) -> str:
    low, high = bounds
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def _usd(usd: float | None, places: int) -> str:
    return "price unknown" if usd is None else f"${usd:.{places}f}"


def run_spec(spec: MigrationSpec, args: argparse.Namespace) -> int:
    """``migrator run`` on a loaded spec (``migrator fleet run`` loads each app's with the fleet's defaults).

    ``args`` may also carry ``experiment`` and ``tags`` (the MLflow experiment and parent-run
    tags a fleet puts every app under), ``artifacts`` (where that experiment keeps files) and
    ``default_storage`` (the study's database when neither ``--storage`` nor the spec names one).
    """
    return search_app(spec, args).finish()


@dataclass
class SearchedApp:
    """A run whose search and verdict are done and whose summary.json and winner.yaml are written.

    What is left, ``finish``, needs no model: the report's charts and the MLflow record.
    A fleet runs it on another thread while the next app searches.
    """

    result: MigrationResult
    tracker: Tracker
    files: dict[str, Path]
    summary: dict[str, Any]
    out_dir: Path
    quiet: bool

    def finish(self, write_report: Callable[[Path, MigrationResult, Mapping[str, Any]], None] | None = None) -> int:
        """Write report.html (with ``write_report``, by default in this process), finish and close
        the MLflow record; the run's exit code."""
        if write_report is None:
            from migrator.outputs.report import write_report as write_here

            write_report = write_here
        try:
            write_report(self.files["report"], self.result, self.summary)
            if not self.quiet:
                exhausted_after = len(self.result.search.trials) if self.result.search.exhausted else None
                print_run_result(self.summary, exhausted_after=exhausted_after, out_dir=self.out_dir, has_winner="winner" in self.files)
            tracking_whole = _finish_tracking(self.tracker, self.result, self.files, self.out_dir)
        finally:
            self.tracker.close()
        return _run_exit_code(self.result, tracking_whole)


def search_app(spec: MigrationSpec, args: argparse.Namespace) -> SearchedApp:
    """The search and verdict of ``migrator run``, up to summary.json and winner.yaml."""
    from migrator.cli._workers import local_workers, study_attrs
    from migrator.migration import default_out_paths, prepare

    prepared = prepare(spec)
    out_dir: Path = args.out
    paths = default_out_paths(out_dir)
    storage, study_name = study_of(spec, args.storage, getattr(args, "default_storage", None) or paths["storage"])
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = None if args.no_cache else cache_location(args.cache, storage, Path(paths["cache"]))
    client = make_client(cache, calls=spec.budget.calls, usd=spec.budget.usd, space=spec.search_space, seed=spec.seed)
    tracking_uri = args.tracking_uri or spec.tracking.uri or paths["tracking"]
    tracker = _tracker(spec, tracking_uri, getattr(args, "artifacts", None) or out_dir / "mlartifacts", args)
    progress = Progress(spec.budget.trials, client, enabled=not args.quiet)
    # MLflow opens its store in the background while local servers start and the search runs.
    tracker.start(prepared, study_name, {})
    try:
        with (
            model_servers(models_of(spec), out_dir / "logs") as api_bases,
            progress.progress,
            local_workers(args, storage, tracking_uri, cache, api_bases, out_dir / "logs") as spawned,
        ):
            # workers log their trials under this run's parent run, so they wait for its id
            attrs = study_attrs(tracker, tracking_uri) if spawned or args.storage else {}
            result = _search(
                prepared, client, tracker, progress, storage=storage, study_name=study_name, api_bases=api_bases, attrs=attrs
            )
        tracker.log_verdict(result)
        files, summary = _write_run_outputs(result, tracker, out_dir)
    except BaseException:
        # an interrupted or failed run still records the trials that finished
        tracker.close()
        raise
    return SearchedApp(result, tracker, files, summary, out_dir, args.quiet)


def study_of(spec: MigrationSpec, storage: str | None, default_storage: str | None) -> tuple[str, str]:
    """The study's storage and name: ``--storage``, else ``spec.storage``, else ``spec.study`` if it is a URL.

    ``spec.study`` is a storage URL or a study name (default: the spec's name and hash).
    """
    from migrator.errors import SpecError

    url_in_study = spec.study if spec.study and "://" in spec.study else None
    chosen = storage or spec.storage or url_in_study or default_storage
    if chosen is None:
        raise SpecError("a worker needs the study's database: pass --storage URL or set storage:", file=spec.source_file, where="storage")
    where = "--storage" if storage else "storage" if spec.storage else "study"
    if chosen != "memory" and not chosen.startswith(("sqlite:///", "postgresql://", "postgresql+")):
        raise SpecError(
            f"expected a database URL such as sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, got {chosen.split('://')[0]!r}",
            file=spec.source_file if where != "--storage" else None,
            where=where,
        )
    study_name = spec.study if spec.study and "://" not in spec.study else f"{spec.name}-{spec.spec_hash()}"
    return chosen, study_name


def cache_location(cache: str | None, storage: str, default: Path | None) -> str | Path | None:
    """The response cache: ``--cache`` (a file or a URL), else the study's PostgreSQL database, else ``default``."""
    if cache:
        return cache if "://" in cache else Path(cache)
    if storage.startswith("postgresql"):
        return storage
    return default


def models_of(spec: MigrationSpec) -> list[str]:
    """Every model the run calls: targets, the legacy model, the proposer, the judge."""
    models = [t.model for t in spec.targets] + [spec.app.model]
    for other in (spec.search_space.prompt.proposer, spec.metric.model):
        if other is not None:
            models.append(other.model)
    return models


def _tracker(spec: MigrationSpec, uri: str, artifact_dir: Path, args: argparse.Namespace) -> Tracker:
    from migrator.outputs.tracking import MlflowTracker, NullTracker

    if args.no_tracking:
        return NullTracker()
    experiment = getattr(args, "experiment", None) or spec.tracking.experiment
    tags = getattr(args, "tags", None) or {}
    return MlflowTracker(uri, experiment, artifact_dir, on_failure=_tracking_failed, tags=tags)


def _tracking_failed(error: Exception) -> None:
    """Say at once that MLflow tracking stopped, rather than only at the end of a long search."""
    log.warning("warning: %s; the search goes on and its outputs will be written, then the run exits 1", error)


def _search(
    prepared: Prepared,
    client: LiteLLMClient,
    tracker: Tracker,
    progress: Progress,
    *,
    storage: str,
    study_name: str,
    api_bases: Mapping[str, str],
    attrs: Mapping[str, Any],
) -> MigrationResult:
    from migrator.migration import run_migration

    return run_migration(
        prepared,
        client,
        storage=storage,
        study_name=study_name,
        api_bases=api_bases,
        callbacks=[tracker.log_trial, progress.on_trial],
        on_progress=progress.on_event,
        on_candidates=tracker.log_candidates,
        study_attrs=attrs,
    )


def _write_run_outputs(result: MigrationResult, tracker: Tracker, out_dir: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write summary.json and winner.yaml (if there is a winner); the output files by role, and the summary.

    report.html (listed here, written by ``SearchedApp.finish``) is drawn from the same summary.
    """
    from migrator.outputs import labels_jsonl, summary_dict, winner_dict, write_outputs

    files = {"summary": out_dir / "summary.json", "report": out_dir / "report.html"}
    winner = winner_dict(result, out_dir)
    if winner is not None:
        files["winner"] = out_dir / "winner.yaml"
    summary = summary_dict(result, _run_ids(tracker), files)
    paths = write_outputs(out_dir, summary, winner, labels_jsonl(result))
    if "labels" in paths:
        files["labels"] = paths["labels"]
    return files, summary


def _run_ids(tracker: Tracker) -> dict[str, Any]:
    """Where the run is recorded; an MLflow tracker's ids wait for its worker to have opened the parent run."""
    return {
        "tracking_uri": getattr(tracker, "tracking_uri", None),
        "experiment_id": getattr(tracker, "experiment_id", None),
        "parent_run_id": getattr(tracker, "parent_run_id", None),
    }


def _finish_tracking(tracker: Tracker, result: MigrationResult, files: Mapping[str, Path], out_dir: Path) -> bool:
    """Finish the MLflow record; whether it is whole (if not, stderr says so)."""
    from migrator.errors import TrackingError

    try:
        tracker.finish(result, files)
    except TrackingError as exc:
        log.error("error: %s; the run's own outputs in %s were written", exc, out_dir)
        return False
    return True


def _run_exit_code(result: MigrationResult, tracking_whole: bool) -> int:
    if result.verdict.winner is None:
        if result.verdict.stopped_by:
            log.error("the %s budget ran out before any winner was scored", result.verdict.stopped_by)
            return EXIT_BUDGET
        log.error("no trial completed; see summary.json for what failed")
        return EXIT_ERROR
    return EXIT_OK if tracking_whole else EXIT_ERROR


# -- what every command that calls models needs -----------------------------------------------


@contextlib.contextmanager
def model_servers(models: Sequence[str], log_dir: Path) -> Iterator[dict[str, str]]:
    """Start what the models need: local llama.cpp servers, the fake provider."""
    if any(m.startswith("fake/") for m in models):
        from migrator.testing import register_fake_provider

        register_fake_provider()
    local = sorted({local_name(m) for m in models if is_local(m)})
    if not local:
        yield {}
        return
    from migrator.local import LocalServer

    # A migration calls one model at a time (trials run one after another), so each
    # server may use every core; idle llama.cpp servers do not spin.
    # 4096 tokens of context: a long legacy prompt repeated in a few demo turns fits
    with LocalServer(local, log_dir=log_dir, n_threads=os.cpu_count() or 1, n_ctx=4096) as server:
        yield {f"local/{name}": server.api_base(name) for name in local}


def make_client(cache: str | Path | None, *, calls: int | None, usd: float | None, space: SearchSpace, seed: int) -> LiteLLMClient:
    from migrator.llm import Limits, LiteLLMClient, open_cache

    return LiteLLMClient(
        cache=open_cache(cache) if cache else None,
        limits=Limits(calls=calls, usd=usd),
        concurrency=space.concurrency,
        timeout_s=space.timeout_s,
        max_retries=space.max_retries,
        seed=seed,
    )


# -- migrator eval, demo, ui, export ----------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    """Re-score a winner lockfile on a split; exit 1 under ``--min-score`` (a CI gate)."""
    from migrator.outputs import evaluate_lockfile, load_lockfile
    from migrator.spec import SearchSpace

    lock = load_lockfile(args.winner, args.dataset)
    cache = None if args.no_cache else (args.cache or args.winner.parent / "cache.db")
    client = make_client(cache, calls=None, usd=None, space=SearchSpace(), seed=0)
    judge = lock.metric.spec.model if lock.metric.spec else None
    with model_servers([lock.target.model, *([judge.model] if judge else [])], args.winner.parent / "logs") as api_bases:
        ev = evaluate_lockfile(lock, client, args.split, api_bases)
    from migrator.migration import Noise

    sampled = f"mean of {len(ev.noise.test)} samples, spread {Noise.spread(ev.noise.test):.3f}, " if ev.noise else ""
    print(
        f"{lock.target.model} · {lock.config.prompt_id}: {args.split} score {ev.test.score:.3f} "
        f"({sampled}95% CI [{ev.test_ci[0]:.3f}, {ev.test_ci[1]:.3f}], n={ev.test.n}, failed={ev.test.failed}) · "
        f"calls {client.stats.made} made, {client.stats.cached} cached"
    )
    if args.min_score is not None and ev.test.score < args.min_score:
        log.error("score %.3f is below --min-score %s", ev.test.score, args.min_score)
        return EXIT_ERROR
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline demo: ``migrator run`` on the shipped ticket-routing spec, two local models."""
    spec_path = _repo_file("datasets", "ticket-routing", "demo.yaml")
    print(f"migrator demo: migrating {spec_path.parent.name} (prompt written for gpt-4o-mini) to two local models")
    print("  local/qwen2.5-coder-0.5b-instruct (chat) and local/gemma-3-270m (base, completion), served by llama.cpp")
    run_args = argparse.Namespace(
        spec=spec_path, out=args.out, cache=None, no_cache=False, no_tracking=False, quiet=args.quiet,
        storage=None, tracking_uri=None, workers=1,
    )
    code = cmd_run(run_args)
    summary_path = args.out / "summary.json"
    if code != EXIT_OK or not summary_path.is_file():
        return code
    import json

    print_demo_result(json.loads(summary_path.read_text()), args.out)
    return EXIT_OK


def _repo_file(*parts: str) -> Path:
    """A file shipped beside the package in the source tree (datasets, search spaces)."""
    # parents[2]: migrator/cli/_commands.py -> the clone's root
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise InputError(f"cannot find {'/'.join(parts)}; run from a clone of the migrator repository")


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI (or optuna-dashboard) on a run's stores until Ctrl-C.

    The MLflow UI's address is printed with, for each migration the store holds, the page
    that answers what won and why (its trials ranked by dev score); ``--open`` opens it
    once the server answers.
    """
    import subprocess

    try:
        command = _dashboard_command(args)
    except _ServerAlreadyUp as up:
        return _point_at_server(str(up), args)
    base = f"http://{args.host}:{args.port}"
    print(f"serving {'the Optuna dashboard' if args.optuna else 'the MLflow UI'} on {base} (Ctrl-C stops it)")
    pages = [] if args.optuna else _print_landing_pages(command[command.index("--backend-store-uri") + 1], base)
    if getattr(args, "open", False):
        threading.Thread(target=_open_when_up, args=(base, pages[0] if pages else f"{base}/"), daemon=True).start()
    try:
        return subprocess.call(command, env={**_dashboard_environment(), **os.environ})
    except KeyboardInterrupt:
        return EXIT_OK


def _print_landing_pages(store: str, base: str) -> list[str]:
    """Print, and return, each recorded migration's ranked runs page on the UI at ``base``."""
    from migrator.outputs.tracking import landing_pages

    pages = []
    for name, page, compares in landing_pages(store):
        pages.append(f"{base}/{page}")
        print(f"  {name}: trials ranked by dev score: {pages[-1]}")
        if compares:
            print(f"  {name}: winner vs naive migration, example by example: {base}/{compares[0]}")
    return pages


def _open_when_up(base: str, page: str, timeout_s: float = 120.0) -> None:
    """Open ``page`` in a browser once the server at ``base`` answers (it takes seconds to start)."""
    import urllib.request
    import webbrowser

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                reply.read()
        except OSError:
            time.sleep(0.5)
            continue
        webbrowser.open(page)
        return


def _point_at_server(uri: str, args: argparse.Namespace) -> int:
    """Print the migrations' pages on a running MLflow server (checked to answer), and open one with --open."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as reply:
            reply.read()
    except OSError as exc:
        log.error("error: the MLflow server at %s does not answer: %s", redact(uri), exc)
        return EXIT_ERROR
    base = uri.rstrip("/")
    print(f"the MLflow UI is served by {redact(uri)}: {redact(base + '/#/experiments')}")
    pages = _print_landing_pages(uri, redact(base))
    if getattr(args, "open", False):
        import webbrowser

        webbrowser.open(pages[0].replace(redact(base), base) if pages else base + "/#/experiments")
    return EXIT_OK


def _dashboard_environment() -> dict[str, str]:
    """The settings a run uses, for the dashboards (programs of their own) unless the user set them.

    mlflow's as a run loads it; and mlflow's server loads litellm (which would fetch its
    price map) and GitPython (which would warn that git is missing).
    """
    from migrator.outputs.tracking import MLFLOW_ENVIRONMENT

    return {
        **MLFLOW_ENVIRONMENT,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "GIT_PYTHON_REFRESH": "quiet",
    }


def _dashboard_command(args: argparse.Namespace) -> list[str]:
    if args.out is None and not args.tracking_uri:
        raise InputError("pass --out DIR (a run's directory) or --tracking-uri URL (an MLflow server or store)")
    if args.optuna:
        return _optuna_dashboard(args)
    if args.tracking_uri:
        store = _store_behind(args.tracking_uri)
    else:
        db = args.out / "mlflow.db"
        if not db.is_file():
            raise InputError("no MLflow store here (expected mlflow.db); run `migrator run` first", file=str(args.out))
        store = f"sqlite:///{db.resolve()}"
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", store,
        "--host", args.host, "--port", str(args.port),
    ]


def _optuna_dashboard(args: argparse.Namespace) -> list[str]:
    if args.out is None:
        raise InputError("--optuna needs --out DIR (a run's directory with study.db)")
    db = args.out / "study.db"
    if not db.is_file():
        raise InputError("no Optuna study here (expected study.db); run `migrator run` first", file=str(args.out))
    return [sys.executable, "-m", "optuna_dashboard", f"sqlite:///{db.resolve()}", "--host", args.host, "--port", str(args.port)]


def _store_behind(uri: str) -> str:
    """The store a tracking URI names; a running MLflow server is opened where it is, not served again."""
    if uri.startswith(("http://", "https://")):
        raise _ServerAlreadyUp(uri)
    if not uri.startswith(("sqlite:///", "postgresql", "mysql", "file:")):
        raise InputError(f"--tracking-uri: expected http://HOST:PORT or a store URI (sqlite:///, postgresql+psycopg://), got {uri.split(':')[0]!r}")
    return uri


class _ServerAlreadyUp(Exception):
    """``migrator ui --tracking-uri http://...``: the MLflow server is the UI already."""


def cmd_export(args: argparse.Namespace) -> int:
    """Export the winner: as a lockfile, Python, promptfoo, or into MLflow's prompt registry."""
    from migrator.outputs import read_lockfile, write_atomic

    lock_path = _lockfile_path(args.source, args.tracking_uri)
    if args.format == "mlflow":
        return _register(args, read_lockfile(lock_path), lock_path)
    text = _exported(lock_path, args.format)
    if args.output:
        write_atomic(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _exported(lock_path: Path, fmt: str) -> str:
    """The lockfile as text; promptfoo's tests are its test split, so that format loads the dataset too."""
    from migrator.outputs import exporters, load_lockfile, read_lockfile

    if fmt == "promptfoo":
        loaded = load_lockfile(lock_path)
        return exporters.render(loaded.lock, fmt, _promptfoo_tests(loaded))
    return exporters.render(read_lockfile(lock_path), fmt)


def _lockfile_path(source: Path, tracking_uri: str | None) -> Path:
    """The winner.yaml of a run directory, a lockfile, or one fetched from an MLflow parent run id."""
    if source.is_dir():
        lock_path = source / "winner.yaml"
        if not lock_path.is_file():
            raise InputError("no winner.yaml here; did the run finish?", file=str(source))
        return lock_path
    if source.is_file():
        return source
    if not tracking_uri:
        raise InputError(f"{source} is neither a run directory nor a file; to export an MLflow run id, pass --tracking-uri")
    import tempfile

    from migrator.outputs.tracking import download_lockfile

    return download_lockfile(tracking_uri, str(source), Path(tempfile.mkdtemp(prefix="migrator-export-")))


def _register(args: argparse.Namespace, lock: WinnerLock, lock_path: Path) -> int:
    from migrator.outputs.tracking import register_prompt

    uri = args.tracking_uri or f"sqlite:///{(lock_path.parent / 'mlflow.db').resolve()}"
    name, version = register_prompt(uri, lock, name=args.name, alias=args.alias)
    print(f"registered prompt {name!r} version {version} with alias {args.alias!r} in {uri}")
    print(f"load it with: mlflow.genai.load_prompt('prompts:/{name}@{args.alias}')")
    return EXIT_OK


def _promptfoo_tests(lock: Lockfile) -> list[dict[str, Any]]:
    """promptfoo's test cases: the test split, each with the prompt migrator scored."""
    return [
        {"id": ex.id, "inputs": dict(ex.inputs), "expected": ex.expected, "prompt": lock.prompt_for(ex)}
        for ex in lock.splits.test
    ]
