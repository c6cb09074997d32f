"""What the commands show: the live progress bar of a run, and the results tables and lines after it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Progress", "print_demo_result", "print_run_result", "print_table"]


class Progress:
    """Live progress bar on stderr: trials, best dev score, calls, cost.

    ``progress`` is the rich display to enter while the search runs; ``on_trial`` and
    ``on_event`` are the search's callbacks.
    """

    def __init__(self, total: int, client: Any, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.client = client
        self.best: float | None = None
        self.progress = RichProgress(
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
        elif kind == "notice":  # a line that stays, printed above the bar
            self.progress.console.print(data["what"], markup=False, highlight=False)

    def on_trial(self, outcome: Any) -> None:
        if outcome.state == "complete" and (self.best is None or outcome.summary.score > self.best):
            self.best = outcome.summary.score
        self.progress.update(self.task, advance=1, status=self._status())


def print_run_result(summary: Mapping[str, Any], *, exhausted_after: int | None, out_dir: Path, has_winner: bool) -> None:
    """After ``migrator run``: the table, how the search ended if it tried every config, the files written."""
    print_table(summary)
    if exhausted_after is not None:
        print(f"the search ended after {exhausted_after} trials: every config in the search space was tried")
    print(f"wrote {out_dir / 'summary.json'}, {out_dir / 'report.html'}" + (f", {out_dir / 'winner.yaml'}" if has_winner else ""))


def print_table(summary: Mapping[str, Any]) -> None:
    """The test split's scores of legacy, baseline and winner, the paired test, and the run's totals."""
    from rich.console import Console

    console = Console()
    console.print(_scores_table(summary))
    paired = summary.get("winner_vs_baseline")
    if paired:
        console.print(
            f"winner - baseline: {paired['mean_diff']:+.3f} (95% CI [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}], "
            f"p={paired['p_value']:.3g}; {paired['improved']} examples improved, {paired['regressed']} regressed)"
        )
    calls, trials = summary["llm_calls"], summary["trials"]
    console.print(
        f"trials {trials['total']} ({trials['complete']} complete, {trials['pruned']} pruned, "
        f"{trials['failed']} failed) · calls {calls['made']} made, {calls['cached']} cached, {calls['retried']} retried, "
        f"{calls['failed']} failed · ${summary['cost_usd']:.4f} · {summary['wall_s']:.0f}s"
    )
    for note in ("legacy_note", "space_note", "sampling_note"):
        if summary.get(note):
            console.print(f"note: {summary[note]}")
    judge = summary.get("judge") or {}
    agree = judge.get("agreement_with_exact")
    if agree:
        kappa = f", kappa {agree['kappa']:.2f}" if agree["kappa"] is not None else ""
        console.print(
            f"judge {judge['model']}: its pass/fail matches an exact comparison with the expected reply on "
            f"{agree['agreement']:.0%} of {agree['n']} test replies{kappa}; {agree['exact_matches']} replies were exact, "
            f"{agree['exact_but_failed']} of them failed by the judge"
        )


def _scores_table(summary: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"migration {summary['name']}: test split ({summary['splits']['test']} examples)")
    for col in ("", "model", "prompt", "test score", "95% CI", "$ / example", "latency p50"):
        table.add_column(col)
    for role in ("legacy", "baseline", "winner"):
        row = summary.get(role)
        if not row:
            continue
        spread = (row.get("samples") or {}).get("test")
        table.add_row(
            role,
            row["model"],
            f"{row['prompt_id']}, {row['demos']} demos",
            f"{row['test_score']:.3f}" + (f" ± {spread['spread']:.3f} ({len(spread['scores'])} samples)" if spread else ""),
            f"[{row['test_ci'][0]:.3f}, {row['test_ci'][1]:.3f}]",
            f"{row['cost_usd_per_example']:.6f}",
            f"{row['latency_p50_s']:.2f}s",
        )
    return table


def print_demo_result(summary: Mapping[str, Any], out: Path) -> None:
    """After ``migrator demo``: the winner against the legacy prompt on the same model, and where to look."""
    winner = summary["winner"]
    same = summary.get("winner_vs_same_target") or {}
    legacy_same = summary["baselines_by_target"].get(winner["model"]) or {}
    print()
    if legacy_same:
        ci = same.get("ci", [0, 0])
        print(
            f"On {winner['model']}, the legacy prompt scores {legacy_same['test_score']:.3f} on the test split; "
            f"the winner ({winner['prompt_id']}, {winner['demos']} demos) scores {winner['test_score']:.3f}: "
            f"{same.get('mean_diff', 0.0):+.3f} (95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}], "
            f"p={same.get('p_value', 1.0):.3g}, n={summary['splits']['test']})."
        )
    print(f"report:    {out / 'report.html'}")
    print(f"winner:    {out / 'winner.yaml'}")
    print(f"MLflow:    {summary['mlflow']['tracking_uri']}")
    print(f"dashboard: migrator ui --out {out}")
