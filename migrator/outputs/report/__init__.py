"""The HTML report: one self-contained page (DIR/report.html) a reviewer reads after a migration.

``render_report`` turns a ``MigrationResult`` and its summary dict into the page;
``write_report`` writes it atomically (the CLI's ``migrate`` does, next to summary.json).
Inside: ``_report`` gathers the view and renders ``templates/report.html.j2`` with Jinja2
autoescape on; ``_sections`` and ``_diff`` compute the rows each section shows (verdict,
per-model, examples, trials; the winner's prompt, params and demos against the legacy
ones); ``_charts`` draws the PNGs with matplotlib and optuna, imported only when a report
is rendered, so importing this package stays cheap; ``_format`` spells numbers.
"""

from __future__ import annotations

from migrator.outputs.report._report import render_report, write_report

__all__ = [
    "render_report",
    "write_report",
]
