"""Specs for tests and examples: a small sentiment migration, on the fake provider or the loopback server."""

from __future__ import annotations

from typing import Any

from migrator.spec import merged

__all__ = ["KEY_ENV", "base_spec", "server_spec"]

# the environment variable a server spec's endpoints read their API key from
KEY_ENV = "FAULT_API_KEY"


def _messages() -> list[dict[str, str]]:
    """The legacy app's prompt, new each time: a test may change its copy."""
    return [
        {"role": "system", "content": "Classify the sentiment of the review."},
        {"role": "user", "content": "Review: {{ review }}"},
    ]


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A spec (as a dict) migrating a fake sentiment app; top-level mappings in ``overrides`` are merged."""
    spec: dict[str, Any] = {
        "name": "fake-sentiment",
        "app": {"model": "fake/down", "messages": _messages(), "params": {"temperature": 0.0, "max_tokens": 5}},
        "dataset": {
            "path": "reviews.jsonl",
            "id_field": "id",
            "expected_field": "label",
            "input_fields": ["review"],
            "split": {"train": 0.2, "dev": 0.5, "test": 0.3},
        },
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": ["fake/weak", "fake/fewshot"],
        # the original prompt only (the built-in space adds every transform)
        "search_space": {"demos": {"k": [0, 2, 4]}, "prompt": {"transforms": []}, "max_retries": 0, "chunk_size": 10},
        "budget": {"trials": 10},
        "seed": 0,
    }
    return merged(spec, overrides)


def server_spec(api_base: str, dataset: str, **overrides: Any) -> dict[str, Any]:
    """A migration.yaml (as a mapping) whose legacy model and targets live on the loopback server.

    Top-level mappings in ``overrides`` are merged into the defaults; other values replace them.

    ``fault-fewshot`` is right half the time without demos and always with 2, so the
    search has one best config; ``fault-weak`` is right 40% of the time. Temperature is
    left out of the space so no two configs tie at the top.
    """

    def at_server(model: str) -> dict[str, str]:
        return {"model": model, "api_base": api_base, "api_key_env": KEY_ENV}

    spec: dict[str, Any] = {
        "name": "flaky-provider",
        "app": {**at_server("openai/fault-oracle"), "messages": _messages()},
        "dataset": {"path": dataset, "id_field": "id", "expected_field": "label", "input_fields": ["review"]},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": [at_server("openai/fault-fewshot"), at_server("openai/fault-weak")],
        "search_space": {
            "temperature": None,
            "demos": {"k": [0, 2], "strategies": ["random"]},
            "prompt": {"transforms": []},
            "pruner": "none",
            "chunk_size": 10,
            "max_retries": 4,
            "timeout_s": 2.0,
        },
        "budget": {"trials": 5},
        "seed": 0,
    }
    return merged(spec, overrides)
