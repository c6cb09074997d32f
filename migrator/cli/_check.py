"""``migrator check``: each app of a fleet, its legacy model, and when that model retires.

Exit 0 when no app's model is retired or retiring, 1 when one is (so a nightly job or CI
alerts), 2 on bad input: a bad spec is reported on its app's row and on stderr, and the
other apps are still checked. "Today" is the date, or ``$MIGRATOR_TODAY`` (YYYY-MM-DD).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.cli._commands import EXIT_ERROR, EXIT_INPUT, EXIT_OK
from migrator.cli._terminal import log
from migrator.errors import InputError

if TYPE_CHECKING:
    from migrator.fleet import App, Fleet
    from migrator.retirement import Deprecation

__all__ = ["cmd_check"]

# the table's order: what needs doing first
_RANK = {"retired": 0, "retiring": 1, "unknown": 2, "ok": 3, "error": 4}
_STYLE = {"retired": "bold red", "retiring": "yellow", "unknown": "dim", "ok": "green", "error": "bold red"}


def cmd_check(args: argparse.Namespace) -> int:
    """Print one row per app (a table, or JSON with ``--json``); the exit code says whether any model is retiring."""
    from migrator import retirement
    from migrator.fleet import discover

    within = retirement.WITHIN_DAYS if args.within is None else args.within
    if within < 0:
        raise InputError(f"must be a number of days >= 0, got {within}", where="--within")
    today = retirement.today()
    fleet = discover(args.paths)
    chosen = retirement.load_deprecations(args.deprecations) if args.deprecations is not None else None
    files: dict[Path, Mapping[str, Deprecation]] = {}
    rows = sorted((_row(app, fleet, args.deprecations, chosen, files, today, within) for app in fleet.apps), key=_order)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        _print_table(rows, today, within)
    for row in rows:
        if row["status"] == "error":
            log.error("error: %s", row["error"])
    if any(row["status"] == "error" for row in rows):
        return EXIT_INPUT
    return EXIT_ERROR if any(row["status"] in ("retired", "retiring") for row in rows) else EXIT_OK


def _row(
    app: App,
    fleet: Fleet,
    deprecations: Path | None,
    chosen: Mapping[str, Deprecation] | None,
    files: dict[Path, Mapping[str, Deprecation]],
    today: date,
    within: int,
) -> dict[str, Any]:
    """One app's row; ``files`` keeps each deprecations file read, as apps share them."""
    from migrator import retirement
    from migrator.spec import load_spec

    row: dict[str, Any] = {"app": app.name, "spec": str(app.spec)}
    try:
        spec = load_spec(app.spec, defaults=fleet.defaults, defaults_file=fleet.defaults_file,
                         deprecations=deprecations, today=today, unreachable="keep")
        overrides = chosen
        if overrides is None:
            path = spec.deprecations_file()
            if path is not None and path not in files:
                files[path] = retirement.load_deprecations(path)
            overrides = files[path] if path is not None else {}
        found = retirement.retirement_of(spec.app.model, overrides)
    except InputError as exc:
        return {**row, "model": None, "deprecation_date": None, "days_left": None, "successor": None,
                "status": "error", "source": None, "notice": None, "error": str(exc)}
    return {**row, **found.as_row(today, within), "error": None}


def _order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    days = row["days_left"]
    return _RANK[row["status"]], days if days is not None else 0, row["app"]


def _print_table(rows: Sequence[Mapping[str, Any]], today: date, within: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"retirements on {today.isoformat()} (retiring: within {within} days)")
    for name in ("app", "legacy model", "retires", "days left", "successor", "status", "date from"):
        # a model id is one word: folded onto a second line rather than cut short
        table.add_column(name, overflow="fold", justify="right" if name == "days left" else "left")
    for row in rows:
        status = row["status"]
        table.add_row(
            row["app"],
            row["model"] or "-",
            row["deprecation_date"] or "-",
            "-" if row["days_left"] is None else str(row["days_left"]),
            row["successor"] or "-",
            f"[{_STYLE[status]}]{status}[/]",
            row["source"] or "-",
        )
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # a CI log or a pipe: rich's 80 columns would fold every model id
        console = Console(width=160)
    console.print(table)
