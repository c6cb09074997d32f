"""A winner in MLflow after the run: registered as a prompt, or its lockfile fetched back.

Used by ``migrator export`` (``--format mlflow``, and an MLflow run id as the source).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from migrator.outputs.tracking._mlflow import mlflow_client

__all__ = ["download_lockfile", "register_prompt"]

# the call params MLflow's prompt registry keeps as the prompt's model config
_MODEL_CONFIG_PARAMS = ("temperature", "top_p", "max_tokens")


def register_prompt(
    tracking_uri: str, winner: Mapping[str, Any], *, name: str | None = None, alias: str = "production"
) -> tuple[str, int]:
    """Register the winner's prompt (template + model config) in MLflow's prompt registry.

    Returns the prompt's name and the new version, which ``alias`` now points to.
    """
    client = mlflow_client(tracking_uri, registry_uri=tracking_uri)
    prompt_name = name or f"{winner['name']}-prompt"
    version = client.register_prompt(
        prompt_name,
        template=[dict(m) for m in winner["messages"]],
        commit_message=f"migrator winner for {winner['name']}: {winner['model']} · {winner['prompt_id']}",
        tags=_prompt_tags(winner),
        model_config=_model_config(winner),
    )
    client.set_prompt_alias(prompt_name, alias=alias, version=int(version.version))
    return prompt_name, int(version.version)


def download_lockfile(tracking_uri: str, run_id: str, dest: Path) -> Path:
    """The winner.yaml logged on a migration's parent run."""
    return Path(mlflow_client(tracking_uri).download_artifacts(run_id, "winner.yaml", str(dest)))


def _model_config(winner: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(winner.get("params") or {})
    config = {k: v for k, v in params.items() if k in _MODEL_CONFIG_PARAMS}
    config["model_name"] = str(winner["model"])
    return config


def _prompt_tags(winner: Mapping[str, Any]) -> dict[str, str]:
    """What the registry shows of the winner: where it came from, how it is called, how it scored."""
    demos = winner.get("demos") or {}
    return {
        "migrator.spec_hash": str(winner.get("spec_hash", "")),
        "migrator.prompt_id": str(winner.get("prompt_id", "")),
        "migrator.model": str(winner["model"]),
        "migrator.mode": str((winner.get("endpoint") or {}).get("mode", "chat")),
        "migrator.demos": f"{demos.get('k', 0)} ({demos.get('strategy', 'none')})",
        "migrator.test_score": str((winner.get("scores") or {}).get("test")),
    }
