"""TODO face of migrator.outputs.tracking."""

from __future__ import annotations

from migrator.outputs.tracking._tracker import MlflowTracker, NullTracker, Tracker, download_lockfile, register_prompt

__all__ = [
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "download_lockfile",
    "register_prompt",
]
