"""A prompt from MLflow's prompt registry as the app: ``prompts:/NAME/VERSION`` (or ``@ALIAS``) and a dataset file.

The registry keeps the template (text or chat messages, ``{{ var }}`` placeholders as Jinja2 reads
them) and, where it was registered with one, a model config: the model and its sampling params,
which become the legacy model and the app's params unless ``--model`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from migrator.errors import SourceError
from migrator.importers._draft import Draft
from migrator.importers._plain import from_messages
from migrator.models import litellm_id

__all__ = ["from_mlflow"]


def from_mlflow(
    uri: str,
    data: Path,
    *,
    tracking_uri: str,
    out: Path,
    name: str,
    model: str | None = None,
    expected: str | None = None,
    targets: Sequence[str] = (),
) -> Draft:
    """The app from a registry prompt (on ``tracking_uri``) and its golden dataset."""
    from migrator.outputs.tracking import load_registry_prompt

    prompt = load_registry_prompt(tracking_uri, uri)
    legacy = model or (litellm_id(prompt.model) if prompt.model else None)
    if legacy is None:
        named = f"its model config names {prompt.model!r}, which litellm's map does not know" if prompt.model else "it has no model config"
        raise SourceError(f"{uri}: {named}; pass --model with the legacy model's litellm id", where="--from mlflow")
    return from_messages(
        prompt.messages, data, out=out, model=legacy, name=name, source=uri,
        params=prompt.params, expected=expected, targets=targets,
    )
