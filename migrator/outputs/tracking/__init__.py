"""MLflow tracking: a parent run per migration, a nested run per trial, and the prompt registry.

- ``_tracker``: the ``Tracker`` protocol the CLI hands the search's callbacks to;
  ``NullTracker`` (records nothing) and ``MlflowTracker``, which writes from a background
  thread and raises ``TrackingError`` from ``finish`` if MLflow failed.
- ``_worker``: that thread (a queue of tasks, stopped at the first failure).
- ``_mlflow``: what a migration, a trial and a result become in MLflow (tags, params,
  metrics, artifacts), ``import_mlflow``, the one place migrator loads mlflow, and
  ``MLFLOW_ENVIRONMENT``, the settings it loads mlflow with (``migrator ui`` too).
- ``_registry``: ``register_prompt`` and ``download_lockfile``, for ``migrator export``;
  ``load_registry_prompt``, for ``migrator init --from mlflow``.

Used by :mod:`migrator.cli`; mlflow loads only when a tracker starts or the registry is
used, and importing this package changes nothing (not even the environment).
"""

from __future__ import annotations

from migrator.errors import TrackingError
from migrator.outputs.tracking._mlflow import MLFLOW_ENVIRONMENT, landing_page, landing_pages
from migrator.outputs.tracking._registry import RegistryPrompt, download_lockfile, load_registry_prompt, register_prompt
from migrator.outputs.tracking._tracker import MlflowTracker, NullTracker, Tracker

__all__ = [
    "MLFLOW_ENVIRONMENT",
    "MlflowTracker",
    "NullTracker",
    "RegistryPrompt",
    "Tracker",
    "TrackingError",
    "download_lockfile",
    "landing_page",
    "landing_pages",
    "load_registry_prompt",
    "register_prompt",
]
