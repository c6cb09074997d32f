"""DIR/report.html: one self-contained page a reviewer reads after a migration."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.export import write_atomic

if TYPE_CHECKING:
    from migrator.pipeline import MigrationResult

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.good{color:#0a7a2f}.bad{color:#b00020}pre{white-space:pre-wrap;background:#f7f7f7;padding:8px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _row(role: str, row: Mapping[str, Any] | None) -> str:
    if not row:
        return ""
    return (
        f"<tr><th>{_e(role)}</th><td>{_e(row['model'])}</td><td>{_e(row['prompt_id'])}, {row['demos']} demos</td>"
        f"<td>{row['test_score']:.3f}</td><td>[{row['test_ci'][0]:.3f}, {row['test_ci'][1]:.3f}]</td>"
        f"<td>{row['cost_usd_per_example'] * 1000:.4f}</td><td>{row['latency_p50_s']:.2f}s</td></tr>"
    )


def render_report(result: MigrationResult, summary: Mapping[str, Any]) -> str:
    """The report as one HTML string (no external resources)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>migrator: {_e(summary['name'])}</title>"]
    parts.append(f"<style>{_CSS}</style></head><body><h1>Migration: {_e(summary['name'])}</h1>")
    parts.append(f"<p>Legacy model <b>{_e(summary['legacy_model'])}</b> → targets {_e(', '.join(summary['targets']))}</p>")
    parts.append("<h2 id='verdict'>Verdict (test split)</h2><table><tr><th></th><th>model</th><th>prompt</th>")
    parts.append("<th>test score</th><th>95% CI</th><th>$ per 1k examples</th><th>latency p50</th></tr>")
    for role in ("legacy", "baseline", "winner"):
        parts.append(_row(role, summary.get(role)))
    parts.append("</table>")
    paired = summary.get("winner_vs_baseline")
    if paired:
        cls = "good" if paired["ci"][0] > 0 else ("bad" if paired["ci"][1] < 0 else "")
        parts.append(
            f"<p class='{cls}'>Winner − baseline: {paired['mean_diff']:+.3f} (95% CI [{paired['ci'][0]:+.3f}, "
            f"{paired['ci'][1]:+.3f}], p = {paired['p_value']:.3g}); {paired['improved']} examples improved, "
            f"{paired['regressed']} regressed.</p>"
        )
    if summary.get("legacy_note"):
        parts.append(f"<p><i>{_e(summary['legacy_note'])}</i></p>")
    parts.append("<h2>Trials</h2><table><tr><th>#</th><th>config</th><th>state</th><th>dev score</th><th>$ / example</th><th>latency p50</th><th>note</th></tr>")
    for o in sorted(result.search.trials, key=lambda t: t.number):
        parts.append(
            f"<tr><td>{o.number}</td><td>{_e(o.config.label())}</td><td>{o.state}</td><td>{o.summary.score:.3f}</td>"
            f"<td>{o.summary.cost_usd_per_example:.6f}</td><td>{o.summary.latency_p50_s:.2f}s</td><td>{_e(o.note)}</td></tr>"
        )
    parts.append("</table><h2>Prompt candidates</h2>")
    for cand in summary["candidates"]:
        best = cand["best_dev_score"]
        parts.append(f"<h3>{_e(cand['prompt_id'])} (best dev {best if best is None else f'{best:.3f}'}, {cand['trials']} trials)</h3>")
        parts.append(f"<pre>{_e(cand['text'])}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(path: Path, result: MigrationResult, summary: Mapping[str, Any]) -> None:
    write_atomic(path, render_report(result, summary))
