"""The ``migrator`` command line: ``main`` is its entry point (also ``python -m migrator``
and ``python -m migrator.cli``).

Exit codes: 0 ok, 1 anything else (including MLflow tracking failing: the run's own
outputs are still written), 2 bad input (one line naming file and field), 3 a budget
ran out before any winner, 130 interrupted (re-run to resume).

- ``_app``: ``build_parser`` and ``main``, which maps migrator's errors to exit codes.
- ``_commands``: one function per command (run, eval, demo, ui, export); thin, the work
  is in :mod:`migrator.migration` and :mod:`migrator.outputs`.
- ``_check``: ``migrator check``, each app's legacy model and when it retires (exit 1 if
  one is retired or retiring).
- ``_progress``: the live progress bar of a run and the tables printed after it.
- ``_terminal``: migrator's messages (the ``migrator`` logger) on stderr, the libraries'
  loggers turned down, while a command runs.

The top of the layering: nothing in migrator imports it.
"""

from __future__ import annotations

from migrator.cli._app import build_parser, main

__all__ = [
    "build_parser",
    "main",
]
