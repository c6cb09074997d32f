"""The migration's outputs: summary.json and the winner lockfile (winner.yaml).

``summary_dict`` and ``winner_dict`` are pure; ``write_atomic`` is the one writer, so a
crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from migrator import __version__
from migrator.outputs._lockfile import LABELS_EXPECTED, LABELS_FILE, LABELS_ID, LABELS_REFERENCE, lockfile_of
from migrator.redaction import redact

if TYPE_CHECKING:
    from migrator.migration import Evaluated, MigrationResult
    from migrator.stats import PairedTest

__all__ = ["LABELS_FILE", "candidate_rows", "labels_jsonl", "summary_dict", "winner_dict", "write_atomic", "write_outputs"]


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; outputs are read by CI jobs and web servers too
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact(text))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _evaluated(ev: Evaluated | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    c = ev.config
    return {
        "model": c.model,
        "prompt_id": c.prompt_id,
        "params": dict(c.params),
        "demos": c.demos,
        "demo_strategy": c.demo_strategy,
        "mode": c.mode,
        "label": c.label(),
        "trial": ev.trial,
        "dev_score": ev.dev.score if ev.dev else None,
        "dev_n": ev.dev.n if ev.dev else None,
        "test_score": ev.test.score,
        "test_ci": list(ev.test_ci),
        "test_n": ev.test.n,
        "test_failed": ev.test.failed,
        "cost_usd_per_example": ev.test.cost_usd_per_example,
        "latency_p50_s": ev.test.latency_p50_s,
        # a config at a temperature above 0: its score per seeded sample, mean and spread
        **({"samples": ev.noise.as_dict()} if ev.noise is not None else {}),
    }


def candidate_rows(result: MigrationResult) -> list[dict[str, Any]]:
    """Each prompt candidate with its origin, text and dev scores (why the winner won)."""
    rows = []
    for cand in result.prompts.values():
        scores = [o.summary.score for o in result.search.trials if o.state == "complete" and o.config.prompt_id == cand.id]
        rows.append(
            {
                "prompt_id": cand.id,
                "origin": dict(cand.origin),
                "text": cand.template.text(),
                "trials": len(scores),
                "best_dev_score": max(scores) if scores else None,
                "mean_dev_score": sum(scores) / len(scores) if scores else None,
            }
        )
    return rows


def _paired(paired: PairedTest | None) -> dict[str, Any] | None:
    if paired is None:
        return None
    return {
        "mean_diff": paired.mean_diff,
        "ci": list(paired.ci),
        "p_value": paired.p_value,
        "n": paired.n,
        "improved": paired.better,
        "regressed": paired.worse,
    }


def _sampled_without_seed(result: MigrationResult) -> list[str]:
    """Models scored at a temperature above 0 with no request seed (their provider takes none)."""
    params = [dict(o.config.params) for o in result.search.trials]
    models = [o.config.model for o in result.search.trials]
    return sorted({m for m, p in zip(models, params, strict=True) if float(p.get("temperature", 1.0) or 0) > 0 and "seed" not in p})


def summary_dict(result: MigrationResult, mlflow: Mapping[str, Any], files: Mapping[str, Path]) -> dict[str, Any]:
    """Everything a reviewer or a tool reads about the run (fields in DESIGN.md)."""
    from migrator.migration import judge_report

    stats = result.stats
    return {
        "migrator_version": __version__,
        "name": result.spec.name,
        "spec_file": str(result.spec.source_file),
        "spec_hash": result.spec.spec_hash(),
        "legacy_model": result.spec.app.model,
        "targets": [t.model for t in result.spec.targets],
        "objective": list(result.spec.objective),
        "metric": result.spec.metric.model_dump(mode="json", exclude_none=True),
        "baseline": _evaluated(result.verdict.baseline),
        "winner": _evaluated(result.verdict.winner),
        "legacy": _evaluated(result.verdict.legacy),
        "legacy_note": result.verdict.legacy_note or None,
        "baselines_by_target": {m: _evaluated(ev) for m, ev in result.verdict.baselines_by_target.items()},
        "finalists": [_evaluated(ev) for ev in result.verdict.finalists],
        "winner_vs_baseline": _paired(result.verdict.paired),
        "winner_vs_same_target": _paired(result.verdict.paired_same_target),
        "sampling_note": result.verdict.sampling_note or None,
        "space_note": result.prepared.space_note or None,
        "labels": result.labels.as_dict() if result.labels else {"source": "dataset"},
        "judge": judge_report(result.prepared, result.verdict),
        "pareto": [
            {
                "trial": o.number,
                "label": o.config.label(),
                "dev_score": o.summary.score,
                "cost_usd_per_example": o.summary.cost_usd_per_example,
                "latency_p50_s": o.summary.latency_p50_s,
            }
            for o in result.pareto
        ],
        "candidates": candidate_rows(result),
        "rejected_candidates": [r.as_dict() for r in result.rejected],
        "trials": dict(result.search.counts),
        "stopped_by": result.verdict.stopped_by,
        "space_exhausted": result.search.exhausted,
        "llm_calls": {k: stats[k] for k in ("made", "cached", "failed", "retried", "sent")},
        "sampled_without_seed": _sampled_without_seed(result),
        "tokens": {"prompt": stats["prompt_tokens"], "completion": stats["completion_tokens"]},
        "cost_usd": stats["cost_usd"],
        "budget": {
            **result.spec.budget.model_dump(mode="json"),
            # what the study has spent, over every run that resumed it
            "spent": {"calls": result.spent.calls, "usd": result.spent.usd, "minutes": round(result.spent.seconds / 60, 3)},
        },
        "wall_s": round(result.wall_s, 3),
        "splits": {k: len(result.prepared.splits.get(k)) for k in ("train", "dev", "test")},
        "study": {"storage": redact(result.search.storage), "name": result.search.study_name},
        "mlflow": dict(mlflow),
        "files": {k: str(v) for k, v in files.items()},
    }


def winner_dict(result: MigrationResult, out_dir: Path) -> dict[str, Any] | None:
    """The winner lockfile as plain data (see :class:`~migrator.outputs.WinnerLock`), or None."""
    lock = lockfile_of(result, out_dir)
    return lock.dump() if lock is not None else None


def labels_jsonl(result: MigrationResult) -> str | None:
    """With ``labels: legacy``, the labelled rows (id, inputs, the legacy reply as ``expected``) the lockfile scores on."""
    if result.labels is None:
        return None
    lines = []
    for ex in result.prepared.examples:
        row = {LABELS_ID: ex.id, **ex.inputs, LABELS_EXPECTED: ex.expected}
        if ex.reference is not None:
            row[LABELS_REFERENCE] = ex.reference
        lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return "".join(lines)


def write_outputs(
    out_dir: Path, summary: Mapping[str, Any], winner: Mapping[str, Any] | None, labels: str | None = None
) -> dict[str, Path]:
    """Write summary.json, winner.yaml and, with labels: legacy, the labelled rows; returns their paths."""
    paths = {"summary": out_dir / "summary.json"}
    if labels is not None:  # before winner.yaml, which scores on it
        paths["labels"] = out_dir / LABELS_FILE
        write_atomic(paths["labels"], labels)
    write_atomic(paths["summary"], json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    if winner is not None:
        paths["winner"] = out_dir / "winner.yaml"
        write_atomic(paths["winner"], yaml.safe_dump(dict(winner), sort_keys=False, allow_unicode=True, width=100))
    return paths
