"""Keeping secrets out of everything migrator writes or prints."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["redact", "secret_values"]

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
_KEY_SHAPE = re.compile(r"\b(sk|pk|rk|gsk|xai|hf)[-_][A-Za-z0-9_\-]{16,}\b")
_MIN_SECRET_LEN = 8


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+):([^@\s]+)@", re.IGNORECASE)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """The text with secret env values, key-shaped tokens and URL passwords replaced by '***'."""
    for value in secret_values(environ):
        text = text.replace(value, "***")
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return _KEY_SHAPE.sub("***", text)
