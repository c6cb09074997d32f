"""What a migration leaves behind: summary.json, winner.yaml, the MLflow record, the report, exports.

- ``summary_dict`` / ``write_outputs`` (``_files``): summary.json and winner.yaml (and, with
  ``labels: legacy``, the labelled rows: ``labels_jsonl``), written atomically by the one writer,
  ``write_atomic``.
- ``WinnerLock`` (``_lockfile``): the lockfile's schema, built from a result
  (``lockfile_of``), read back and checked (``read_lockfile``), and rebuilt for re-scoring
  (``load_lockfile``, ``evaluate_lockfile``), all in one place.
- Subpackages: ``tracking`` (MLflow), ``report`` (report.html), ``exporters`` (python,
  promptfoo, mlflow and other formats of the lockfile).

Used by the CLI; depends on :mod:`migrator.migration` and below, never the other way.
"""

from __future__ import annotations

from migrator.outputs._files import candidate_rows, labels_jsonl, summary_dict, winner_dict, write_atomic, write_outputs
from migrator.outputs._lockfile import (
    Lockfile,
    WinnerLock,
    evaluate_lockfile,
    load_lockfile,
    lockfile_of,
    read_lockfile,
)

__all__ = [
    "Lockfile",
    "WinnerLock",
    "candidate_rows",
    "evaluate_lockfile",
    "labels_jsonl",
    "load_lockfile",
    "lockfile_of",
    "read_lockfile",
    "summary_dict",
    "winner_dict",
    "write_atomic",
    "write_outputs",
]
