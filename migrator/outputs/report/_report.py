"""DIR/report.html: one self-contained page a reviewer reads after a migration.

The page opens offline: charts are PNGs inlined as base64, styles are inline, there
are no scripts and no external links. Every piece of text that came from the dataset,
the spec or a model is HTML-escaped. Sections carry stable ids (``verdict``,
``pareto``, ``history``, ``importance``, ``per-model``, ``diff``, ``examples``,
``trials``, ``candidates``) so tests and browsers can find them.

The verdict numbers come from ``summary`` (what summary.json says); charts and
tables that need per-trial or per-example detail read ``result``. matplotlib and
optuna are imported inside the functions that draw, so importing this module is cheap.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import re
import sys
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.outputs._files import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from migrator.dataset import Example
    from migrator.evaluate import ExampleResult
    from migrator.migration import Evaluated, MigrationResult
    from migrator.search import TrialOutcome

__all__ = ["render_report", "write_report"]

MAX_EXAMPLES = 20
_TRUNCATE = 600
_ROLE_COLOURS = {"winner": "#d62728", "baseline": "#1f1f1f", "legacy": "#7f7f7f"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1120px;margin:0 auto;padding:1.5em 1.2em 4em;color:#1d1d1f;background:#fff}
h1{font-size:1.7em;margin:.2em 0 .1em}h2{font-size:1.3em;margin:2.2em 0 .6em;padding-bottom:.25em;border-bottom:2px solid #e5e5e5}
h3{font-size:1.05em;margin:1.4em 0 .4em}
.sub{color:#555;margin:0 0 .8em}.muted{color:#666}.small{font-size:.88em}
nav{font-size:.9em;margin:.8em 0 1.2em;padding:.5em .8em;background:#f6f7f9;border-radius:6px}
nav a{margin-right:1em;color:#0b57d0;text-decoration:none}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em;width:100%}
td,th{border-bottom:1px solid #e3e3e3;padding:5px 9px;text-align:left;vertical-align:top}
th{background:#f6f7f9;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.winner td{background:#fff4f2}tr.baseline td{background:#f4f6fb}
.tag{display:inline-block;font-size:.78em;padding:0 .45em;border-radius:3px;background:#eee;color:#333;margin-left:.3em}
.tag.winner{background:#d62728;color:#fff}.tag.baseline{background:#333;color:#fff}
.state-pruned{color:#8a6d00}.state-failed{color:#b00020}
.callout{font-size:1.12em;padding:.8em 1em;border-radius:8px;border-left:6px solid #999;background:#f4f4f4;margin:.6em 0 1em}
.callout.good{border-color:#0a7a2f;background:#eaf6ee}.callout.bad{border-color:#b00020;background:#fcecee}
.good{color:#0a7a2f}.bad{color:#b00020}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f8;padding:8px 10px;border-radius:5px;margin:0;font-size:.88em}
.diff{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;border:1px solid #e3e3e3;border-radius:6px;overflow:hidden;margin:.6em 0 1em}
.diff div{white-space:pre-wrap;word-break:break-word;padding:0 .7em}
.diff .add{background:#e6ffec}.diff .del{background:#ffebe9}.diff .ctx{background:#fff}
.diff .msg{padding:0}.diff .msg+.msg{border-top:1px solid #e3e3e3}.diff .role{font-weight:600;color:#555}
.diff .add::before{content:"+ ";color:#0a7a2f}.diff .del::before{content:"- ";color:#b00020}.diff .ctx::before{content:"  "}
figure{margin:.6em 0 1.2em}figure img{width:100%;max-width:1080px;height:auto;display:block}
figcaption{color:#555;font-size:.88em;margin-top:.3em}
.note{color:#555;font-style:italic}
td.text{max-width:360px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _usd(value: float | None) -> str:
    """Dollars, with as many digits as small per-example costs need."""
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:.2f}"
    return f"${value:#.3g}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def _value(value: Any) -> str:
    """A parameter value as a reader expects it (no float noise like 0.7000000000000001)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _truncate(text: str, limit: int = _TRUNCATE) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def _safe_storage(storage: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", storage)


def _h2(anchor: str, title: str) -> str:
    return f"<h2 id='{anchor}'>{_e(title)}</h2>"


def _table(head: Sequence[str], rows: Sequence[str], numeric: Sequence[int] = ()) -> str:
    cells = "".join(f"<th class='num'>{_e(h)}</th>" if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _num(text: str) -> str:
    return f"<td class='num'>{text}</td>"


# -- charts ------------------------------------------------------------------------------


@contextmanager
def _plotting() -> Iterator[Any]:
    """matplotlib's pyplot on the Agg backend, with rc changes undone afterwards.

    optuna's plots call ``plt.style.use`` (global); ``rc_context`` confines that. The
    backend is only chosen when pyplot is not loaded yet, so a notebook keeps its own.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(), warnings.catch_warnings():
        # optuna marks its matplotlib plots experimental; the reader of the report cannot act on that.
        warnings.filterwarnings("ignore", message=".* is experimental")
        yield plt


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(png_b64: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{png_b64}'>{cap}</figure>"


def _complete(result: MigrationResult) -> list[TrialOutcome]:
    return [o for o in result.search.trials if o.state == "complete" and o.summary.n > 0]


def _colours(keys: Sequence[str]) -> dict[str, str]:
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}


def _front(trials: Sequence[TrialOutcome], cost: Callable[[TrialOutcome], float]) -> list[TrialOutcome]:
    """Trials no other trial beats on both dev score (higher) and ``cost`` (lower)."""

    def dominated(a: TrialOutcome) -> bool:
        return any(
            b.summary.score >= a.summary.score
            and cost(b) <= cost(a)
            and (b.summary.score > a.summary.score or cost(b) < cost(a))
            for b in trials
        )

    return sorted((t for t in trials if not dominated(t)), key=cost)


def _pareto_axes(
    ax: Axes,
    result: MigrationResult,
    trials: Sequence[TrialOutcome],
    front: Sequence[TrialOutcome],
    x: Callable[[TrialOutcome], float],
    xlabel: str,
) -> None:
    colours = _colours([t.model for t in result.spec.targets])
    for model, colour in colours.items():
        mine = [t for t in trials if t.config.model == model]
        if mine:
            ax.scatter([x(t) for t in mine], [t.summary.score for t in mine], s=36, color=colour, alpha=0.75, label=model, zorder=2)
    if front:
        xs, ys = [x(t) for t in front], [t.summary.score for t in front]
        ax.step(xs, ys, where="post", color="#444", lw=1.2, ls="--", zorder=1, label="Pareto front")
        ax.scatter(xs, ys, s=90, facecolors="none", edgecolors="#222", lw=1.4, zorder=3)
    by_number = {t.number: t for t in trials}
    for role, ev, marker in (("baseline", result.baseline, "D"), ("winner", result.winner, "*")):
        trial = by_number.get(ev.trial) if ev is not None and ev.trial is not None else None
        if trial is None:
            continue
        ax.scatter([x(trial)], [trial.summary.score], marker=marker, s=260 if marker == "*" else 110,
                   color=_ROLE_COLOURS[role], edgecolors="white", lw=1, zorder=4, label=f"{role} (#{trial.number})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev score")
    ax.grid(alpha=0.3)
    if all(0 <= t.summary.score <= 1 for t in trials):
        ax.set_ylim(-0.04, 1.04)


def _pareto_chart(result: MigrationResult, trials: Sequence[TrialOutcome]) -> str:
    fig, (left, right) = _figure(11, 4.4, 2)
    _pareto_axes(left, result, trials, result.pareto, lambda t: t.summary.cost_usd_per_example * 1000, "$ per 1k examples (dev)")
    latency_front = _front(trials, lambda t: t.summary.latency_p50_s)
    _pareto_axes(right, result, trials, latency_front, lambda t: t.summary.latency_p50_s, "latency p50, s (dev)")
    left.set_title("quality vs cost", loc="left")
    right.set_title("quality vs latency", loc="left")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return _png(fig)


def _strip_axes(ax: Axes, groups: Mapping[str, Sequence[TrialOutcome]], colours: Mapping[str, str], title: str) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    names = list(groups)
    data = [[t.summary.score for t in groups[n]] for n in names]
    boxed = [i for i, d in enumerate(data) if len(d) >= 3]
    if boxed:
        ax.boxplot([data[i] for i in boxed], positions=boxed, widths=0.5, showfliers=False, medianprops={"color": "#444"},
                   boxprops={"color": "#bbb"}, whiskerprops={"color": "#bbb"}, capprops={"color": "#bbb"})
    for i, name in enumerate(names):
        for t in groups[name]:
            ax.scatter(i + rng.uniform(-0.15, 0.15), t.summary.score, s=34, alpha=0.8, zorder=3,
                       color=colours.get(t.config.model, "#1f77b4"), marker="s" if t.warm_start else "o")
        if not groups[name]:
            ax.text(i, 0.5, "no complete\ntrials", ha="center", va="center", fontsize=8, color="#888")
    ax.set_xticks(range(len(names)), names, rotation=15 if len(names) > 3 else 0, fontsize=9)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("dev score")
    ax.set_title(title, loc="left")
    ax.grid(axis="y", alpha=0.3)


def _per_model_chart(result: MigrationResult, trials: Sequence[TrialOutcome]) -> str:
    models = [t.model for t in result.spec.targets]
    colours = _colours(models)
    fig, (left, right) = _figure(11, 4, 2)
    _strip_axes(left, {m: [t for t in trials if t.config.model == m] for m in models}, colours, "by model")
    prompts = list(result.prompts)
    _strip_axes(right, {p: [t for t in trials if t.config.prompt_id == p] for p in prompts}, colours, "by prompt candidate")
    if all(0 <= t.summary.score <= 1 for t in trials):
        left.set_ylim(-0.04, 1.04)
        right.set_ylim(-0.04, 1.04)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=c, label=m) for m, c in colours.items()]
    handles.append(Line2D([], [], ls="", marker="s", color="#888", label="legacy prompt (warm start)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return _png(fig)


def _axes_png(plt: Any, ax: Axes, height: float) -> str:
    """A pyplot figure (as optuna draws them) resized to the page width, encoded and closed."""
    from matplotlib.figure import Figure

    fig = ax.figure
    assert isinstance(fig, Figure), "optuna draws on a top-level figure"
    fig.set_size_inches(11, height)
    fig.tight_layout()
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _study_charts(result: MigrationResult) -> tuple[str, str]:
    """Optuna's own optimisation-history and importance plots, or a note saying why not."""
    storage = _safe_storage(result.search.storage)
    with _plotting() as plt:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=result.search.study_name, storage=result.search.storage)
        except Exception as exc:  # the report must still be written if the study is gone
            note = f"<p class='note'>The study {_e(result.search.study_name)} could not be loaded from {_e(storage)}: {_e(exc)}</p>"
            return note, note
        primary = {"target": lambda t: t.values[0], "target_name": "dev score"} if len(study.directions) > 1 else {"target_name": "dev score"}
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            history = "<p class='note'>No complete trials, so no history to plot.</p>"
        else:
            ax = optuna.visualization.matplotlib.plot_optimization_history(study, **primary)
            history = _img(_axes_png(plt, ax, 3.8), "optimisation history",
                           "Dev score of each complete trial, in order, and the best so far (pruned trials are not shown).")
        if len(complete) < 2:
            importance = f"<p class='note'>Parameter importance needs at least 2 complete trials; this study has {len(complete)}.</p>"
        else:
            try:
                ax = optuna.visualization.matplotlib.plot_param_importances(study, **primary)
            except Exception as exc:  # optuna raises several types when trials are too few or too alike
                importance = f"<p class='note'>Parameter importance could not be computed from {len(complete)} complete trials: {_e(exc)}</p>"
            else:
                importance = _img(_axes_png(plt, ax, 3.2), "parameter importance",
                                  "How much of the dev score's variation each search parameter explains (PED-ANOVA).")
    return history, importance


# -- sections ----------------------------------------------------------------------------


def _header(summary: Mapping[str, Any]) -> str:
    counts = summary.get("trials") or {}
    calls = summary.get("llm_calls") or {}
    splits = summary.get("splits") or {}
    stopped = f" · stopped by the {_e(summary['stopped_by'])} budget" if summary.get("stopped_by") else ""
    if summary.get("space_exhausted"):
        stopped += " · ended early: every config in the search space was tried"
    metric = summary.get("metric") or {}
    nav = "".join(
        f"<a href='#{a}'>{_e(t)}</a>"
        for a, t in (
            ("verdict", "verdict"), ("pareto", "Pareto front"), ("history", "history"), ("importance", "importance"),
            ("per-model", "per model & prompt"), ("diff", "winner's prompt"), ("examples", "examples"),
            ("trials", "trials"), ("candidates", "prompt candidates"),
        )
    )
    return (
        f"<h1>Migration report: {_e(summary['name'])}</h1>"
        f"<p class='sub'>Legacy model <b>{_e(summary['legacy_model'])}</b> → targets <b>{_e(', '.join(summary['targets']))}</b>"
        f" · metric <b>{_e(metric.get('name', '?'))}</b> · splits train {splits.get('train', '?')} / dev {splits.get('dev', '?')} / test {splits.get('test', '?')}</p>"
        f"<p class='sub small'>{counts.get('total', 0)} trials ({counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
        f"{counts.get('failed', 0)} failed){stopped} · {calls.get('made', 0)} LLM calls ({calls.get('cached', 0)} cached, "
        f"{calls.get('failed', 0)} failed) · {_usd(summary.get('cost_usd'))} spent · {summary.get('wall_s', 0):.0f} s</p>"
        f"<nav>{nav}</nav>"
    )


def _paired_sentence(summary: Mapping[str, Any]) -> str:
    paired = summary.get("winner_vs_baseline")
    if not paired:
        return ""
    low, high = paired["ci"]
    if low > 0:
        cls, verdict = "good", "The winner is better than the baseline"
    elif high < 0:
        cls, verdict = "bad", "The winner is worse than the baseline"
    else:
        cls, verdict = "", "The winner is not distinguishable from the baseline"
    return (
        f"<p class='callout {cls}' id='paired'>{verdict} on the {paired['n']} test examples: "
        f"<b>{paired['mean_diff']:+.3f}</b> (95% CI [{low:+.3f}, {high:+.3f}], p = {paired['p_value']:.3g}); "
        f"{paired['improved']} examples improved, {paired['regressed']} regressed.</p>"
    )


def _verdict_row(first_cell: str, row: Mapping[str, Any] | None, css: str = "", dev_total: int | None = None) -> str:
    if not row:
        return ""
    failed = f" <span class='bad small'>({row['test_failed']} failed)</span>" if row.get("test_failed") else ""
    dev = _score(row.get("dev_score"))
    if dev_total and row.get("dev_n") is not None and row["dev_n"] < dev_total:
        # a naive migration that could not compete was stopped after a chunk of dev
        dev += f" <span class='muted small'>(pruned after {row['dev_n']} of {dev_total})</span>"
    return (
        f"<tr class='{css}'><td>{first_cell}</td><td>{_e(row['label'])}</td>"
        + _num(f"<b>{_score(row['test_score'])}</b>{failed}")
        + _num(_ci(row["test_ci"]))
        + _num(dev)
        + _num(_usd(row["cost_usd_per_example"] * 1000))
        + _num(_seconds(row["latency_p50_s"]))
        + _num(str(row.get("test_n", "")))
        + "</tr>"
    )


def _verdict(summary: Mapping[str, Any]) -> str:
    head = ["", "config", "test score", "95% CI", "dev score", "$ per 1k examples", "latency p50", "n"]
    parts = [_h2("verdict", "Verdict on the test split")]
    winner, baseline = summary.get("winner"), summary.get("baseline")
    if winner is None:
        stopped = summary.get("stopped_by")
        why = f"the {stopped} budget ran out before any trial completed" if stopped else "no trial completed"
        parts.append(f"<p class='callout bad'>No winner: {_e(why)}.</p>")
    elif baseline is None:
        parts.append("<p class='callout'>No baseline: the legacy prompt completed on no target, so there is nothing to compare the winner with.</p>")
    parts.append(_paired_sentence(summary))
    rows = [_verdict_row(f"<span class='tag {role}'>{role}</span>", summary.get(role), role) for role in ("legacy", "baseline", "winner")]
    if any(rows):
        parts.append(_table(head, rows, numeric=range(2, 8)))
    parts.append(
        "<p class='small muted'>The <b>baseline</b> is the naive migration: the legacy prompt and params unchanged, on the target that "
        "scored best on dev. The <b>winner</b> is the best config on dev; both were then scored once on the held-out test split.</p>"
    )
    if summary.get("legacy_note"):
        parts.append(f"<p class='note'>{_e(summary['legacy_note'])}</p>")
    unseeded = summary.get("sampled_without_seed") or []
    if unseeded:
        parts.append(
            f"<p class='note'>{_e(', '.join(unseeded))} take no request seed: their scores at a temperature above 0 are "
            "one sample each, and a rerun without the cache may score differently.</p>"
        )
    by_target = summary.get("baselines_by_target") or {}
    if by_target:
        parts.append("<h3 id='baselines'>The legacy prompt on each target (test split)</h3>")
        chosen = (baseline or {}).get("model")
        dev_total = (summary.get("splits") or {}).get("dev")
        rows = [_verdict_row(_e(model), row, "baseline" if model == chosen else "", dev_total) for model, row in by_target.items()]
        parts.append(_table(["target", "config", "test score", "95% CI", "dev score", "$ per 1k examples", "latency p50", "n"], rows, numeric=range(2, 8)))
    return "".join(parts)


def _pareto(result: MigrationResult, trials: Sequence[TrialOutcome]) -> str:
    parts = [_h2("pareto", "Quality vs cost and latency (dev split)")]
    if not trials:
        return parts[0] + "<p class='note'>No complete trials to plot.</p>"
    parts.append(_img(_pareto_chart(result, trials), "Pareto fronts: dev score against cost per 1k examples and against latency",
                      "Every complete trial; the dashed line joins the trials no other trial beats on both axes. "
                      "Star: winner, diamond: baseline (their dev-split points)."))
    rows = [
        f"<tr><td>#{t.number}</td><td>{_e(t.config.label())}</td>{_num(_score(t.summary.score))}"
        f"{_num(_usd(t.summary.cost_usd_per_example * 1000))}{_num(_seconds(t.summary.latency_p50_s))}</tr>"
        for t in result.pareto
    ]
    parts.append("<h3>Pareto front (score vs cost)</h3>")
    parts.append(_table(["trial", "config", "dev score", "$ per 1k examples", "latency p50"], rows, numeric=(2, 3, 4)))
    return "".join(parts)


def _history_sections(result: MigrationResult) -> str:
    history, importance = _study_charts(result)
    return (
        _h2("history", "Optimisation history")
        + history
        + _h2("importance", "Parameter importance")
        + importance
    )


def _per_model(result: MigrationResult, summary: Mapping[str, Any], trials: Sequence[TrialOutcome]) -> str:
    parts = [_h2("per-model", "Scores per model and per prompt candidate (dev split)")]
    if trials:
        parts.append(_img(_per_model_chart(result, trials), "dev scores of complete trials per model and per prompt candidate",
                          "Each point is a complete trial, coloured by model (squares: the legacy prompt, warm-started on each target); boxes where a group has 3 or more."))
    by_target = summary.get("baselines_by_target") or {}
    rows = []
    for target in result.spec.targets:
        mine = [o for o in result.search.trials if o.config.model == target.model]
        done = [o for o in mine if o.state == "complete" and o.summary.n > 0]
        best = max(done, key=lambda o: o.summary.score) if done else None
        base = by_target.get(target.model)
        rows.append(
            f"<tr><td>{_e(target.model)}</td>{_num(str(len(mine)))}{_num(str(len(done)))}"
            f"{_num(_score(best.summary.score if best else None))}"
            f"{_num(_score(sum(o.summary.score for o in done) / len(done) if done else None))}"
            f"{_num(_score(base['test_score']) if base else '–')}"
            f"<td>{_e(best.config.label()) + f' (#{best.number})' if best else '–'}</td></tr>"
        )
    parts.append(_table(["model", "trials", "complete", "best dev", "mean dev", "legacy prompt, test", "best config"], rows, numeric=(1, 2, 3, 4, 5)))
    rows = [
        f"<tr><td>{_e(c['prompt_id'])}</td><td>{_e(_origin(c['origin']))}</td>{_num(str(c['trials']))}"
        f"{_num(_score(c['best_dev_score']))}{_num(_score(c['mean_dev_score']))}</tr>"
        for c in summary.get("candidates") or []
    ]
    parts.append(_table(["prompt candidate", "origin", "complete trials", "best dev", "mean dev"], rows, numeric=(2, 3, 4)))
    return "".join(parts)


def _origin(origin: Mapping[str, Any]) -> str:
    """Where a candidate came from: ``transform user_turn``, ``dspy (proposer=..., ...)``."""
    kind = str(origin.get("kind", "?"))
    name = f"{kind} {_value(origin[kind])}" if kind in origin else kind
    rest = ", ".join(f"{k}={_truncate(_value(v), 80)}" for k, v in origin.items() if k not in ("kind", kind))
    return f"{name} ({rest})" if rest else name


_Message = tuple[str, str]
# How legacy and winner messages are matched up, strictest first: the same message, the
# same text under another role (a change of role), the same role with other text.
_PAIRING: tuple[Callable[[_Message], Hashable], ...] = (lambda m: m, lambda m: m[1], lambda m: m[0])


def _pair_messages(
    old: Sequence[_Message], new: Sequence[_Message], keys: Sequence[Callable[[_Message], Hashable]] = _PAIRING
) -> list[tuple[_Message | None, _Message | None]]:
    """Legacy and winner messages side by side, in order; ``None`` where one side has no counterpart."""
    if not keys:
        return [(m, None) for m in old] + [(None, m) for m in new]
    key, rest = keys[0], keys[1:]
    pairs: list[tuple[_Message | None, _Message | None]] = []
    matcher = difflib.SequenceMatcher(None, [key(m) for m in old], [key(m) for m in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs += zip(old[i1:i2], new[j1:j2], strict=True)
        else:
            pairs += _pair_messages(old[i1:i2], new[j1:j2], rest)
    return pairs


def _rows(kind: str, lines: Sequence[str]) -> list[str]:
    return [f"<div class='{kind}'>{_e(line)}</div>" for line in lines]


def _lines(text: str) -> list[str]:
    # split, not splitlines: a trailing newline is sent to the model, so it is shown too
    return text.split("\n")


def _role_row(kind: str, role: str) -> str:
    return f"<div class='role {kind}'>{_e(f'[{role}]')}</div>"


def _message_diff(old: _Message | None, new: _Message | None) -> str:
    """One message as a reviewer reads it: its role, then its text, with what changed marked."""
    if new is None:
        assert old is not None
        rows = [_role_row("del", old[0]), *_rows("del", _lines(old[1]))]
    elif old is None:
        rows = [_role_row("add", new[0]), *_rows("add", _lines(new[1]))]
    else:
        rows = [_role_row("ctx", new[0])] if old[0] == new[0] else [_role_row("del", old[0]), _role_row("add", new[0])]
        a, b = _lines(old[1]), _lines(new[1])
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if op == "equal":
                rows += _rows("ctx", a[i1:i2])
            else:
                rows += _rows("del", a[i1:i2]) + _rows("add", b[j1:j2])
    return f"<div class='msg'>{''.join(rows)}</div>"


def _changes(pairs: Sequence[tuple[_Message | None, _Message | None]]) -> list[str]:
    """What changed, message by message, numbered as in the prompt that has the message."""
    notes: list[str] = []
    n_old = n_new = 0
    for old, new in pairs:
        n_old += old is not None
        n_new += new is not None
        if old is None:
            assert new is not None
            notes.append(f"message {n_new} ({new[0]}) is added")
        elif new is None:
            notes.append(f"legacy message {n_old} ({old[0]}) is removed")
        elif old[0] != new[0]:
            text = "" if old[1] == new[1] else " and its text changes"
            notes.append(f"message {n_new} changes role from {old[0]} to {new[0]}{text}")
        elif old[1] != new[1]:
            notes.append(f"the text of message {n_new} ({new[0]}) changes")
    return notes


def _prompt_diff(old: Sequence[_Message], new: Sequence[_Message]) -> str:
    """The winner's chat messages against the legacy ones: a summary sentence, then the diff."""
    pairs = _pair_messages(old, new)
    notes = _changes(pairs)
    if notes:
        summary = f"<p id='prompt-changes'>The winner changes the legacy prompt: {_e('; '.join(notes))}.</p>"
    else:
        summary = "<p id='prompt-changes'>The winner keeps the legacy prompt unchanged.</p>"
    return summary + f"<div class='diff'>{''.join(_message_diff(a, b) for a, b in pairs)}</div>"


def _diff(result: MigrationResult) -> str:
    parts = [_h2("diff", "The winner's prompt, against the legacy prompt")]
    winner = result.winner
    if winner is None:
        return parts[0] + "<p class='note'>No winner.</p>"
    config = winner.config
    candidate = result.prompts[config.prompt_id]
    parts.append(
        f"<p>Model <b>{_e(result.spec.app.model)}</b> → <b>{_e(config.model)}</b> ({_e(config.mode)} mode); "
        f"prompt <b>{_e(config.prompt_id)}</b> ({_e(_origin(candidate.origin))}).</p>"
    )
    parts.append(_prompt_diff(result.prepared.template.messages, candidate.template.messages))
    legacy_params = dict(result.spec.app.params)
    params = dict(config.params)
    rows = []
    for name in sorted(set(legacy_params) | set(params)):
        old, new = legacy_params.get(name), params.get(name)
        # the request seed migrator adds is how it reproduces replies, not a tuned change
        added_seed = name == "seed" and old is None
        changed = " class='winner'" if old != new and not added_seed else ""
        shown = f"{_value(new)} (request seed, added by migrator)" if added_seed else ("–" if new is None else _value(new))
        rows.append(f"<tr{changed}><td>{_e(name)}</td><td>{_e('–' if old is None else _value(old))}</td><td>{_e(shown)}</td></tr>")
    parts.append("<h3>Parameters</h3>" + _table(["parameter", "legacy", "winner"], rows))
    parts.append(_demos(result, winner))
    return "".join(parts)


def _demos(result: MigrationResult, winner: Evaluated) -> str:
    from migrator.candidates import DemoPool

    config = winner.config
    if not config.demos:
        return "<h3>Demos</h3><p>None: the winner sends no few-shot examples.</p>"
    splits = result.prepared.splits
    sample = splits.test[0] if splits.test else splits.dev[0]
    demos = DemoPool(splits.train, seed=result.spec.seed).demos(config.demo_strategy, config.demos, sample)
    if config.demo_strategy == "knn":
        intro = (f"{config.demos} per request, the train examples nearest to each input (of {len(splits.train)}). "
                 f"For test example {_e(sample.id)} they are:")
    else:
        intro = f"{config.demos} per request, the same for every input (strategy {_e(config.demo_strategy)}):"
    rows = [f"<tr><td class='text'>{_inputs(d.inputs)}</td><td>{_e(d.answer)}</td></tr>" for d in demos]
    return f"<h3>Demos</h3><p>{intro}</p>" + _table(["input", "answer"], rows)


def _inputs(inputs: Mapping[str, Any]) -> str:
    if len(inputs) == 1:
        return f"<pre>{_e(_truncate(str(next(iter(inputs.values())))))}</pre>"
    return "".join(f"<pre><b>{_e(k)}</b>: {_e(_truncate(str(v)))}</pre>" for k, v in inputs.items())


def _output(result: ExampleResult) -> str:
    if result.error is not None:
        return f"<span class='bad small'>error: {_e(_truncate(result.error, 200))}</span>"
    return f"<pre>{_e(_truncate(result.output))}</pre>"


def _changed(result: MigrationResult) -> tuple[list[tuple[Example, ExampleResult, ExampleResult]], list[tuple[Example, ExampleResult, ExampleResult]]]:
    """Test examples the winner got worse / better at than the baseline, biggest change first."""
    assert result.winner is not None and result.baseline is not None
    examples = {ex.id: ex for ex in result.prepared.splits.test}
    base = {r.example_id: r for r in result.baseline.results}
    pairs = [(examples[w.example_id], w, base[w.example_id]) for w in result.winner.results if w.example_id in base and w.example_id in examples]
    worse = sorted((p for p in pairs if p[1].score < p[2].score), key=lambda p: (p[1].score - p[2].score, p[0].id))
    better = sorted((p for p in pairs if p[1].score > p[2].score), key=lambda p: (p[2].score - p[1].score, p[0].id))
    return worse, better


def _example_table(rows: Sequence[tuple[Example, ExampleResult, ExampleResult]]) -> str:
    body = [
        f"<tr><td>{_e(ex.id)}</td><td class='text'>{_inputs(ex.inputs)}</td><td><pre>{_e(_truncate(str(ex.expected)))}</pre></td>"
        f"<td class='text'>{_output(b)}<span class='small muted'>score {_score(b.score)}</span></td>"
        f"<td class='text'>{_output(w)}<span class='small muted'>score {_score(w.score)}</span></td></tr>"
        for ex, w, b in rows[:MAX_EXAMPLES]
    ]
    more = f"<p class='small muted'>Showing {MAX_EXAMPLES} of {len(rows)}.</p>" if len(rows) > MAX_EXAMPLES else ""
    return _table(["id", "input", "expected", "baseline output", "winner output"], body) + more


def _examples(result: MigrationResult) -> str:
    parts = [_h2("examples", "Examples that changed against the baseline (test split)")]
    if result.winner is None or result.baseline is None:
        return parts[0] + "<p class='note'>Needs both a winner and a baseline.</p>"
    worse, better = _changed(result)
    same = len(result.winner.results) - len(worse) - len(better)
    parts.append(f"<p>{len(worse)} regressed, {len(better)} improved, {same} unchanged.</p>")
    parts.append(f"<h3 id='regressed' class='bad'>Regressed ({len(worse)})</h3>")
    parts.append(_example_table(worse) if worse else "<p>No test example got worse.</p>")
    parts.append(f"<h3 id='improved' class='good'>Improved ({len(better)})</h3>")
    parts.append(_example_table(better) if better else "<p>No test example got better.</p>")
    return "".join(parts)


def _trials(result: MigrationResult) -> str:
    roles: dict[int, str] = {}
    for role, ev in (("baseline", result.baseline), ("winner", result.winner)):
        if ev is not None and ev.trial is not None:
            roles[ev.trial] = role
    rows = []
    for o in sorted(result.search.trials, key=lambda t: t.number):
        role = roles.get(o.number, "")
        tags = f"<span class='tag {role}'>{role}</span>" if role else ""
        tags += "<span class='tag'>warm start</span>" if o.warm_start else ""
        params = ", ".join(f"{k}={_value(v)}" for k, v in o.config.params)
        score = _score(o.summary.score) if o.summary.n else "–"
        if o.state != "complete" and o.summary.n:
            score += f" <span class='small muted'>({o.summary.n} ex.)</span>"
        rows.append(
            f"<tr class='{role}'><td>{o.number}</td><td>{_e(o.config.label())}{tags}<br><span class='small muted'>{_e(params)}</span></td>"
            f"<td class='state-{_e(o.state)}'>{_e(o.state)}</td>{_num(score)}{_num(_usd(o.summary.cost_usd_per_example * 1000))}"
            f"{_num(_seconds(o.summary.latency_p50_s))}<td class='small'>{_e(o.note)}</td></tr>"
        )
    storage = _safe_storage(result.search.storage)
    return (
        _h2("trials", "Trials")
        + f"<p class='small muted'>Optuna study {_e(result.search.study_name)} in {_e(storage)}.</p>"
        + _table(["#", "config", "state", "dev score", "$ per 1k examples", "latency p50", "note"], rows, numeric=(3, 4, 5))
    )


def _candidates(summary: Mapping[str, Any]) -> str:
    parts = [_h2("candidates", "Prompt candidates")]
    for cand in summary.get("candidates") or []:
        parts.append(
            f"<h3>{_e(cand['prompt_id'])} <span class='small muted'>{_e(_origin(cand['origin']))} · {cand['trials']} complete trials · "
            f"best dev {_score(cand['best_dev_score'])}</span></h3><pre>{_e(cand['text'])}</pre>"
        )
    return "".join(parts)


def render_report(result: MigrationResult, summary: Mapping[str, Any]) -> str:
    """The report as one HTML string with no external resources."""
    trials = _complete(result)
    body = [
        _header(summary),
        _verdict(summary),
        _pareto(result, trials),
        _history_sections(result),
        _per_model(result, summary, trials),
        _diff(result),
        _examples(result),
        _trials(result),
        _candidates(summary),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>migrator: {_e(summary['name'])}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_report(path: Path, result: MigrationResult, summary: Mapping[str, Any]) -> None:
    """Write the report to ``path`` atomically."""
    write_atomic(path, render_report(result, summary))
