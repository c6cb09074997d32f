"""TODO face of migrator.llm."""

from __future__ import annotations

from migrator.llm._cache import SQLITE_ENGINE_KWARGS, ResponseCache, request_key, use_wal, wal_on_connect
from migrator.llm._client import (
    CallStats,
    Endpoint,
    Limits,
    LiteLLMClient,
    LLMClient,
    LLMRequest,
    LLMResponse,
)
from migrator.llm._ledger import Ledger, MemoryLedger, Spent, StoredLedger
from migrator.models import import_litellm

__all__ = [
    "SQLITE_ENGINE_KWARGS",
    "CallStats",
    "Endpoint",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "Ledger",
    "Limits",
    "LiteLLMClient",
    "MemoryLedger",
    "ResponseCache",
    "Spent",
    "StoredLedger",
    "import_litellm",
    "request_key",
    "use_wal",
    "wal_on_connect",
]
