"""One migration, as steps: prepare (inputs checked, nothing called), rewrites, the search on
dev, the verdict on test.

- ``_prepare``: ``prepare`` loads and checks spec, template, dataset and keys;
  ``build_setup`` and ``endpoint_for`` say how each target is called.
- ``_rewrites``: prompt rewrites per target family before the search.
- ``_verdict``: ``judge_on_test`` scores the naive migrations and the finalists on the
  held-out test split and pairs the winner against them.
- ``_shared``: the study every process of a migration shares: ``set_up_study`` (rewrites
  and warm starts, once), ``join_migration`` (a worker's trials, no verdict).
- ``_run``: ``run_migration`` ties the steps together and returns a ``MigrationResult``.

Returns data only; :mod:`migrator.outputs` writes it and :mod:`migrator.cli` shows it.
"""

from __future__ import annotations

from migrator.migration._prepare import Prepared, build_setup, default_out_paths, endpoint_for, load_template, prepare
from migrator.migration._run import MigrationResult, run_migration
from migrator.migration._shared import join_migration
from migrator.migration._verdict import SAMPLES, Evaluated, Noise, Verdict, judge_on_test, scored

__all__ = [
    "SAMPLES",
    "Evaluated",
    "MigrationResult",
    "Noise",
    "Prepared",
    "Verdict",
    "build_setup",
    "default_out_paths",
    "endpoint_for",
    "join_migration",
    "judge_on_test",
    "load_template",
    "prepare",
    "run_migration",
    "scored",
]
