"""One entry point for every text format of the winner lockfile."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from migrator.outputs.exporters._promptfoo import promptfoo_config
from migrator.outputs.exporters._python import python_snippet

if TYPE_CHECKING:
    from migrator.outputs import WinnerLock

# mlflow is not text: `migrator export` registers the prompt in MLflow instead of rendering
FORMATS = ("yaml", "json", "python", "promptfoo", "mlflow")


def render(lock: WinnerLock, fmt: str, tests: Sequence[Mapping[str, Any]] = ()) -> str:
    """The lockfile in one of the text formats (``tests``: promptfoo's test cases)."""
    if fmt == "yaml":
        return str(yaml.safe_dump(lock.dump(), sort_keys=False, allow_unicode=True, width=100))
    if fmt == "json":
        return json.dumps(lock.dump(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "python":
        return python_snippet(lock)
    if fmt == "promptfoo":
        return promptfoo_config(lock, tests)
    raise ValueError(f"The 'fmt' parameter must be one of {', '.join(FORMATS[:-1])}. Got {fmt!r} instead.")
