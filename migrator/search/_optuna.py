"""optuna, imported on first use, with its noise confined to the calls that make it.

Importing optuna takes about a second, so no module of migrator imports it at the top.
Nothing here changes optuna's logging or the warning filters beyond the ``with`` block.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def load_optuna() -> Any:
    """The optuna module, imported now if it has not been yet."""
    import optuna

    return optuna


@contextmanager
def quiet_logs() -> Iterator[Any]:
    """optuna, with its INFO lines (one per trial told) off inside the block.

    A caller who made optuna quieter still is not made louder; the level it had comes
    back when the block ends.
    """
    optuna = load_optuna()
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(previous)


@contextmanager
def experimental_features() -> Iterator[Any]:
    """optuna, with its ExperimentalWarning muted inside the block (and only that warning).

    The search chooses TPE's ``group`` and the Wilcoxon pruner knowingly; the user of
    migrator cannot act on a warning that their interface may change.
    """
    optuna = load_optuna()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        yield optuna
