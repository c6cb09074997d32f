"""TODO face of migrator.candidates."""

from __future__ import annotations

from migrator.candidates._candidates import (
    TRANSFORMS,
    DemoPool,
    Failure,
    PromptCandidate,
    Rejection,
    Rewrites,
    apply_transforms,
    propose_rewrites,
    validate_rewrite,
)

__all__ = [
    "TRANSFORMS",
    "DemoPool",
    "Failure",
    "PromptCandidate",
    "Rejection",
    "Rewrites",
    "apply_transforms",
    "propose_rewrites",
    "validate_rewrite",
]
