"""Calling models: the async client every evaluation, search and candidate generator uses.

Inside:

- ``_types``: the boundary objects (``Endpoint``, ``LLMRequest``, ``LLMResponse``,
  ``CallStats``, ``Limits``), the ``LLMClient`` protocol the rest of migrator takes and
  ``request_key``, the hash every cache key is.
- ``_client``: ``LiteLLMClient``: cache, bounded concurrency, retries with backoff,
  budgets through a ledger, call counters.
- ``_transports``: how an attempt leaves: the ``Transport`` protocol, the direct HTTP
  road, the litellm road, ``DefaultTransport`` choosing between them, and
  ``MockTransport`` for tests (a handler function, no patching).
- ``_errors``: the one place litellm's, aiohttp's and asyncio's exceptions and HTTP
  error statuses become :mod:`migrator.errors`' ``LLMError``s, secrets redacted.
- ``_reply``: the one reader of chat and text completions, whichever road they took.
- ``_cache``: the content-addressed response caches behind ``Cache``: ``ResponseCache``
  (one SQLite file), ``PostgresCache`` (one database for many machines) and
  ``open_cache``, which picks one from a path or URL; and the WAL set-up the study's
  storage shares (``SQLITE_ENGINE_KWARGS``, ``wal_on_connect``).
- ``_ledger``: what a study has spent (``MemoryLedger``, ``StoredLedger``), so budgets
  hold across kills and resumes.

Used by :mod:`migrator.evaluate`, :mod:`migrator.candidates`, :mod:`migrator.search`,
:mod:`migrator.migration`, :mod:`migrator.cli` and the exporters (``Endpoint``).
litellm itself is imported only through :func:`migrator.models.import_litellm`.
"""

from __future__ import annotations

from migrator.llm._cache import (
    PG_ENGINE_KWARGS,
    SQLITE_ENGINE_KWARGS,
    Cache,
    PostgresCache,
    ResponseCache,
    db_errors,
    open_cache,
    sql_engine,
    wal_on_connect,
)
from migrator.llm._client import LiteLLMClient
from migrator.llm._ledger import Ledger, MemoryLedger, Spent, StoredLedger
from migrator.llm._transports import (
    DefaultTransport,
    HTTPTransport,
    LiteLLMTransport,
    MockHandler,
    MockTransport,
    Transport,
)
from migrator.llm._types import (
    CallStats,
    Endpoint,
    Limits,
    LLMClient,
    LLMRequest,
    LLMResponse,
    RawReply,
    request_key,
)

__all__ = [
    "PG_ENGINE_KWARGS",
    "SQLITE_ENGINE_KWARGS",
    "Cache",
    "CallStats",
    "DefaultTransport",
    "Endpoint",
    "HTTPTransport",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "Ledger",
    "Limits",
    "LiteLLMClient",
    "LiteLLMTransport",
    "MemoryLedger",
    "MockHandler",
    "MockTransport",
    "PostgresCache",
    "RawReply",
    "ResponseCache",
    "Spent",
    "StoredLedger",
    "Transport",
    "db_errors",
    "open_cache",
    "request_key",
    "sql_engine",
    "wal_on_connect",
]
