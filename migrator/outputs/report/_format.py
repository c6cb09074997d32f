"""How numbers and texts read on the report page (plain text: the template escapes it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ci", "input_cells", "origin", "score", "seconds", "truncate", "usd", "value"]

# Long enough for a review or a prompt message, short enough that one row fits on a screen.
_TRUNCATE = 600


def score(value: float | None) -> str:
    """A score to three decimals, or a dash where there is none."""
    return "–" if value is None else f"{value:.3f}"


def ci(interval: Sequence[float] | None) -> str:
    """A confidence interval as ``[low, high]``."""
    return "–" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def usd(value: float | None) -> str:
    """Dollars, with as many digits as small per-example costs need."""
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:.2f}"
    return f"${value:#.3g}"


def seconds(value: float | None) -> str:
    """A latency in seconds, or in milliseconds below one second."""
    if value is None:
        return "–"
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def value(param: Any) -> str:
    """A parameter value as a reader expects it (no float noise like 0.7000000000000001)."""
    return f"{param:.6g}" if isinstance(param, float) else str(param)


def truncate(text: str, limit: int = _TRUNCATE) -> str:
    """The text cut at ``limit`` characters, saying how many more there were."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def origin(source: Mapping[str, Any]) -> str:
    """Where a candidate came from: ``transform user_turn``, ``dspy (proposer=..., ...)``."""
    kind = str(source.get("kind", "?"))
    name = f"{kind} {value(source[kind])}" if kind in source else kind
    rest = ", ".join(f"{k}={truncate(value(v), 80)}" for k, v in source.items() if k not in ("kind", kind))
    return f"{name} ({rest})" if rest else name


def input_cells(inputs: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """An example's inputs as (name, text) blocks; a lone input goes unnamed."""
    if len(inputs) == 1:
        return [(None, truncate(str(next(iter(inputs.values())))))]
    return [(name, truncate(str(text))) for name, text in inputs.items()]
