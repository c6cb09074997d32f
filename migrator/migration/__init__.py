"""TODO face of migrator.migration."""

from __future__ import annotations

from migrator.migration._run import (
    Evaluated,
    MigrationResult,
    Prepared,
    build_setup,
    default_out_paths,
    endpoint_for,
    evaluate_lockfile,
    load_lockfile,
    load_template,
    prepare,
    run_migration,
)

__all__ = [
    "Evaluated",
    "MigrationResult",
    "Prepared",
    "build_setup",
    "default_out_paths",
    "endpoint_for",
    "evaluate_lockfile",
    "load_lockfile",
    "load_template",
    "prepare",
    "run_migration",
]
