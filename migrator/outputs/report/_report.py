"""DIR/report.html: one self-contained page a reviewer reads after a migration.

The page opens offline: charts are PNGs inlined as base64, styles are inline, there
are no scripts and no external links. ``render_report`` gathers the view (lines, rows
and charts, as plain text) and renders ``templates/report.html.j2`` with autoescape on,
so every piece of text that came from the dataset, the spec or a model is escaped
without asking. Sections carry stable ids (``verdict``, ``pareto``, ``history``,
``importance``, ``per-model``, ``diff``, ``examples``, ``trials``, ``candidates``) so
tests and browsers can find them.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe

from migrator.outputs._files import write_atomic
from migrator.outputs.report._charts import complete_trials, pareto_chart, per_model_chart, study_plots
from migrator.outputs.report._diff import winner_diff
from migrator.outputs.report._format import origin, score, seconds, truncate, usd
from migrator.outputs.report._sections import changed_examples, header, model_rows, trial_rows, verdict
from migrator.redaction import redact

if TYPE_CHECKING:
    from migrator.migration import MigrationResult

__all__ = ["render_report", "write_report"]


def _escaped(value: object) -> object:
    """What the template prints for ``{{ value }}``: markup as it is, anything else escaped.

    html.escape spells a quote ``&#x27;`` where markupsafe (autoescape's default) writes
    ``&#39;``; the page keeps the spelling it always had. Jinja's ``|e`` and ``|join``
    escape the markupsafe way, so the templates use neither.
    """
    if isinstance(value, markupsafe.Markup):
        return value
    return markupsafe.Markup(html.escape(str(value), quote=True))


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates, loaded once: autoescape on, undefined names an error."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("migrator.outputs.report", "templates"),
        autoescape=True,
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(score=score, usd=usd, seconds=seconds, origin=origin, truncate_text=truncate)
    return env


def _view(result: MigrationResult, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows; the charts are drawn here, in page order."""
    trials = complete_trials(result)
    pareto_png = pareto_chart(result, trials) if trials else ""
    history, importance = study_plots(result)
    return {
        "header": header(summary),
        "verdict": verdict(summary),
        "pareto_png": pareto_png,
        "pareto": result.pareto,
        "history": history,
        "importance": importance,
        "per_model_png": per_model_chart(result, trials) if trials else "",
        "models": model_rows(result, summary),
        "candidates": summary.get("candidates") or [],
        "rejected": summary.get("rejected_candidates") or [],
        "winner": winner_diff(result),
        "examples": changed_examples(result),
        "study_name": result.search.study_name,
        "storage": redact(result.search.storage),
        "trials": trial_rows(result),
    }


def render_report(result: MigrationResult, summary: Mapping[str, Any]) -> str:
    """The report as one HTML string with no external resources.

    Args:
        result: the migration, for per-trial and per-example detail and the charts.
        summary: what summary.json says, for the verdict's numbers.
    """
    return _environment().get_template("report.html.j2").render(_view(result, summary))


def write_report(path: Path, result: MigrationResult, summary: Mapping[str, Any]) -> None:
    """Write the report to ``path`` atomically."""
    write_atomic(path, render_report(result, summary))
