"""What reaches the user's terminal while a command runs, besides the command's own output.

migrator's messages go through ``logging.getLogger("migrator")``, written to stderr as
``migrator: <message>``. The loggers of the libraries a run calls through (LiteLLM, its
HTTP clients) are turned down to errors: migrator retries and reports their failures
itself. Nothing else is muted; a warning is filtered, if at all, where it arises.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["log", "terminal"]

log = logging.getLogger("migrator")

# LiteLLM sets no level on its loggers (it reads LITELLM_LOG for its handler's), so a
# level set here holds; httpx and urllib3 log each request and connection retry.
_TURNED_DOWN = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "urllib3")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time: rich's live progress bar swaps it, tests capture it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextmanager
def terminal() -> Iterator[None]:
    """Route migrator's messages to stderr and turn the libraries' loggers down, for one command.

    On exit the loggers are as they were, except where a library set a level meanwhile
    (litellm sets httpx's when it loads).
    """
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("migrator: %(message)s"))
    saved_level, saved_propagate = log.level, log.propagate
    turned_down = {name: logging.getLogger(name).level for name in _TURNED_DOWN}
    log.addHandler(handler)
    # the CLI owns the terminal: a handler some library put on the root logger must not repeat the line
    log.setLevel(logging.INFO)
    log.propagate = False
    for name in _TURNED_DOWN:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved_level)
        log.propagate = saved_propagate
        for name, level in turned_down.items():
            if logging.getLogger(name).level == logging.ERROR:
                logging.getLogger(name).setLevel(level)
