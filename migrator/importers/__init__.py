"""The ways in for a team with no spec: ``migrator init`` reads what the team has and drafts the app.

- ``from_plain``: a prompt file, a dataset file and the legacy model's name (``_plain``).
- ``from_chat_log``: OpenAI chat-format JSONL, the template recovered from the lines (``_chatlog``,
  ``_template``).
- ``from_promptfoo``: a promptfoo suite (promptfooconfig.yaml): its first prompt on its first
  provider, its tests as the rows, their assertions as the expected values (``_promptfoo``).
- ``from_mlflow``: a prompt from MLflow's prompt registry and a dataset file (``_mlflow``).

Each returns a ``Draft`` (``_draft``): the prompt, the rows, the guessed metric and the notes on
what could not be carried over. ``render`` gives the text of the files; the CLI writes them.
"""

from __future__ import annotations

from migrator.importers._chatlog import from_chat_log
from migrator.importers._draft import DATA_FILE, PROMPT_FILE, SPEC_FILE, Draft, advice, guess_metric, render, slug
from migrator.importers._mlflow import from_mlflow
from migrator.importers._plain import from_plain
from migrator.importers._promptfoo import from_promptfoo
from migrator.importers._template import Inferred, infer_template

__all__ = [
    "DATA_FILE",
    "PROMPT_FILE",
    "SPEC_FILE",
    "Draft",
    "Inferred",
    "advice",
    "from_chat_log",
    "from_mlflow",
    "from_plain",
    "from_promptfoo",
    "guess_metric",
    "infer_template",
    "render",
    "slug",
]
