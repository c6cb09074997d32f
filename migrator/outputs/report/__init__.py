"""TODO face of migrator.outputs.report."""

from __future__ import annotations

from migrator.outputs.report._report import render_report, write_report

__all__ = [
    "render_report",
    "write_report",
]
