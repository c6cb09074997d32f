"""One migration, as steps: prepare (inputs checked, nothing called), rewrites, the search on
dev, the verdict on test.

- ``_prepare``: ``prepare`` loads and checks spec, template, dataset and keys;
  ``build_setup`` and ``endpoint_for`` say how each target is called.
- ``_rewrites``: prompt rewrites per target family before the search.
- ``_verdict``: ``judge_on_test`` scores the naive migrations and the finalists on the
  held-out test split and pairs the winner against them.
- ``_shared``: the study every process of a migration shares: ``set_up_study`` (rewrites
  and warm starts, once), ``join_migration`` (a worker's trials, no verdict).
- ``_legacy``: the app as it runs today, called: ``legacy_call``; ``label_with_legacy``, the legacy
  model's replies as the expected outputs (``dataset.labels: legacy``), a ``Labelled``.
- ``_run``: ``run_migration`` ties the steps together and returns a ``MigrationResult``.
- ``_plan``: ``plan_migration``, what a run would do and spend, before any call
  (``migrator run --dry-run``): a ``Plan`` of candidates, space, budget and ``Stage``\ s.

Returns data only; :mod:`migrator.outputs` writes it and :mod:`migrator.cli` shows it.
"""

from __future__ import annotations

from migrator.migration._legacy import Labelled, label_with_legacy, legacy_call
from migrator.migration._plan import (
    CallPrice,
    Plan,
    PromptPlan,
    Stage,
    TargetPlan,
    calls_per_scored_example,
    plan_migration,
)
from migrator.migration._prepare import (
    Prepared,
    build_setup,
    default_out_paths,
    endpoint_for,
    judged,
    load_template,
    prepare,
)
from migrator.migration._run import MigrationResult, run_migration
from migrator.migration._shared import join_migration
from migrator.migration._verdict import SAMPLES, Evaluated, Noise, Verdict, judge_on_test, judge_report, scored

__all__ = [
    "SAMPLES",
    "CallPrice",
    "Evaluated",
    "Labelled",
    "MigrationResult",
    "Noise",
    "Plan",
    "Prepared",
    "PromptPlan",
    "Stage",
    "TargetPlan",
    "Verdict",
    "build_setup",
    "calls_per_scored_example",
    "default_out_paths",
    "endpoint_for",
    "join_migration",
    "judge_on_test",
    "judge_report",
    "judged",
    "label_with_legacy",
    "legacy_call",
    "load_template",
    "plan_migration",
    "prepare",
    "run_migration",
    "scored",
]
