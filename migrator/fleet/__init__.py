"""Fleets: many apps under one folder tree, checked for retiring models and migrated in one command.

- ``_discover``: ``discover`` finds the apps (every ``migration.yaml``; named by folder) and
  the shared defaults of ``fleet.yaml``.
- ``_outputs``: the fleet's plan, ``fleet.json`` and the sortable ``fleet.html``, rebuilt
  from what each app stored.

Retirement dates live in :mod:`migrator.retirement`; the commands in :mod:`migrator.cli`.
"""

from __future__ import annotations

from migrator.fleet._discover import FLEET_FILE, SPEC_FILE, App, Fleet, discover
from migrator.fleet._outputs import PLAN_FILE, fleet_rows, read_plan, write_fleet_outputs, write_plan

__all__ = [
    "FLEET_FILE",
    "PLAN_FILE",
    "SPEC_FILE",
    "App",
    "Fleet",
    "discover",
    "fleet_rows",
    "read_plan",
    "write_fleet_outputs",
    "write_plan",
]
