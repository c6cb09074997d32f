"""The commands, one function each: run, eval, demo, ui, export. Thin: the work is elsewhere.

Each takes the parsed arguments and returns the exit code (see :mod:`migrator.cli`);
bad input raises :class:`~migrator.errors.InputError`, which ``main`` turns into exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.cli._progress import Progress, print_demo_result, print_run_result
from migrator.cli._terminal import log
from migrator.errors import InputError
from migrator.models import is_local, local_name

if TYPE_CHECKING:
    from migrator.llm import LiteLLMClient
    from migrator.migration import MigrationResult, Prepared
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
    """Search, write summary.json, report.html and winner.yaml, record in MLflow; show the table."""
    from migrator.migration import default_out_paths, prepare
    from migrator.spec import load_spec

    spec = load_spec(args.spec)
    prepared = prepare(spec)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = default_out_paths(out_dir)
    storage, study_name = _study_of(spec, paths["storage"])
    cache_path = None if args.no_cache else (args.cache or Path(paths["cache"]))
    client = _client(cache_path, calls=spec.budget.calls, usd=spec.budget.usd, space=spec.search_space, seed=spec.seed)
    tracker = _tracker(spec, paths["tracking"], out_dir, enabled=not args.no_tracking)
    progress = Progress(spec.budget.trials, client, enabled=not args.quiet)
    # MLflow opens its store in the background while local servers start and the search runs.
    tracker.start(prepared, study_name, {})
    try:
        with _model_servers(_models_of(spec), out_dir / "logs") as api_bases, progress.progress:
            result = _search(prepared, client, tracker, progress, storage=storage, study_name=study_name, api_bases=api_bases)
        files = _write_run_outputs(result, tracker, out_dir, quiet=args.quiet)
        tracking_whole = _finish_tracking(tracker, result, files, out_dir)
    finally:
        # an interrupted or failed run still records the trials that finished
        tracker.close()
    return _run_exit_code(result, tracking_whole)


def _study_of(spec: MigrationSpec, default_storage: str) -> tuple[str, str]:
    """The study's storage and name: ``spec.study`` is a storage URL or a study name."""
    storage = spec.study if spec.study and "://" in spec.study else default_storage
    study_name = spec.study if spec.study and "://" not in spec.study else f"{spec.name}-{spec.spec_hash()}"
    return storage, study_name


def _models_of(spec: MigrationSpec) -> list[str]:
    """Every model the run calls: targets, the legacy model, the proposer."""
    models = [t.model for t in spec.targets] + [spec.app.model]
    if spec.search_space.prompt.proposer is not None:
        models.append(spec.search_space.prompt.proposer.model)
    return models


def _tracker(spec: MigrationSpec, default_uri: str, out_dir: Path, *, enabled: bool) -> Tracker:
    from migrator.outputs.tracking import MlflowTracker, NullTracker

    if not enabled:
        return NullTracker()
    uri = spec.tracking.uri or default_uri
    return MlflowTracker(uri, spec.tracking.experiment, out_dir / "mlartifacts", on_failure=_tracking_failed)


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
    )


def _write_run_outputs(result: MigrationResult, tracker: Tracker, out_dir: Path, *, quiet: bool) -> dict[str, Path]:
    """Write summary.json, winner.yaml (if there is a winner) and report.html; returns them by role."""
    from migrator.outputs import summary_dict, winner_dict, write_outputs
    from migrator.outputs.report import write_report

    files = {"summary": out_dir / "summary.json", "report": out_dir / "report.html"}
    winner = winner_dict(result, out_dir)
    if winner is not None:
        files["winner"] = out_dir / "winner.yaml"
    summary = summary_dict(result, _run_ids(tracker), files)
    write_outputs(out_dir, summary, winner)
    write_report(out_dir / "report.html", result, summary)
    if not quiet:
        exhausted_after = len(result.search.trials) if result.search.exhausted else None
        print_run_result(summary, exhausted_after=exhausted_after, out_dir=out_dir, has_winner=winner is not None)
    return files


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
def _model_servers(models: Sequence[str], log_dir: Path) -> Iterator[dict[str, str]]:
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


def _client(cache_path: Path | None, *, calls: int | None, usd: float | None, space: SearchSpace, seed: int) -> LiteLLMClient:
    from migrator.llm import Limits, LiteLLMClient, ResponseCache

    return LiteLLMClient(
        cache=ResponseCache(cache_path) if cache_path else None,
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
    client = _client(cache, calls=None, usd=None, space=SearchSpace(), seed=0)
    with _model_servers([lock.target.model], args.winner.parent / "logs") as api_bases:
        ev = evaluate_lockfile(lock, client, args.split, api_bases)
    print(
        f"{lock.target.model} · {lock.config.prompt_id}: {args.split} score {ev.test.score:.3f} "
        f"(95% CI [{ev.test_ci[0]:.3f}, {ev.test_ci[1]:.3f}], n={ev.test.n}, failed={ev.test.failed}) · "
        f"calls {client.stats.made} made, {client.stats.cached} cached"
    )
    if args.min_score is not None and ev.test.score < args.min_score:
        log.error("score %.3f is below --min-score %s", ev.test.score, args.min_score)
        return EXIT_ERROR
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline demo: ``migrator run`` on the shipped review-sentiment spec, two local models."""
    spec_path = _repo_file("datasets", "review-sentiment", "demo.yaml")
    print(f"migrator demo: migrating {spec_path.parent.name} (prompt written for gpt-4o-mini) to two local models")
    print("  local/qwen2.5-coder-0.5b-instruct (chat) and local/gemma-3-270m (base, completion), served by llama.cpp")
    run_args = argparse.Namespace(
        spec=spec_path, out=args.out, cache=None, no_cache=False, no_tracking=False, quiet=args.quiet
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
    """Serve the MLflow UI (or optuna-dashboard) on a run's stores until Ctrl-C."""
    import subprocess

    command = _dashboard_command(args)
    print(f"serving {'the Optuna dashboard' if args.optuna else 'the MLflow UI'} on http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        return subprocess.call(command, env={**_dashboard_environment(), **os.environ})
    except KeyboardInterrupt:
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
    out: Path = args.out
    if args.optuna:
        db = out / "study.db"
        if not db.is_file():
            raise InputError("no Optuna study here (expected study.db); run `migrator run` first", file=str(out))
        return [sys.executable, "-m", "optuna_dashboard", f"sqlite:///{db.resolve()}", "--host", args.host, "--port", str(args.port)]
    db = out / "mlflow.db"
    if not db.is_file():
        raise InputError("no MLflow store here (expected mlflow.db); run `migrator run` first", file=str(out))
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", f"sqlite:///{db.resolve()}",
        "--host", args.host, "--port", str(args.port),
    ]


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
