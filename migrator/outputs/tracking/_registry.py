"""A winner in MLflow after the run: registered as a prompt, or its lockfile fetched back; a registry prompt read.

Used by ``migrator export`` (``--format mlflow``, and an MLflow run id as the source) and by
``migrator init --from mlflow`` (``load_registry_prompt``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.errors import SourceError
from migrator.outputs.tracking._mlflow import mlflow_client

if TYPE_CHECKING:
    from migrator.outputs import WinnerLock

__all__ = ["RegistryPrompt", "download_lockfile", "load_registry_prompt", "register_prompt"]

# the call params MLflow's prompt registry keeps as the prompt's model config
_MODEL_CONFIG_PARAMS = ("temperature", "top_p", "max_tokens")


def register_prompt(
    tracking_uri: str, lock: WinnerLock, *, name: str | None = None, alias: str = "production"
) -> tuple[str, int]:
    """Register the winner's prompt (template + model config) in MLflow's prompt registry.

    Returns the prompt's name and the new version, which ``alias`` now points to.
    """
    client = mlflow_client(tracking_uri, registry_uri=tracking_uri)
    prompt_name = name or f"{lock.name}-prompt"
    version = client.register_prompt(
        prompt_name,
        template=[{"role": m.role, "content": m.content} for m in lock.messages],
        commit_message=f"migrator winner for {lock.name}: {lock.model} · {lock.prompt_id}",
        tags=_prompt_tags(lock),
        model_config=_model_config(lock),
    )
    client.set_prompt_alias(prompt_name, alias=alias, version=int(version.version))
    return prompt_name, int(version.version)


def download_lockfile(tracking_uri: str, run_id: str, dest: Path) -> Path:
    """The winner.yaml logged on a migration's parent run."""
    return Path(mlflow_client(tracking_uri).download_artifacts(run_id, "winner.yaml", str(dest)))


def _model_config(lock: WinnerLock) -> dict[str, Any]:
    config = {k: v for k, v in lock.params.items() if k in _MODEL_CONFIG_PARAMS}
    config["model_name"] = lock.model
    return config


def _prompt_tags(lock: WinnerLock) -> dict[str, str]:
    """What the registry shows of the winner: where it came from, how it is called, how it scored."""
    return {
        "migrator.spec_hash": lock.spec_hash or "",
        "migrator.prompt_id": lock.prompt_id,
        "migrator.model": lock.model,
        # a lockfile that names no mode is read as a chat one (see Lockfile.config)
        "migrator.mode": lock.endpoint.mode or "chat",
        "migrator.demos": f"{lock.demos.k} ({lock.demos.strategy})",
        "migrator.test_score": str(lock.scores.test if lock.scores else None),
    }


@dataclass(frozen=True)
class RegistryPrompt:
    """A prompt version from MLflow's registry: its messages, and the model and params of its model config."""

    uri: str
    messages: tuple[tuple[str, str], ...]
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def load_registry_prompt(tracking_uri: str, uri: str) -> RegistryPrompt:
    """The prompt at ``prompts:/NAME/VERSION`` (or ``prompts:/NAME@ALIAS``); a text prompt is one user message."""
    if not uri.startswith("prompts:/"):
        raise SourceError(f"expected prompts:/NAME/VERSION or prompts:/NAME@ALIAS, got {uri!r}", where="--from mlflow")
    client = mlflow_client(tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.load_prompt(uri)
    except Exception as exc:  # MLflow raises its own RestException / MlflowException for a missing prompt
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(f"cannot load {uri} from {tracking_uri}: {message}", where="--from mlflow") from None
    template = version.template
    if isinstance(template, str):
        messages: tuple[tuple[str, str], ...] = (("user", template),)
    else:
        try:
            messages = tuple((str(m["role"]), str(m["content"])) for m in template)
        except (KeyError, TypeError):
            raise SourceError(f"{uri}: a chat template whose messages are not {{role, content}}", where="--from mlflow") from None
    config = dict(version.model_config or {})
    model = config.pop("model_name", None)
    provider = config.pop("provider", None)
    if model and provider and "/" not in str(model):
        model = f"{provider}/{model}"
    params = {k: config[k] for k in _MODEL_CONFIG_PARAMS if config.get(k) is not None}
    return RegistryPrompt(uri, messages, str(model) if model else None, params)
