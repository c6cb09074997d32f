"""What goes wrong on the loopback server.

Faults are decided per request *attempt* by a seeded RNG, so a retry can succeed:

==============  ====================================================================
``rate_limit``   429 with ``Retry-After`` (``FaultPlan.retry_after``)
``server_error`` 500
``unavailable``  503
``reset``        the TCP connection is reset (RST) before any reply
``hang``         no reply for ``FaultPlan.hang_s`` (longer than the client timeout)
``malformed``    200 with a body that is not JSON
``empty``        200 with ``"choices": []``
``truncated``    200, the label then a cut-off ramble, ``finish_reason: "length"``
``auth``         401 (not retryable)
==============  ====================================================================

``max_consecutive`` bounds the faults one request body gets in a row, so with enough
retries every request is eventually answered; ``broken_marker`` makes the requests
whose text contains it fail every time, and ``model_faults`` every request to a model.
``hold_after`` makes every request after the first N wait until the server's
``release()``: a client is then stuck at a known point, e.g. for a test to kill it.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["ERRORS", "FAULTS", "RETRYABLE_FAULTS", "FaultDraws", "FaultPlan"]

FAULTS = ("rate_limit", "server_error", "unavailable", "reset", "hang", "malformed", "empty", "truncated", "auth")
RETRYABLE_FAULTS = tuple(f for f in FAULTS if f not in ("truncated", "auth"))

# The faults answered with an error status: (status, message, OpenAI error type).
ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "Rate limit reached, slow down", "rate_limit_exceeded"),
    "server_error": (500, "The server had an error while processing your request", "server_error"),
    "unavailable": (503, "The engine is currently overloaded", "service_unavailable"),
    "auth": (401, "Invalid authentication", "invalid_request_error"),
}


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, and how often.

    Args:
        rates: probability of each fault per attempt (they add up; the rest is answered).
        seed: seeds the per-attempt fault draws.
        retry_after: the ``Retry-After`` header of a 429 (seconds, as text).
        hang_s: how long a ``hang`` keeps the client waiting before dropping it.
        latency_s: added to every answered request.
        max_consecutive: faults one request body can get in a row; ``None``: no bound.
        broken_marker: requests containing this text get ``broken_kind`` every time.
        echo_key: error bodies quote the Authorization bearer token back.
        model_faults: models (as the server sees them) that get this fault every time.
        hold_after: requests after the first N wait until ``LoopbackServer.release()``.
        hold_key: hold (and count) only the requests that carry this bearer token.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: str = "0"
    hang_s: float = 1.5
    latency_s: float = 0.0
    max_consecutive: int | None = 3
    broken_marker: str | None = None
    broken_kind: str = "server_error"
    echo_key: bool = False
    model_faults: Mapping[str, str] = field(default_factory=dict)
    hold_after: int | None = None
    hold_key: str | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | {self.broken_kind} | set(self.model_faults.values())) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError(f"fault rates add up to more than 1: {dict(self.rates)}")


class FaultDraws:
    """The fault of each attempt under a plan: seeded draws, bounded per request body."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        # only bodies on a streak of faults are kept: a server answering millions stays small
        self._streak: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._quiet = not (any(plan.rates.values()) or plan.broken_marker or plan.model_faults)

    def decide(self, raw: bytes, model: str, text: Callable[[], str]) -> str | None:
        """The fault for this attempt, or None to answer it; ``text()`` is what it asks."""
        plan = self.plan
        if self._quiet:
            return None
        key = hashlib.sha256(raw).hexdigest()
        with self._lock:
            if model in plan.model_faults:
                return plan.model_faults[model]
            if plan.broken_marker and plan.broken_marker in text():
                return plan.broken_kind
            draw = self._rng.random()
            if plan.max_consecutive is not None and self._streak[key] >= plan.max_consecutive:
                self._streak.pop(key, None)
                return None
            kind = self._kind(draw)
            if kind in RETRYABLE_FAULTS:
                self._streak[key] += 1
            elif kind is None:
                self._streak.pop(key, None)
            return kind

    def _kind(self, draw: float) -> str | None:
        edge = 0.0
        for kind in FAULTS:
            edge += self.plan.rates.get(kind, 0.0)
            if draw < edge:
                return kind
        return None
