"""Output normalisation: what a model said, reduced to what a metric compares."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["extract_json", "extract_label", "extract_number", "normalize_text", "strip_fences"]

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def strip_fences(text: str) -> str:
    """The inside of the first fenced code block, or the text itself."""
    match = _FENCE.search(text)
    return match.group(1).strip() if match else text.strip()


def normalize_text(text: str) -> str:
    """Case-folded, accents and punctuation at the edges removed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    return text.strip(" \t\n.,;:!?\"'`*()[]")


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a reply gives: an exact answer, else the first label named on its first line.

    Base models keep writing after the answer, so only the first non-empty line counts.
    """
    lines = [line for line in strip_fences(text).splitlines() if line.strip()]
    if not lines:
        return None
    first = normalize_text(lines[0])
    wanted = {normalize_text(label): label for label in labels}
    if first in wanted:
        return wanted[first]
    best: tuple[int, str] | None = None
    for norm, label in wanted.items():
        match = re.search(rf"(?<![\w-]){re.escape(norm)}(?![\w-])", first)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), label)
    return best[1] if best else None


def extract_number(text: str) -> float | None:
    """The first number in the reply, thousands separators removed."""
    match = _NUMBER.search(strip_fences(text).replace("\u2212", "-"))
    if not match:
        return None
    return float(match.group(0).replace(",", ""))


def extract_json(text: str) -> Any:
    """The first JSON object in the reply (fenced or bare), or None."""
    body = strip_fences(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    start = body.find("{")
    while start != -1:
        depth = 0
        in_string = False
        escaped = False
        for i in range(start, len(body)):
            ch = body[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(body[start : i + 1])
                    except json.JSONDecodeError:
                        break
        start = body.find("{", start + 1)
    return None
