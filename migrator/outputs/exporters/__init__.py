"""The winner lockfile rendered for other tools: YAML, JSON, a Python module, promptfoo.

Pure functions from the checked lockfile (a ``WinnerLock``) to text; ``cli`` (``migrator
export``) writes the result, and registers the prompt in MLflow for the ``mlflow`` format.

- ``_render``: :func:`render` and :data:`FORMATS`, one entry point for every format.
- ``_python``: :func:`python_snippet`, a standalone module that sends the requests
  migrator scored.
- ``_promptfoo``: :func:`promptfoo_config`, a promptfoo config that scores the same
  requests with the same metric.
"""

from __future__ import annotations

from migrator.outputs.exporters._promptfoo import promptfoo_config
from migrator.outputs.exporters._python import python_snippet
from migrator.outputs.exporters._render import FORMATS, render

__all__ = [
    "FORMATS",
    "promptfoo_config",
    "python_snippet",
    "render",
]
