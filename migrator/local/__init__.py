"""TODO face of migrator.local."""

from __future__ import annotations

from migrator.local._server import LOCAL_MODELS, Chunk, LocalModel, LocalServer, assemble, default_cache_dir, model_path

__all__ = [
    "LOCAL_MODELS",
    "Chunk",
    "LocalModel",
    "LocalServer",
    "assemble",
    "default_cache_dir",
    "model_path",
]
