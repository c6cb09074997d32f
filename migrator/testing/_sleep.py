"""A stand-in for ``asyncio.sleep`` that records each wait instead of waiting it out."""

from __future__ import annotations

__all__ = ["RecordingSleep"]


class RecordingSleep:
    """Pass as ``LiteLLMClient(sleep=...)``: backoffs land in ``waits`` and take no time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
