"""The lines and table rows of the report's sections, as plain text for the template.

The header and the verdict read ``summary`` (the numbers summary.json holds, so page and
file agree); the per-model, example and trial tables read per-trial and per-example
detail from the ``MigrationResult``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.outputs.report._format import ci, input_cells, score, seconds, truncate, usd, value

if TYPE_CHECKING:
    from migrator.dataset import Example
    from migrator.evaluate import ExampleResult
    from migrator.migration import MigrationResult

__all__ = [
    "MAX_EXAMPLES",
    "ExampleChanges",
    "ExampleRow",
    "ExampleTable",
    "Header",
    "ModelRow",
    "Paired",
    "Reply",
    "TrialRow",
    "Verdict",
    "VerdictRow",
    "changed_examples",
    "header",
    "model_rows",
    "trial_rows",
    "verdict",
]

MAX_EXAMPLES = 20
_ROLES = ("legacy", "baseline", "winner")


@dataclass(frozen=True)
class Header:
    """The title and the two lines under it."""

    name: str
    legacy_model: str
    targets: str
    metric: str
    splits: str
    run: str


def _run_line(summary: Mapping[str, Any]) -> str:
    """Trials, budget, LLM calls, spend and wall time of the run, in one line."""
    counts = summary.get("trials") or {}
    calls = summary.get("llm_calls") or {}
    stopped = f" · stopped by the {summary['stopped_by']} budget" if summary.get("stopped_by") else ""
    if summary.get("space_exhausted"):
        stopped += " · ended early: every config in the search space was tried"
    return (
        f"{counts.get('total', 0)} trials ({counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
        f"{counts.get('failed', 0)} failed){stopped} · {calls.get('made', 0)} LLM calls ({calls.get('cached', 0)} cached, "
        f"{calls.get('failed', 0)} failed) · {usd(summary.get('cost_usd'))} spent · {summary.get('wall_s', 0):.0f} s"
    )


def header(summary: Mapping[str, Any]) -> Header:
    splits = summary.get("splits") or {}
    return Header(
        name=summary["name"],
        legacy_model=summary["legacy_model"],
        targets=", ".join(summary["targets"]),
        metric=(summary.get("metric") or {}).get("name", "?"),
        splits=f"train {splits.get('train', '?')} / dev {splits.get('dev', '?')} / test {splits.get('test', '?')}",
        run=_run_line(summary),
    )


@dataclass(frozen=True)
class Paired:
    """The paired test of winner against baseline, as one sentence; ``css`` colours its callout."""

    css: str
    verdict: str
    n: int
    mean_diff: str
    ci: str
    p_value: str
    improved: int
    regressed: int


@dataclass(frozen=True)
class VerdictRow:
    """A config scored on test: a role's (``role`` set) or the legacy prompt's on one target."""

    css: str
    role: str
    model: str
    label: str
    test_score: str
    test_failed: int
    ci: str
    dev_score: str
    dev_n: int | None  # set when the config was pruned after this many dev examples
    dev_total: int | None
    cost: str
    latency: str
    n: str
    # a config at a temperature above 0: how many seeded samples its scores are the mean of, and their spread
    samples: int = 1
    test_spread: str = ""


@dataclass(frozen=True)
class Verdict:
    no_winner: str | None  # why there is no winner
    no_baseline: bool
    paired: Paired | None
    roles: list[VerdictRow]
    legacy_note: str
    sampling_note: str  # why a config at temperature 0 won over a sampled one that led on dev
    space_note: str  # why temperature was not searched (the budget could not pay for its samples)
    unseeded: str  # the targets that take no request seed
    targets: list[VerdictRow]


def _paired(summary: Mapping[str, Any]) -> Paired | None:
    paired = summary.get("winner_vs_baseline")
    if not paired:
        return None
    low, high = paired["ci"]
    if low > 0:
        css, sentence = "good", "The winner is better than the baseline"
    elif high < 0:
        css, sentence = "bad", "The winner is worse than the baseline"
    else:
        css, sentence = "", "The winner is not distinguishable from the baseline"
    return Paired(css, sentence, paired["n"], f"{paired['mean_diff']:+.3f}", f"[{low:+.3f}, {high:+.3f}]",
                  f"{paired['p_value']:.3g}", paired["improved"], paired["regressed"])


def _verdict_row(row: Mapping[str, Any], css: str, role: str = "", model: str = "", dev_total: int | None = None) -> VerdictRow:
    # a naive migration that could not compete was stopped after a chunk of dev
    pruned = bool(dev_total) and row.get("dev_n") is not None and row["dev_n"] < dev_total
    samples = row.get("samples") or {}
    dev = samples["dev"]["mean"] if "dev" in samples else row.get("dev_score")
    return VerdictRow(
        css=css, role=role, model=model, label=row["label"],
        test_score=score(row["test_score"]), test_failed=row.get("test_failed") or 0, ci=ci(row["test_ci"]),
        dev_score=score(dev), dev_n=row["dev_n"] if pruned else None, dev_total=dev_total,
        cost=usd(row["cost_usd_per_example"] * 1000), latency=seconds(row["latency_p50_s"]), n=str(row.get("test_n", "")),
        samples=samples.get("samples", 1), test_spread=f"{samples['test']['spread']:.3f}" if "test" in samples else "",
    )


def _no_winner(summary: Mapping[str, Any]) -> str | None:
    if summary.get("winner") is not None:
        return None
    stopped = summary.get("stopped_by")
    return f"the {stopped} budget ran out before any trial completed" if stopped else "no trial completed"


def verdict(summary: Mapping[str, Any]) -> Verdict:
    """The test-split verdict: who won, by how much, and the legacy prompt on every target."""
    chosen = (summary.get("baseline") or {}).get("model")
    dev_total = (summary.get("splits") or {}).get("dev")
    by_target = summary.get("baselines_by_target") or {}
    return Verdict(
        no_winner=_no_winner(summary),
        no_baseline=summary.get("baseline") is None,
        paired=_paired(summary),
        roles=[_verdict_row(summary[role], role, role=role) for role in _ROLES if summary.get(role)],
        legacy_note=summary.get("legacy_note") or "",
        sampling_note=summary.get("sampling_note") or "",
        space_note=summary.get("space_note") or "",
        unseeded=", ".join(summary.get("sampled_without_seed") or []),
        targets=[
            _verdict_row(row, "baseline" if model == chosen else "", model=model, dev_total=dev_total)
            for model, row in by_target.items()
            if row
        ],
    )


@dataclass(frozen=True)
class ModelRow:
    model: str
    trials: int
    complete: int
    best_dev: float | None
    mean_dev: float | None
    legacy_test: float | None
    best_config: str


def model_rows(result: MigrationResult, summary: Mapping[str, Any]) -> list[ModelRow]:
    """Per target: how many trials it got, its best and mean dev score, the legacy prompt's test score."""
    by_target = summary.get("baselines_by_target") or {}
    rows = []
    for target in result.spec.targets:
        mine = [o for o in result.search.trials if o.config.model == target.model]
        done = [o for o in mine if o.state == "complete" and o.summary.n > 0]
        best = max(done, key=lambda o: o.summary.score) if done else None
        base = by_target.get(target.model)
        rows.append(ModelRow(
            model=target.model, trials=len(mine), complete=len(done),
            best_dev=best.summary.score if best else None,
            mean_dev=sum(o.summary.score for o in done) / len(done) if done else None,
            legacy_test=base["test_score"] if base else None,
            best_config=f"{best.config.label()} (#{best.number})" if best else "–",
        ))
    return rows


@dataclass(frozen=True)
class Reply:
    """A model's output on one example (or its error) and its score."""

    text: str
    failed: bool
    score: str


@dataclass(frozen=True)
class ExampleRow:
    id: str
    inputs: list[tuple[str | None, str]]
    expected: str
    baseline: Reply
    winner: Reply


@dataclass(frozen=True)
class ExampleTable:
    """The first ``MAX_EXAMPLES`` rows of ``total``."""

    rows: list[ExampleRow]
    total: int


@dataclass(frozen=True)
class ExampleChanges:
    worse: ExampleTable
    better: ExampleTable
    unchanged: int


def _reply(result: ExampleResult) -> Reply:
    if result.error is not None:
        return Reply(truncate(result.error, 200), True, score(result.score))
    return Reply(truncate(result.output), False, score(result.score))


def _example_table(pairs: Sequence[tuple[Example, ExampleResult, ExampleResult]]) -> ExampleTable:
    rows = [
        ExampleRow(ex.id, input_cells(ex.inputs), truncate(str(ex.expected)), _reply(base), _reply(won))
        for ex, won, base in pairs[:MAX_EXAMPLES]
    ]
    return ExampleTable(rows, len(pairs))


def changed_examples(result: MigrationResult) -> ExampleChanges | None:
    """Test examples the winner got worse / better at than the baseline, biggest change first.

    None without both a winner and a baseline.
    """
    winner, baseline = result.verdict.winner, result.verdict.baseline
    if winner is None or baseline is None:
        return None
    examples = {ex.id: ex for ex in result.prepared.splits.test}
    base = {r.example_id: r for r in baseline.results}
    pairs = [(examples[w.example_id], w, base[w.example_id]) for w in winner.results if w.example_id in base and w.example_id in examples]
    worse = sorted((p for p in pairs if p[1].score < p[2].score), key=lambda p: (p[1].score - p[2].score, p[0].id))
    better = sorted((p for p in pairs if p[1].score > p[2].score), key=lambda p: (p[2].score - p[1].score, p[0].id))
    return ExampleChanges(_example_table(worse), _example_table(better), len(winner.results) - len(worse) - len(better))


@dataclass(frozen=True)
class TrialRow:
    number: int
    role: str
    label: str
    warm_start: bool
    params: str
    state: str
    score: str
    partial_n: int  # how many dev examples a trial that did not complete was scored on
    cost: str
    latency: str
    note: str


def trial_rows(result: MigrationResult) -> list[TrialRow]:
    """Every trial in order, the baseline's and winner's tagged."""
    roles = {ev.trial: role for role, ev in (("baseline", result.verdict.baseline), ("winner", result.verdict.winner)) if ev is not None and ev.trial is not None}
    rows = []
    for o in sorted(result.search.trials, key=lambda t: t.number):
        n = o.summary.n
        rows.append(TrialRow(
            number=o.number, role=roles.get(o.number, ""), label=o.config.label(), warm_start=o.warm_start,
            params=", ".join(f"{k}={value(v)}" for k, v in o.config.params), state=o.state,
            score=score(o.summary.score) if n else "–", partial_n=n if o.state != "complete" else 0,
            cost=usd(o.summary.cost_usd_per_example * 1000), latency=seconds(o.summary.latency_p50_s), note=o.note,
        ))
    return rows
