"""The one place foreign exceptions become migrator's, with the secrets they quote removed.

Transports run their work inside :func:`mapped_errors`; what escapes it is an
:class:`~migrator.errors.LLMError`::

    litellm / aiohttp / asyncio                      migrator
    ─────────────────────────────────────────────    ─────────────────────────────────
    litellm.RateLimitError, HTTP 429             →   LLMRateLimitError (retry_after)
    TimeoutError, litellm.Timeout, HTTP 408      →   LLMTimeoutError
    litellm.APIError, HTTP 409 / 5xx, a dropped  →   LLMProviderError
      connection, JSON that does not parse
    litellm's auth, not-found, permission and    →   LLMBadRequestError (not retried)
      bad-request errors, other HTTP 4xx

An error status of the direct road is raised as :class:`HTTPStatusError` inside the
block, so statuses and exceptions are mapped in the same place.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from migrator.errors import LLMBadRequestError, LLMError, LLMProviderError, LLMRateLimitError, LLMTimeoutError
from migrator.redaction import redact

__all__ = ["HTTPStatusError", "mapped_errors"]

_ERROR_BODY_CHARS = 500


class HTTPStatusError(Exception):
    """An OpenAI-compatible server answered with an error status (raised for ``mapped_errors``)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        super().__init__(f"HTTP {status}")


@contextmanager
def mapped_errors(model: str, api_key: str | None = None) -> Iterator[None]:
    """Turn whatever the block raises into an ``LLMError`` whose message never shows ``api_key``."""
    secrets = (api_key,) if api_key else ()
    try:
        yield
    except LLMError:
        raise
    except HTTPStatusError as exc:
        raise _from_status(exc, model, secrets) from exc
    except TimeoutError as exc:  # asyncio's and aiohttp's timeouts are TimeoutError
        raise LLMTimeoutError(f"no answer within the timeout ({type(exc).__name__})", model=model) from exc
    except Exception as exc:
        raise _from_exception(exc, model, secrets) from exc


def _from_exception(exc: Exception, model: str, secrets: tuple[str, ...]) -> LLMError:
    # litellm's exceptions can only be raised once litellm is loaded; looking it up here
    # rather than importing it keeps the direct road from paying seconds for the import.
    litellm = sys.modules.get("litellm")
    if litellm is not None:
        message = _clean(str(exc), secrets)
        if isinstance(exc, litellm.RateLimitError):
            return LLMRateLimitError(message, model=model, retry_after=_retry_after(exc))
        if isinstance(exc, litellm.Timeout):
            return LLMTimeoutError(message, model=model)
        refused = (
            litellm.AuthenticationError,
            litellm.NotFoundError,
            litellm.PermissionDeniedError,
            litellm.BadRequestError,
        )
        if isinstance(exc, refused):
            return LLMBadRequestError(message, model=model)
        if isinstance(exc, litellm.APIError):
            return LLMProviderError(message, model=model)
    # connection resets, malformed JSON and the like, from below litellm or from aiohttp
    return LLMProviderError(_clean(f"{type(exc).__name__}: {exc}", secrets), model=model)


def _from_status(exc: HTTPStatusError, model: str, secrets: tuple[str, ...]) -> LLMError:
    """The error an HTTP error status of an OpenAI-compatible server stands for."""
    message = _clean(f"HTTP {exc.status}: {_error_text(exc.body)[:_ERROR_BODY_CHARS]}", secrets)
    if exc.status == 429:
        return LLMRateLimitError(message, model=model, retry_after=_retry_after_header(exc.headers))
    if exc.status == 408:
        return LLMTimeoutError(message, model=model)
    if exc.status == 409 or exc.status >= 500:
        return LLMProviderError(message, model=model)
    return LLMBadRequestError(message, model=model)


def _error_text(body: bytes) -> str:
    """The message of an OpenAI-style error body, else the body as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        detail = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text
    return str(detail.get("message", detail) if isinstance(detail, dict) else detail)


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    # redact() knows secrets by their variable's name; the key this call sent is
    # removed whatever its variable is called.
    for secret in secrets:
        text = text.replace(secret, "***")
    return redact(text)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None) or {}
    return _retry_after_header(headers)


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())
