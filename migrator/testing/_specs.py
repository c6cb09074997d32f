"""Specs for tests and examples: a small sentiment migration on the fake provider."""

from __future__ import annotations

from typing import Any

__all__ = ["base_spec"]


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A spec (as a dict) migrating a fake sentiment app; top-level mappings in ``overrides`` are merged."""
    spec: dict[str, Any] = {
        "name": "fake-sentiment",
        "app": {
            "model": "fake/down",
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the review."},
                {"role": "user", "content": "Review: {{ review }}"},
            ],
            "params": {"temperature": 0.0, "max_tokens": 5},
        },
        "dataset": {
            "path": "reviews.jsonl",
            "id_field": "id",
            "expected_field": "label",
            "input_fields": ["review"],
            "split": {"train": 0.2, "dev": 0.5, "test": 0.3},
        },
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": ["fake/weak", "fake/fewshot"],
        "search_space": {"demos": {"k": [0, 2, 4]}, "max_retries": 0, "chunk_size": 10},
        "budget": {"trials": 10},
        "seed": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
