"""The prompt candidates and few-shot demos the search chooses among.

Candidates are made once per migration: the original prompt and deterministic
transforms of it (``_transforms``: :data:`TRANSFORMS`, :func:`apply_transforms`), and,
with a proposer model, DSPy rewrites per target family (``_rewrites``:
:func:`propose_rewrites`, :func:`validate_rewrite`) and, during the search, reflective
rewrites from the best config's failures (``_reflection``: :func:`propose_reflection`). Demo pools (``_demos``:
:class:`DemoPool`) pick k train examples per trial: random, stratified by label, or the
nearest neighbours of each input.

Used by ``migration`` (makes the candidates), ``search`` (picks among them and their
demos), ``outputs`` (demos of the lockfile, the report) and tracking (logs them).
dspy and scikit-learn are imported only when a rewrite or a kNN demo is asked for.
"""

from __future__ import annotations

from migrator.candidates._demos import DemoPool
from migrator.candidates._reflection import Reflected, propose_reflection
from migrator.candidates._rewrites import Failure, Rejection, Rewrites, propose_rewrites, validate_rewrite
from migrator.candidates._transforms import TRANSFORMS, PromptCandidate, apply_transforms

__all__ = [
    "TRANSFORMS",
    "DemoPool",
    "Failure",
    "PromptCandidate",
    "Reflected",
    "Rejection",
    "Rewrites",
    "apply_transforms",
    "propose_reflection",
    "propose_rewrites",
    "validate_rewrite",
]
