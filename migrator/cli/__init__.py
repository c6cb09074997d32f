"""TODO face of migrator.cli."""

from __future__ import annotations

from migrator.cli._commands import main

__all__ = [
    "main",
]
