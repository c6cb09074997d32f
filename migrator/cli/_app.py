"""The ``migrator`` command: its arguments, and the exit code each kind of failure gives."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.cli._check import cmd_check
from migrator.cli._commands import (
    EXIT_BUDGET,
    EXIT_ERROR,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    cmd_demo,
    cmd_eval,
    cmd_export,
    cmd_run,
    cmd_ui,
)
from migrator.cli._terminal import log, terminal
from migrator.cli._workers import cmd_worker
from migrator.errors import BudgetExhausted, InputError, MigratorError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``argv`` defaults to the process's arguments); returns its exit code."""
    args = build_parser().parse_args(argv)
    with terminal():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command's exit code; migrator's errors become one line on stderr and their exit code."""
    try:
        code: int = args.func(args)
        return code
    except InputError as exc:
        log.error("error: %s", exc)
        return EXIT_INPUT
    except BudgetExhausted as exc:
        log.error("%s", exc)
        return EXIT_BUDGET
    except KeyboardInterrupt:
        log.warning("interrupted; re-run the same command to resume")
        return EXIT_INTERRUPTED
    except MigratorError as exc:
        log.error("error: %s", exc)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets ``func``, the command to run."""
    parser = argparse.ArgumentParser(prog="migrator", description="Migrate an LLM app's prompt to new models by Bayesian search.")
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="search for the best config for the target models")
    run.add_argument("spec", type=Path, help="migration.yaml")
    run.add_argument("--out", type=Path, help="output directory (re-running resumes); required unless --dry-run")
    run.add_argument("--dry-run", action="store_true",
                     help="check the spec and print the plan (candidates, search space, budget, estimated calls and USD); "
                     "no call, no file")
    _shared_arguments(run, cache_default="OUT/cache.db, or the study's PostgreSQL database")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="processes running trials: this one and N-1 `migrator worker` processes it starts")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="join a migration's study (from any machine) and run its trials")
    worker.add_argument("spec", type=Path, help="the same migration.yaml as the run's, or a fleet's folder (every app in turn)")
    worker.add_argument("--out", type=Path, help="where local model servers log (default: ./.migrator-worker)")
    _shared_arguments(worker, cache_default="cache.db beside a SQLite study, or the study's PostgreSQL database")
    worker.add_argument("--wait", type=float, default=600.0, metavar="S",
                        help="seconds to wait for `migrator run` to create the study (default: 600)")
    worker.add_argument("--api-base", action="append", metavar="MODEL=URL",
                        help="call a local model at this address instead of starting its server")
    worker.add_argument("--fleet", type=Path, metavar="ROOT",
                        help="the spec is an app of the fleet at ROOT: its fleet.yaml defaults apply")
    worker.set_defaults(func=cmd_worker)

    check = sub.add_parser("check", help="list each app's legacy model and its retirement date; exit 1 if one is retiring",
                           description="One row per app: legacy model, retirement date, days left, successor, status "
                           "(retired, retiring, ok, unknown) and where the date came from (litellm's map or a "
                           "deprecations file). Exit 0 when no app is retired or retiring, 1 when one is, 2 on bad "
                           "input. MIGRATOR_TODAY=YYYY-MM-DD fixes the day, for reproducible CI runs.")
    check.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                       help="a folder of apps (each with a migration.yaml; its fleet.yaml gives defaults), or spec files")
    check.add_argument("--within", type=int, metavar="DAYS",
                       help="a model retiring within this many days is 'retiring' (default: 90)")
    check.add_argument("--deprecations", type=Path, metavar="FILE",
                       help="retirement dates and successors that win over litellm's (default: the deprecations: of fleet.yaml or the spec)")
    check.add_argument("--json", action="store_true",
                       help="print a JSON list, one object per app, instead of the table")
    check.set_defaults(func=cmd_check)

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

    _init_parser(sub)

    ui = sub.add_parser("ui", help="open the trial dashboard (MLflow UI, or optuna-dashboard) on a run")
    ui.add_argument("--out", type=Path, help="the run's output directory")
    ui.add_argument("--tracking-uri", help="an MLflow server (http://...) or store (postgresql+psycopg://...) instead of --out")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--optuna", action="store_true", help="serve optuna-dashboard on the study instead")
    ui.add_argument("--open", action="store_true", help="open the page in a browser")
    ui.set_defaults(func=cmd_ui)
    _fleet_parsers(sub)
    return parser


def _init_parser(sub: Any) -> None:
    """``migrator init``: the ways in for a team with no spec."""
    from migrator.cli._init import cmd_init

    init = sub.add_parser(
        "init",
        help="draft a migration.yaml from what the app has: a chat log, an MLflow prompt, or a prompt file and a dataset",
        description="Writes a commented migration.yaml (and prompt.yaml and the dataset where they are new) to --out, "
        "checked as `migrator run` reads it; nothing is written when the check fails (exit 2).",
    )
    init.add_argument("--from", dest="source", nargs=2, metavar=("KIND", "SOURCE"),
                      help="chat-log FILE.jsonl (OpenAI chat format, one conversation per line); "
                      "mlflow prompts:/NAME/VERSION (with --data; or prompts:/NAME@ALIAS); "
                      "promptfoo promptfooconfig.yaml (its first prompt and provider, its tests and their assertions)")
    init.add_argument("--prompt", type=Path, help="the plain way in: the app's prompt (prompt.yaml, JSON messages or text)")
    init.add_argument("--data", type=Path, help="the plain way in: the golden dataset (JSONL, CSV or Parquet)")
    init.add_argument("--model", help="the legacy model (litellm id); a chat log's own 'model' field otherwise")
    init.add_argument("--expected", metavar="FIELD", help="the dataset's field with the expected output (default: guessed)")
    init.add_argument("--target", action="append", metavar="MODEL", help="a candidate model (repeatable); with "
                      "targets: auto, the legacy model's successor comes first")
    init.add_argument("--tracking-uri", metavar="URL", help="--from mlflow: the MLflow store or server (default: $MLFLOW_TRACKING_URI)")
    init.add_argument("--name", help="the migration's name (default: from the source)")
    init.add_argument("--out", type=Path, required=True, help="the app's folder: migration.yaml and its files go here")
    init.add_argument("--force", action="store_true", help="replace a migration.yaml already in --out")
    init.set_defaults(func=cmd_init)


def _fleet_parsers(sub: Any) -> None:
    """``migrator fleet run | report | export``."""
    from migrator.cli._fleet import cmd_fleet_export, cmd_fleet_report, cmd_fleet_run

    fleet = sub.add_parser("fleet", help="migrate every app of a folder tree (each folder with a migration.yaml)")
    commands = fleet.add_subparsers(dest="fleet_command", required=True)
    run = commands.add_parser("run", help="migrate every selected app; re-running resumes every app")
    run.add_argument("paths", type=Path, nargs="+", help="the fleet's root folder (with an optional fleet.yaml), or app folders")
    run.add_argument("--out", type=Path, required=True, help="output directory: DIR/<app>/, DIR/fleet.json, DIR/fleet.html")
    run.add_argument("--only", choices=("retiring",), help="only the apps whose legacy model is retired or retiring")
    run.add_argument("--within", type=int, default=90, metavar="DAYS", help="what 'retiring' means (default: 90 days)")
    run.add_argument("--deprecations", type=Path, help="retirement dates that override litellm's (default: fleet.yaml's)")
    run.add_argument("--workers", type=int, default=1, metavar="N", help="processes per app's study (see `run --workers`)")
    _shared_arguments(run, cache_default="OUT/cache.db for every app, or the study's PostgreSQL database")
    run.set_defaults(func=cmd_fleet_run)
    report = commands.add_parser("report", help="rebuild fleet.json and fleet.html from what a fleet run stored")
    report.add_argument("out", type=Path, help="the fleet run's output directory")
    report.set_defaults(func=cmd_fleet_report)
    export = commands.add_parser("export", help="write each app's winner.yaml next to its spec")
    export.add_argument("out", type=Path, help="the fleet run's output directory")
    export.add_argument("--to", type=Path, help="the fleet's root (default: each app's spec folder as recorded)")
    export.set_defaults(func=cmd_fleet_export)


def _shared_arguments(parser: argparse.ArgumentParser, cache_default: str) -> None:
    """The arguments ``run`` and ``worker`` share: where the study, the replies and MLflow live.

    The three locations may come from the environment instead (``MIGRATOR_STORAGE``,
    ``MIGRATOR_TRACKING_URI``, ``MIGRATOR_CACHE``): a URL with a password then stays out
    of the process list, and it is how ``run --workers`` hands them to its workers.
    """
    parser.add_argument("--storage", metavar="URL", default=os.environ.get("MIGRATOR_STORAGE") or None,
                        help="the study's database: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
                        "(default: $MIGRATOR_STORAGE, else OUT/study.db)")
    parser.add_argument("--tracking-uri", metavar="URL", default=os.environ.get("MIGRATOR_TRACKING_URI") or None,
                        help="MLflow: http://HOST:PORT or a store URI (default: $MIGRATOR_TRACKING_URI, else OUT/mlflow.db)")
    parser.add_argument("--cache", default=os.environ.get("MIGRATOR_CACHE") or None,
                        help=f"response cache: a file or a PostgreSQL URL (default: $MIGRATOR_CACHE, else {cache_default})")
    parser.add_argument("--no-cache", action="store_true", help="do not reuse or store replies")
    parser.add_argument("--no-tracking", action="store_true", help="do not record in MLflow")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
