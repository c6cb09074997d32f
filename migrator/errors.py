"""Errors raised by migrator.

Hierarchy::

    MigratorError
    ├── InputError (ValueError)         bad input: exit code 2
    │   ├── SpecError                   migration.yaml / search space
    │   ├── DatasetError                golden dataset files
    │   ├── TemplateError               prompt templates
    │   └── SourceError                 what `migrator init` imports (chat log, promptfoo suite, ...)
    ├── LLMError                        a model call failed
    │   ├── LLMRateLimitError           429; carries retry_after
    │   ├── LLMTimeoutError             no answer in time
    │   ├── LLMProviderError            5xx, broken connection, malformed reply
    │   └── LLMBadRequestError          the provider refused the request (not retried)
    ├── LocalModelError                 local weights or llama.cpp server
    ├── TrackingError (RuntimeError)    MLflow could not record the run: exit code 1
    ├── StorageError (RuntimeError)     the study's database or the shared cache failed: exit code 1
    └── BudgetExhausted                 a budget (trials, USD, calls, minutes) is spent
"""

from __future__ import annotations

from migrator.redaction import redact

__all__ = [
    "BudgetExhausted",
    "DatasetError",
    "InputError",
    "JudgeFailed",
    "LLMBadRequestError",
    "LLMError",
    "LLMProviderError",
    "LLMRateLimitError",
    "LLMTimeoutError",
    "LocalModelError",
    "MigratorError",
    "SourceError",
    "SpecError",
    "StorageError",
    "TemplateError",
    "TrackingError",
]


class MigratorError(Exception):
    """Base of every error migrator raises on purpose."""


class InputError(MigratorError, ValueError):
    """Input the user can fix; the message names the file and the field or line."""

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None) -> None:
        self.file = file
        self.where = where
        prefix = ""
        if file:
            prefix = f"{file}"
            if where:
                prefix += f": {where}"
            prefix += ": "
        elif where:
            prefix = f"{where}: "
        super().__init__(prefix + message)


class SpecError(InputError):
    """migration.yaml or a search space file is invalid."""


class DatasetError(InputError):
    """The golden dataset cannot be used."""


class TemplateError(InputError):
    """A prompt template is invalid or cannot be rendered."""


class SourceError(InputError):
    """A chat log, promptfoo suite or registry prompt ``migrator init`` cannot read."""


class LLMError(MigratorError):
    """A model call failed after what could be retried was retried."""

    retryable = False

    def __init__(self, message: str, *, model: str = "") -> None:
        self.model = model
        super().__init__(f"{model}: {message}" if model else message)


class JudgeFailed(LLMError):
    """The judge metric's model could not grade a reply (after the client's retries): the reply is not scored."""


class LLMRateLimitError(LLMError):
    """The provider answered 429; ``retry_after`` is in seconds when it said."""

    retryable = True

    def __init__(self, message: str, *, model: str = "", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, model=model)


class LLMTimeoutError(LLMError):
    """No complete answer within the timeout."""

    retryable = True


class LLMProviderError(LLMError):
    """Server error, dropped connection or a reply that is not a completion."""

    retryable = True


class LLMBadRequestError(LLMError):
    """The provider rejected the request itself (bad params, unknown model, no key)."""


class LocalModelError(MigratorError):
    """Local model weights cannot be assembled or the local server will not start."""


class TrackingError(MigratorError, RuntimeError):
    """MLflow could not record the migration; the run's own outputs do not depend on it."""


class StorageError(MigratorError, RuntimeError):
    """A database migrator keeps state in failed (the server is gone, refused or full).

    ``url`` is the database's URL with its password redacted; ``what`` names it.
    """

    def __init__(self, reason: str, *, url: str = "", what: str = "the study's database") -> None:
        self.url = redact(url)
        self.what = what
        where = f" at {self.url}" if url else ""
        super().__init__(redact(f"{what}{where} failed: {reason}"))


class BudgetExhausted(MigratorError):
    """A budget is spent; ``which`` names it (trials, usd, calls, minutes)."""

    def __init__(self, which: str, message: str = "") -> None:
        self.which = which
        super().__init__(message or f"the {which} budget is spent")
