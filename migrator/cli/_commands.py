"""Command line: argument parsing, progress, exit codes. Thin: the work is elsewhere.

Exit codes: 0 ok, 1 anything else (including MLflow tracking failing: the run's own
outputs are still written), 2 bad input (one line naming file and field), 3 a budget
ran out before any winner, 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.errors import BudgetExhausted, InputError, MigratorError
from migrator.models import is_local, local_name

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _quiet_libraries() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no phoning home, also from `migrator ui`
    for name in ("alembic", "mlflow", "LiteLLM", "litellm", "httpx", "optuna", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


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


def _client(cache_path: Path | None, *, calls: int | None, usd: float | None, space: Any, seed: int) -> Any:
    from migrator.llm import Limits, LiteLLMClient, ResponseCache

    return LiteLLMClient(
        cache=ResponseCache(cache_path) if cache_path else None,
        limits=Limits(calls=calls, usd=usd),
        concurrency=space.concurrency,
        timeout_s=space.timeout_s,
        max_retries=space.max_retries,
        seed=seed,
    )


class _Progress:
    """Live progress bar on stderr: trials, best dev score, calls, cost."""

    def __init__(self, total: int, client: Any, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.client = client
        self.best: float | None = None
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("trials", total=total, status="")

    def _status(self, extra: str = "") -> str:
        s = self.client.stats
        best = f"best {self.best:.3f}" if self.best is not None else "best -"
        return f"{best} · calls {s.made} (+{s.cached} cached, {s.retried} retried) · ${s.cost_usd:.4f} {extra}"

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "chunk":
            self.progress.update(self.task, status=self._status(f"· trial {data['number']}: {data['evaluated']}/{data['of']}"))
        elif kind == "final":
            self.progress.update(self.task, status=self._status(f"· {data['what']}"))

    def on_trial(self, outcome: Any) -> None:
        if outcome.state == "complete" and (self.best is None or outcome.summary.score > self.best):
            self.best = outcome.summary.score
        self.progress.update(self.task, advance=1, status=self._status())


def _print_table(summary: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"migration {summary['name']}: test split ({summary['splits']['test']} examples)")
    for col in ("", "model", "prompt", "test score", "95% CI", "$ / example", "latency p50"):
        table.add_column(col)
    for role in ("legacy", "baseline", "winner"):
        row = summary.get(role)
        if not row:
            continue
        table.add_row(
            role,
            row["model"],
            f"{row['prompt_id']}, {row['demos']} demos",
            f"{row['test_score']:.3f}",
            f"[{row['test_ci'][0]:.3f}, {row['test_ci'][1]:.3f}]",
            f"{row['cost_usd_per_example']:.6f}",
            f"{row['latency_p50_s']:.2f}s",
        )
    console = Console()
    console.print(table)
    paired = summary.get("winner_vs_baseline")
    if paired:
        console.print(
            f"winner - baseline: {paired['mean_diff']:+.3f} (95% CI [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}], "
            f"p={paired['p_value']:.3g}; {paired['improved']} examples improved, {paired['regressed']} regressed)"
        )
    calls = summary["llm_calls"]
    console.print(
        f"trials {summary['trials']['total']} ({summary['trials']['complete']} complete, {summary['trials']['pruned']} pruned, "
        f"{summary['trials']['failed']} failed) · calls {calls['made']} made, {calls['cached']} cached, {calls['retried']} retried, "
        f"{calls['failed']} failed · ${summary['cost_usd']:.4f} · {summary['wall_s']:.0f}s"
    )
    if summary.get("legacy_note"):
        console.print(f"note: {summary['legacy_note']}")


def cmd_run(args: argparse.Namespace) -> int:
    from migrator.migration import default_out_paths, prepare, run_migration
    from migrator.spec import load_spec

    spec = load_spec(args.spec)
    prepared = prepare(spec)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = default_out_paths(out_dir)
    storage = spec.study if spec.study and "://" in spec.study else paths["storage"]
    study_name = spec.study if spec.study and "://" not in spec.study else f"{spec.name}-{spec.spec_hash()}"
    cache_path = None if args.no_cache else (args.cache or Path(paths["cache"]))
    client = _client(cache_path, calls=spec.budget.calls, usd=spec.budget.usd, space=spec.search_space, seed=spec.seed)
    from migrator.errors import TrackingError
    from migrator.outputs.tracking import MlflowTracker, NullTracker

    tracker: Any
    if args.no_tracking:
        tracker = NullTracker()
    else:
        tracker = MlflowTracker(
            spec.tracking.uri or paths["tracking"], spec.tracking.experiment, out_dir / "mlartifacts", on_failure=_tracking_failed
        )
    models = [t.model for t in spec.targets] + [spec.app.model]
    if spec.search_space.prompt.proposer is not None:
        models.append(spec.search_space.prompt.proposer.model)
    progress = _Progress(spec.budget.trials, client, enabled=not args.quiet)
    # MLflow opens its store in the background while local servers start and the search runs.
    tracker.start(prepared, study_name, {})
    try:
        with _model_servers(models, out_dir / "logs") as api_bases, progress.progress:
            result = run_migration(
                prepared,
                client,
                storage=storage,
                study_name=study_name,
                api_bases=api_bases,
                callbacks=[tracker.log_trial, progress.on_trial],
                on_progress=progress.on_event,
                on_candidates=tracker.log_candidates,
            )
        from migrator.outputs import summary_dict, winner_dict, write_outputs
        from migrator.outputs.report import write_report

        mlflow_info = {  # the run ids wait for the background worker to have opened the parent run
            "tracking_uri": getattr(tracker, "tracking_uri", None),
            "experiment_id": getattr(tracker, "experiment_id", None),
            "parent_run_id": getattr(tracker, "parent_run_id", None),
        }
        files = {"summary": out_dir / "summary.json", "report": out_dir / "report.html"}
        winner = winner_dict(result, out_dir)
        if winner is not None:
            files["winner"] = out_dir / "winner.yaml"
        summary = summary_dict(result, mlflow_info, files)
        write_outputs(out_dir, summary, winner)
        write_report(out_dir / "report.html", result, summary)
        if not args.quiet:
            _print_table(summary)
            if result.search.exhausted:
                print(f"the search ended after {len(result.search.trials)} trials: every config in the search space was tried")
            print(f"wrote {out_dir / 'summary.json'}, {out_dir / 'report.html'}" + (f", {out_dir / 'winner.yaml'}" if winner else ""))
        tracking_failed = False
        try:
            tracker.finish(result, files)
        except TrackingError as exc:
            print(f"migrator: error: {exc}; the run's own outputs in {out_dir} were written", file=sys.stderr)
            tracking_failed = True
    finally:
        # an interrupted or failed run still records the trials that finished
        tracker.close()
    if result.winner is None:
        if result.stopped_by:
            print(f"migrator: the {result.stopped_by} budget ran out before any winner was scored", file=sys.stderr)
            return EXIT_BUDGET
        print("migrator: no trial completed; see summary.json for what failed", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR if tracking_failed else EXIT_OK


def _tracking_failed(error: Exception) -> None:
    """Say at once that MLflow tracking stopped, rather than only at the end of a long search."""
    print(f"migrator: warning: {error}; the search goes on and its outputs will be written, then the run exits 1", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from migrator.migration import evaluate_lockfile, load_lockfile

    lock = load_lockfile(args.winner, args.dataset)
    cache = None if args.no_cache else (args.cache or args.winner.parent / "cache.db")
    from migrator.spec import SearchSpace

    client = _client(cache, calls=None, usd=None, space=SearchSpace(), seed=0)
    with _model_servers([lock.target.model], args.winner.parent / "logs") as api_bases:
        ev = evaluate_lockfile(lock, client, args.split, api_bases)
    print(
        f"{lock.target.model} · {lock.config.prompt_id}: {args.split} score {ev.test.score:.3f} "
        f"(95% CI [{ev.test_ci[0]:.3f}, {ev.test_ci[1]:.3f}], n={ev.test.n}, failed={ev.test.failed}) · "
        f"calls {client.stats.made} made, {client.stats.cached} cached"
    )
    if args.min_score is not None and ev.test.score < args.min_score:
        print(f"migrator: score {ev.test.score:.3f} is below --min-score {args.min_score}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _repo_file(*parts: str) -> Path:
    """A file shipped beside the package in the source tree (datasets, search spaces)."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise InputError(f"cannot find {'/'.join(parts)}; run from a clone of the migrator repository")


def cmd_demo(args: argparse.Namespace) -> int:
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

    summary = json.loads(summary_path.read_text())
    winner = summary["winner"]
    same = summary.get("winner_vs_same_target") or {}
    legacy_same = summary["baselines_by_target"].get(winner["model"]) or {}
    print()
    if legacy_same:
        print(
            f"On {winner['model']}, the legacy prompt scores {legacy_same['test_score']:.3f} on the test split; "
            f"the winner ({winner['prompt_id']}, {winner['demos']} demos) scores {winner['test_score']:.3f}: "
            f"{same.get('mean_diff', 0.0):+.3f} (95% CI [{same.get('ci', [0, 0])[0]:+.3f}, {same.get('ci', [0, 0])[1]:+.3f}], "
            f"p={same.get('p_value', 1.0):.3g}, n={summary['splits']['test']})."
        )
    out = args.out
    print(f"report:    {out / 'report.html'}")
    print(f"winner:    {out / 'winner.yaml'}")
    print(f"MLflow:    {summary['mlflow']['tracking_uri']}")
    print(f"dashboard: migrator ui --out {out}")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    out: Path = args.out
    if args.optuna:
        db = out / "study.db"
        if not db.is_file():
            raise InputError("no Optuna study here (expected study.db); run `migrator run` first", file=str(out))
        command = [sys.executable, "-m", "optuna_dashboard", f"sqlite:///{db.resolve()}", "--host", args.host, "--port", str(args.port)]
    else:
        db = out / "mlflow.db"
        if not db.is_file():
            raise InputError("no MLflow store here (expected mlflow.db); run `migrator run` first", file=str(out))
        command = [
            sys.executable, "-m", "mlflow", "ui",
            "--backend-store-uri", f"sqlite:///{db.resolve()}",
            "--host", args.host, "--port", str(args.port),
        ]
    print(f"serving {'the Optuna dashboard' if args.optuna else 'the MLflow UI'} on http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import tempfile

    import yaml

    from migrator.migration import load_lockfile
    from migrator.outputs import exporters, write_atomic

    source: Path = args.source
    if source.is_dir():
        lock_path = source / "winner.yaml"
        if not lock_path.is_file():
            raise InputError("no winner.yaml here; did the run finish?", file=str(source))
    elif source.is_file():
        lock_path = source
    else:
        if not args.tracking_uri:
            raise InputError(f"{source} is neither a run directory nor a file; to export an MLflow run id, pass --tracking-uri")
        from migrator.outputs.tracking import download_lockfile

        lock_path = download_lockfile(args.tracking_uri, str(source), Path(tempfile.mkdtemp(prefix="migrator-export-")))
    winner = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    if not isinstance(winner, dict) or "messages" not in winner:
        raise InputError("not a migrator winner lockfile (no 'messages')", file=str(lock_path))
    if args.format == "mlflow":
        from migrator.outputs.tracking import register_prompt

        uri = args.tracking_uri or f"sqlite:///{(lock_path.parent / 'mlflow.db').resolve()}"
        name, version = register_prompt(uri, winner, name=args.name, alias=args.alias)
        print(f"registered prompt {name!r} version {version} with alias {args.alias!r} in {uri}")
        print(f"load it with: mlflow.genai.load_prompt('prompts:/{name}@{args.alias}')")
        return EXIT_OK
    tests: list[dict[str, Any]] = []
    if args.format == "promptfoo":
        lock = load_lockfile(lock_path)
        tests = [
            {"id": ex.id, "inputs": dict(ex.inputs), "expected": ex.expected, "prompt": lock.prompt_for(ex)}
            for ex in lock.splits.test
        ]
    text = exporters.render(winner, args.format, tests)
    if args.output:
        write_atomic(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="migrator", description="Migrate an LLM app's prompt to new models by Bayesian search.")
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="search for the best config for the target models")
    run.add_argument("spec", type=Path, help="migration.yaml")
    run.add_argument("--out", type=Path, required=True, help="output directory (re-running resumes)")
    run.add_argument("--cache", type=Path, help="response cache file (default: OUT/cache.db)")
    run.add_argument("--no-cache", action="store_true", help="do not reuse or store replies")
    run.add_argument("--no-tracking", action="store_true", help="do not record in MLflow")
    run.add_argument("--quiet", action="store_true", help="no progress bar or table")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser("eval", help="re-score a winner lockfile (for CI gates)")
    ev.add_argument("winner", type=Path, help="winner.yaml")
    ev.add_argument("--split", default="test", choices=("train", "dev", "test"))
    ev.add_argument("--dataset", type=Path, help="score on this dataset instead of the one recorded")
    ev.add_argument("--min-score", type=float, help="exit 1 when the score is below this")
    ev.add_argument("--cache", type=Path)
    ev.add_argument("--no-cache", action="store_true")
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="run the offline demo: a real migration on two local models")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: runs/demo)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    ex = sub.add_parser("export", help="export the winner: lockfile, Python snippet, promptfoo config, MLflow prompt registry")
    ex.add_argument("source", type=Path, help="a run directory, a winner.yaml, or an MLflow parent run id (with --tracking-uri)")
    ex.add_argument("--format", choices=("yaml", "json", "python", "promptfoo", "mlflow"), default="yaml")
    ex.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    ex.add_argument("--tracking-uri", help="MLflow tracking URI (default: the run directory's mlflow.db)")
    ex.add_argument("--name", help="prompt name in the MLflow registry (default: <migration>-prompt)")
    ex.add_argument("--alias", default="production", help="registry alias to point at the new version")
    ex.set_defaults(func=cmd_export)

    ui = sub.add_parser("ui", help="open the trial dashboard (MLflow UI, or optuna-dashboard) on a run")
    ui.add_argument("--out", type=Path, required=True, help="the run's output directory")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--optuna", action="store_true", help="serve optuna-dashboard on the study instead")
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except InputError as exc:
        print(f"migrator: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BudgetExhausted as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    except KeyboardInterrupt:
        print("migrator: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MigratorError as exc:
        print(f"migrator: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
