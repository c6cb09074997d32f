"""The one choke point: every foreign failure becomes an LLMError of the right kind, secrets removed."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from migrator.errors import LLMBadRequestError, LLMError, LLMProviderError, LLMRateLimitError, LLMTimeoutError
from migrator.llm._errors import HTTPStatusError, mapped_errors
from migrator.models import import_litellm

KEY = "sk-the-key-this-call-sent"


def _mapped(exc: BaseException) -> LLMError:
    with pytest.raises(LLMError) as raised, mapped_errors("openai/m", KEY):
        raise exc
    assert raised.value.__cause__ is exc
    return raised.value


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, LLMRateLimitError),
        (408, LLMTimeoutError),
        (409, LLMProviderError),
        (500, LLMProviderError),
        (503, LLMProviderError),
        (400, LLMBadRequestError),
        (401, LLMBadRequestError),
        (404, LLMBadRequestError),
    ],
)
def test_an_error_status_is_the_error_it_stands_for(status: int, kind: type[LLMError]) -> None:
    error = _mapped(HTTPStatusError(status, {}, b'{"error": {"message": "the reason"}}'))
    assert type(error) is kind
    assert str(error) == f"openai/m: HTTP {status}: the reason"


def test_retry_after_is_read_as_seconds_milliseconds_or_a_date() -> None:
    def wait(headers: dict[str, str]) -> float | None:
        error = _mapped(HTTPStatusError(429, headers, b"slow down"))
        assert isinstance(error, LLMRateLimitError)
        return error.retry_after

    assert wait({"retry-after": "7"}) == 7.0
    assert wait({"retry-after-ms": "1500"}) == 1.5
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < (wait({"retry-after": in_a_minute}) or 0) <= 60
    assert wait({"retry-after": "soon"}) is None and wait({}) is None


def test_a_body_that_is_not_an_openai_error_is_quoted_as_text() -> None:
    assert str(_mapped(HTTPStatusError(502, {}, b"<html>Bad Gateway</html>"))).endswith("<html>Bad Gateway</html>")


def test_the_key_sent_is_never_in_the_message() -> None:
    error = _mapped(
        HTTPStatusError(401, {}, f'{{"error": {{"message": "Incorrect API key provided: {KEY}"}}}}'.encode())
    )
    assert KEY not in str(error) and "Incorrect API key provided: ***" in str(error)
    assert KEY not in str(_mapped(ConnectionResetError(f"while sending {KEY}")))


def test_timeouts_resets_and_bad_json_are_retryable_faults() -> None:
    assert type(_mapped(TimeoutError())) is LLMTimeoutError
    assert type(_mapped(ConnectionResetError("reset by peer"))) is LLMProviderError
    error = _mapped(ValueError("Expecting value: line 1 column 1"))
    assert type(error) is LLMProviderError and "ValueError: Expecting value" in str(error)
    assert all(e.retryable for e in (_mapped(TimeoutError()), error))


def test_litellm_exceptions_are_mapped_by_kind() -> None:
    litellm = import_litellm()
    response = httpx.Response(429, headers={"retry-after": "3"}, request=httpx.Request("POST", "http://x"))
    limited = _mapped(litellm.RateLimitError("slow down", llm_provider="openai", model="m", response=response))
    assert isinstance(limited, LLMRateLimitError) and limited.retry_after == 3.0
    refused = _mapped(litellm.NotFoundError(message="no such model", llm_provider="openai", model="m"))
    assert type(refused) is LLMBadRequestError and not refused.retryable
    auth = _mapped(litellm.AuthenticationError(message=f"bad key {KEY}", llm_provider="openai", model="m"))
    assert type(auth) is LLMBadRequestError and KEY not in str(auth)
    down = _mapped(litellm.APIConnectionError(message="connection refused", llm_provider="openai", model="m"))
    assert type(down) is LLMProviderError and down.retryable


def test_our_own_errors_pass_through_untouched() -> None:
    original = LLMBadRequestError("max_tokens is too large", model="openai/m")
    with pytest.raises(LLMBadRequestError) as raised, mapped_errors("openai/m"):
        raise original
    assert raised.value is original
