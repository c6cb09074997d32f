"""What a fleet run leaves: ``fleet.json`` (one row per app) and ``fleet.html`` (one sortable table).

Both are rebuilt from what is stored: the plan a fleet run writes first (``fleet-plan.json``:
every app, its spec, its retirement, or why its spec was refused) and each app's own
``summary.json``. ``migrator fleet report`` rebuilds them without calling anything.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from migrator.outputs import write_atomic

__all__ = ["PLAN_FILE", "fleet_rows", "read_plan", "write_fleet_outputs", "write_plan"]

PLAN_FILE = "fleet-plan.json"
_EVALUATED = ("model", "prompt_id", "label", "test_score", "test_ci", "test_n", "cost_usd_per_example")


def write_plan(out_dir: Path, apps: Sequence[Mapping[str, Any]]) -> None:
    """The fleet's apps as the run found them (name, spec, legacy model, retirement, or the spec's error)."""
    write_atomic(out_dir / PLAN_FILE, json.dumps({"apps": list(apps)}, indent=2, ensure_ascii=False) + "\n")


def read_plan(out_dir: Path) -> list[dict[str, Any]]:
    from migrator.errors import InputError

    path = out_dir / PLAN_FILE
    if not path.is_file():
        raise InputError(f"no {PLAN_FILE} here; run `migrator fleet run` first", file=str(out_dir))
    apps: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["apps"]
    return apps


def _evaluated(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if not entry else {k: entry.get(k) for k in _EVALUATED}


def _per_1k(entry: Mapping[str, Any] | None) -> float | None:
    cost = entry.get("cost_usd_per_example") if entry else None
    return None if cost is None else round(float(cost) * 1000, 6)


def _beats_naive(summary: Mapping[str, Any]) -> bool | None:
    """Whether the winner is better than the naive migration on test (paired test, p < 0.05)."""
    paired = summary.get("winner_vs_baseline")
    if not summary.get("winner") or not paired:
        return None
    return bool(paired.get("mean_diff", 0) > 0 and paired.get("p_value", 1) < 0.05)


def fleet_rows(out_dir: Path, plan: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per app of the plan, with its results where its summary.json says them."""
    rows = []
    for app in plan:
        row: dict[str, Any] = dict(app)
        summary_path = out_dir / app["app"] / "summary.json"
        if app.get("status") != "error" and summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            winner, baseline, legacy = summary.get("winner"), summary.get("baseline"), summary.get("legacy")
            row.update(
                status="migrated" if winner else "no winner",
                winner=_evaluated(winner),
                baseline=_evaluated(baseline),
                legacy=_evaluated(legacy),
                legacy_note=summary.get("legacy_note"),
                beats_naive=_beats_naive(summary),
                cost_per_1k_before=_per_1k(legacy),
                cost_per_1k_after=_per_1k(winner),
                calls=(summary.get("budget") or {}).get("spent", {}).get("calls"),
                cost_usd=summary.get("cost_usd"),
                report=f"{app['app']}/report.html",
            )
        elif app.get("status") != "error":
            row["status"] = app.get("status") or "not run"
        rows.append(row)
    return rows


def write_fleet_outputs(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> tuple[Path, Path]:
    """fleet.json and fleet.html; the html lists first the apps whose migration did not beat the naive one."""
    json_path, html_path = out_dir / "fleet.json", out_dir / "fleet.html"
    write_atomic(json_path, json.dumps({"apps": list(rows)}, indent=2, ensure_ascii=False) + "\n")
    write_atomic(html_path, _html(rows))
    return json_path, html_path


def _order(row: Mapping[str, Any]) -> tuple[int, str]:
    # needs a look first: no winner, error, not beating the naive migration; then the rest
    rank = {"error": 0, "no winner": 1, "not run": 2}.get(str(row.get("status")), 4)
    if rank == 4 and row.get("beats_naive") is False:
        rank = 3
    return rank, str(row["app"])


def _score(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("test_score") is None:
        return ""
    low, high = entry.get("test_ci") or (None, None)
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None else ""
    return f"{entry['test_score']:.3f}{ci}"


def _cell(value: Any, sort: Any = None) -> str:
    key = "" if sort is None else f' data-sort="{html.escape(str(sort))}"'
    return f"<td{key}>{html.escape('' if value is None else str(value))}</td>"


def _html(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("app", "status", "legacy model", "retires", "days left", "winner", "test (95% CI)", "naive", "legacy",
            "beats naive (p<0.05)", "$/1k before", "$/1k after", "report")
    body = []
    for row in sorted(rows, key=_order):
        winner, baseline = row.get("winner") or {}, row.get("baseline") or {}
        flagged = row.get("beats_naive") is False or row.get("status") in ("error", "no winner")
        report = row.get("report")
        link = f'<td><a href="{html.escape(report)}">report</a></td>' if report else _cell(row.get("error"))
        body.append(
            f'<tr class="{"flag" if flagged else ""}">'
            + _cell(row["app"])
            + _cell(row.get("status"))
            + _cell(row.get("model"))
            + _cell(row.get("deprecation_date"))
            + _cell(row.get("days_left"), row.get("days_left") if row.get("days_left") is not None else 10**9)
            + _cell(winner.get("label"))
            + _cell(_score(winner), winner.get("test_score", -1))
            + _cell(_score(baseline), baseline.get("test_score", -1))
            + _cell(_score(row.get("legacy")), (row.get("legacy") or {}).get("test_score", -1))
            + _cell({True: "yes", False: "NO", None: ""}[row.get("beats_naive")])
            + _cell(row.get("cost_per_1k_before"), row.get("cost_per_1k_before") or 0)
            + _cell(row.get("cost_per_1k_after"), row.get("cost_per_1k_after") or 0)
            + link
            + "</tr>"
        )
    header = "".join(f'<th onclick="sortBy({i})">{html.escape(h)}</th>' for i, h in enumerate(head))
    return _PAGE.replace("{header}", header).replace("{rows}", "\n".join(body)).replace("{count}", str(len(rows)))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>migrator fleet</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{cursor:pointer;background:#f4f4f4}
tr.flag td{background:#fff3f0}
</style></head><body>
<h1>Fleet migration: {count} apps</h1>
<p>Rows shaded first need a look: no winner, a refused spec, or a winner that does not beat the naive
migration (legacy prompt on the target) on the test split. Click a column to sort.</p>
<table id="fleet"><thead><tr>{header}</tr></thead><tbody>
{rows}
</tbody></table>
<script>
function sortBy(col){const t=document.getElementById('fleet').tBodies[0];const rows=[...t.rows];
const key=r=>{const c=r.cells[col];const v=c.dataset.sort??c.textContent;const n=parseFloat(v);return isNaN(n)?v:n};
const asc=t.dataset.col==col&&t.dataset.dir=='asc'?false:true;t.dataset.col=col;t.dataset.dir=asc?'asc':'desc';
rows.sort((a,b)=>{const x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1)});rows.forEach(r=>t.appendChild(r));}
</script></body></html>
"""
