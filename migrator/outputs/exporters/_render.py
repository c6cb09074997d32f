"""One entry point for every text format of the winner lockfile."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from migrator.outputs.exporters._promptfoo import promptfoo_config
from migrator.outputs.exporters._python import python_snippet

# mlflow is not text: `migrator export` registers the prompt in MLflow instead of rendering
FORMATS = ("yaml", "json", "python", "promptfoo", "mlflow")


def render(winner: Mapping[str, Any], fmt: str, tests: Sequence[Mapping[str, Any]] = ()) -> str:
    """The lockfile in one of the text formats."""
    if fmt == "yaml":
        return str(yaml.safe_dump(dict(winner), sort_keys=False, allow_unicode=True, width=100))
    if fmt == "json":
        return json.dumps(winner, indent=2, ensure_ascii=False) + "\n"
    if fmt == "python":
        return python_snippet(winner)
    if fmt == "promptfoo":
        return promptfoo_config(winner, tests)
    raise ValueError(f"The 'fmt' parameter must be one of {', '.join(FORMATS[:-1])}. Got {fmt!r} instead.")
