"""The report's charts, drawn with matplotlib and returned as base64 PNGs to inline.

matplotlib, numpy, optuna (and migrator.search, which loads numpy) are imported inside
the functions that draw, so importing the report stays cheap. optuna's plots are drawn
inside ``_plotting``, so that their global style changes do not outlive the report.
"""

from __future__ import annotations

import base64
import io
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.redaction import redact

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from migrator.migration import MigrationResult
    from migrator.search import TrialOutcome

__all__ = ["Plot", "complete_trials", "pareto_chart", "per_model_chart", "study_plots"]

_ROLE_COLOURS = {"winner": "#d62728", "baseline": "#1f1f1f", "legacy": "#7f7f7f"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


@dataclass(frozen=True)
class Plot:
    """A chart as a base64 PNG, or the note the page shows where it cannot be drawn."""

    png: str = ""
    note: str = ""


def complete_trials(result: MigrationResult) -> list[TrialOutcome]:
    """The trials with a dev score to plot."""
    return [o for o in result.search.trials if o.state == "complete" and o.summary.n > 0]


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
    # no Software metadata, so the same figure gives the same bytes on every run
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _colours(keys: Sequence[str]) -> dict[str, str]:
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}


def _unit_scores(axes: Sequence[Axes], trials: Sequence[TrialOutcome]) -> None:
    """Scores in [0, 1] get the full range, so charts of different runs compare by eye."""
    if all(0 <= t.summary.score <= 1 for t in trials):
        for ax in axes:
            ax.set_ylim(-0.04, 1.04)


def _latency_front(trials: Sequence[TrialOutcome]) -> list[TrialOutcome]:
    """The trials no other trial beats on both dev score and latency p50 (as cost's front does)."""
    from migrator.search import front  # loads numpy: only once a report is drawn

    return front(trials, lambda t: t.summary.latency_p50_s)


def _pareto_axes(
    ax: Axes,
    result: MigrationResult,
    trials: Sequence[TrialOutcome],
    front: Sequence[TrialOutcome],
    x: Callable[[TrialOutcome], float],
) -> None:
    """Every trial coloured by model, the front as a dashed step line, winner and baseline marked."""
    for model, colour in _colours([t.model for t in result.spec.targets]).items():
        mine = [t for t in trials if t.config.model == model]
        if mine:
            ax.scatter([x(t) for t in mine], [t.summary.score for t in mine], s=36, color=colour, alpha=0.75, label=model, zorder=2)
    if front:
        xs, ys = [x(t) for t in front], [t.summary.score for t in front]
        ax.step(xs, ys, where="post", color="#444", lw=1.2, ls="--", zorder=1, label="Pareto front")
        ax.scatter(xs, ys, s=90, facecolors="none", edgecolors="#222", lw=1.4, zorder=3)
    by_number = {t.number: t for t in trials}
    for role, ev, marker in (("baseline", result.verdict.baseline, "D"), ("winner", result.verdict.winner, "*")):
        trial = by_number.get(ev.trial) if ev is not None and ev.trial is not None else None
        if trial is not None:
            ax.scatter([x(trial)], [trial.summary.score], marker=marker, s=260 if marker == "*" else 110,
                       color=_ROLE_COLOURS[role], edgecolors="white", lw=1, zorder=4, label=f"{role} (#{trial.number})")
    ax.set_ylabel("dev score")
    ax.grid(alpha=0.3)
    _unit_scores([ax], trials)


def pareto_chart(result: MigrationResult, trials: Sequence[TrialOutcome]) -> str:
    """Dev score against cost per 1k examples (left) and against latency (right)."""
    fig, (left, right) = _figure(11, 4.4, 2)
    _pareto_axes(left, result, trials, result.pareto, lambda t: t.summary.cost_usd_per_example * 1000)
    _pareto_axes(right, result, trials, _latency_front(trials), lambda t: t.summary.latency_p50_s)
    left.set_xlabel("$ per 1k examples (dev)")
    right.set_xlabel("latency p50, s (dev)")
    left.set_title("quality vs cost", loc="left")
    right.set_title("quality vs latency", loc="left")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return _png(fig)


def _strip_axes(ax: Axes, groups: Mapping[str, Sequence[TrialOutcome]], colours: Mapping[str, str], title: str) -> None:
    """One column of jittered points per group, with a box where a group has 3 or more."""
    import numpy as np

    rng = np.random.default_rng(0)  # the same jitter on every run
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


def per_model_chart(result: MigrationResult, trials: Sequence[TrialOutcome]) -> str:
    """Dev scores grouped by target model (left) and by prompt candidate (right)."""
    models = [t.model for t in result.spec.targets]
    colours = _colours(models)
    from matplotlib.lines import Line2D

    fig, (left, right) = _figure(11, 4, 2)
    _strip_axes(left, {m: [t for t in trials if t.config.model == m] for m in models}, colours, "by model")
    by_prompt = {p: [t for t in trials if t.config.prompt_id == p] for p in result.prompts}
    _strip_axes(right, by_prompt, colours, "by prompt candidate")
    _unit_scores([left, right], trials)
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


def _history_plot(plt: Any, optuna: Any, study: Any, primary: Mapping[str, Any], n_complete: int) -> Plot:
    if not n_complete:
        return Plot(note="No complete trials, so no history to plot.")
    ax = optuna.visualization.matplotlib.plot_optimization_history(study, **primary)
    return Plot(png=_axes_png(plt, ax, 3.8))


def _importance_plot(plt: Any, optuna: Any, study: Any, primary: Mapping[str, Any], n_complete: int) -> Plot:
    if n_complete < 2:
        return Plot(note=f"Parameter importance needs at least 2 complete trials; this study has {n_complete}.")
    try:
        with warnings.catch_warnings():
            # fANOVA's notes on sparse regimes ("less than 2 trials") are about its fit, not the run
            warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna\.importance")
            ax = optuna.visualization.matplotlib.plot_param_importances(study, **primary)
    except Exception as exc:  # optuna raises several types when trials are too few or too alike
        return Plot(note=f"Parameter importance could not be computed from {n_complete} complete trials: {redact(str(exc))}")
    return Plot(png=_axes_png(plt, ax, 3.2))


def study_plots(result: MigrationResult) -> tuple[Plot, Plot]:
    """Optuna's own optimisation-history and parameter-importance plots, or notes saying why not."""
    search = result.search
    from migrator.search._optuna import quiet_logs  # optuna enters through the search package

    with _plotting() as plt, quiet_logs() as optuna:
        try:
            study = optuna.load_study(study_name=search.study_name, storage=search.storage)
        except Exception as exc:  # the report must still be written if the study is gone
            gone = Plot(note=f"The study {search.study_name} could not be loaded from {redact(search.storage)}: {redact(str(exc))}")
            return gone, gone
        # with two objectives optuna needs to be told which one to plot: the first, dev score
        primary: dict[str, Any] = {"target_name": "dev score"}
        if len(study.directions) > 1:
            primary["target"] = lambda t: t.values[0]
        n_complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
        return (
            _history_plot(plt, optuna, study, primary, n_complete),
            _importance_plot(plt, optuna, study, primary, n_complete),
        )
