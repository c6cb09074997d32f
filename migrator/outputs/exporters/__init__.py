"""TODO face of migrator.outputs.exporters."""

from __future__ import annotations

from migrator.outputs.exporters._exporters import FORMATS, promptfoo_config, python_snippet, render

__all__ = [
    "FORMATS",
    "promptfoo_config",
    "python_snippet",
    "render",
]
