"""A chat log as an app: OpenAI chat-format JSONL, one conversation per line.

Each line is ``{"messages": [...], "model": ...}`` (the format of OpenAI's chat fine-tuning and
eval files), or a request log's ``{"request": {"model", "messages", ...}, "response": {"choices":
[{"message": {"content"}}]}}``. The turns before the last assistant turn are the prompt, the last
assistant turn the expected output. What the lines share is the template; what varies becomes its
variables (``_template``). Lines whose system prompt is another prompt altogether (an older version,
another feature) form their own group: the largest group is the app, the others are named in the
notes and left out.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import SourceError
from migrator.importers._draft import Draft, guess_metric, rows_with_ids
from migrator.importers._template import infer_template
from migrator.models import litellm_id

__all__ = ["from_chat_log"]

# two system prompts less alike than this are two prompts, not one template with variables
_SAME_PROMPT = 0.5
_PARAMS = ("temperature", "max_tokens", "top_p")
_SHOWN = 60


@dataclass(frozen=True)
class _Line:
    number: int
    turns: tuple[tuple[str, str], ...]
    reply: str
    model: str | None
    params: Mapping[str, Any]

    @property
    def shape(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.turns)

    @property
    def system(self) -> str:
        return "\n".join(text for role, text in self.turns if role == "system")


def _content(value: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of content parts with only text in it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    return None


def _parse(number: int, raw: Any, file: str) -> _Line:
    where = f"line {number}"
    if not isinstance(raw, dict):
        raise SourceError(f"expected a JSON object, got {type(raw).__name__}", file=file, where=where)
    request, reply = raw, None
    if isinstance(raw.get("request"), dict):
        request = raw["request"]
        try:
            reply = _content(raw["response"]["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise SourceError("expected response.choices[0].message.content", file=file, where=where) from None
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SourceError("expected 'messages', a non-empty list", file=file, where=where)
    turns = []
    for i, m in enumerate(messages):
        text = _content(m.get("content")) if isinstance(m, dict) else None
        role = m.get("role") if isinstance(m, dict) else None
        if role == "developer":  # OpenAI's newer name for the system turn
            role = "system"
        if role not in ("system", "user", "assistant") or text is None:
            raise SourceError(
                "expected {role: system|user|assistant, content: text}", file=file, where=f"{where}: messages[{i}]"
            )
        turns.append((str(role), text))
    if reply is None:
        if turns[-1][0] != "assistant":
            raise SourceError("the last message must be the assistant's reply (the expected output)", file=file, where=where)
        reply = turns.pop()[1]
    if not any(role == "user" for role, _ in turns):
        raise SourceError("no user turn before the reply", file=file, where=where)
    model = request.get("model")
    params = {k: request[k] for k in _PARAMS if k in request}
    return _Line(number, tuple(turns), reply, str(model) if model else None, params)


def _groups(lines: Sequence[_Line]) -> list[list[_Line]]:
    """Lines by prompt: same turn structure and a system prompt like the group's first."""
    groups: list[list[_Line]] = []
    for line in lines:
        for group in groups:
            head = group[0]
            if head.shape == line.shape and _alike(head.system, line.system):
                group.append(line)
                break
        else:
            groups.append([line])
    return sorted(groups, key=len, reverse=True)


def _alike(a: str, b: str) -> bool:
    if a == b:
        return True
    matcher = difflib.SequenceMatcher(None, a[:4000], b[:4000], autojunk=False)
    return matcher.quick_ratio() >= _SAME_PROMPT and matcher.ratio() >= _SAME_PROMPT


def _shown(text: str) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat if len(flat) <= _SHOWN else flat[: _SHOWN - 3] + "...")


def from_chat_log(path: Path, *, name: str, model: str | None = None, targets: Sequence[str] = ()) -> Draft:
    """The app the log's conversations come from."""
    from migrator.dataset import read_records

    file = str(path)
    lines = [_parse(n, raw, file) for n, raw in read_records(path, SourceError)]
    if not lines:
        raise SourceError("no conversations", file=file)
    groups = _groups(lines)
    kept, notes = groups[0], []
    for other in groups[1:]:
        first = other[0]
        what = f"system prompt {_shown(first.system)}" if first.system else f"turns {'/'.join(first.shape)}"
        notes.append(f"{len(other)} line(s) (from line {first.number}) use another prompt, left out: {what}")
    taken: set[str] = set()
    users = sum(role == "user" for role in kept[0].shape)
    messages, values = [], [dict[str, str]() for _ in kept]
    for i, role in enumerate(kept[0].shape):
        fallback = "context" if role == "system" else ("input" if users == 1 else f"{role}_turn")
        inferred = infer_template([line.turns[i][1] for line in kept], fallback=fallback, taken=taken)
        messages.append((role, inferred.template))
        for row, found in zip(values, inferred.values, strict=True):
            row.update(found)
    if not any(values[0]):
        raise SourceError(
            f"every kept line sends the same prompt ({len(kept)} lines): there is nothing to vary; "
            "a golden dataset needs different inputs",
            file=file,
        )
    logged = _most_common([line.model for line in kept if line.model])
    if model is None and logged is None:
        raise SourceError("no line has a 'model' field: pass --model with the legacy model's litellm id", file=file)
    legacy = model or litellm_id(str(logged))
    if legacy is None:
        raise SourceError(
            f"the lines' model {logged!r} is not in litellm's model map: pass --model PROVIDER/{logged}", file=file
        )
    models = Counter(line.model for line in kept if line.model)
    if len(models) > 1 and model is None:
        notes.append(f"the lines name {len(models)} models ({', '.join(m for m, _ in models.most_common())}): app.model is the most common")
    params = _shared_params(kept)
    rows = rows_with_ids([{**v, "expected": line.reply} for v, line in zip(values, kept, strict=True)], "log")
    metric, why = guess_metric([line.reply for line in kept])
    variables = tuple(dict.fromkeys(k for v in values for k in v))
    return Draft(
        name=name,
        source=f"chat log {path.name} ({len(kept)} of {len(lines)} lines)",
        messages=tuple(messages),
        rows=tuple(rows),
        input_fields=variables,
        metric={**metric, "_why": why},
        model=legacy,
        params=params,
        targets=tuple(targets),
        notes=tuple(notes),
    )


def _most_common(values: Sequence[str]) -> str | None:
    return Counter(values).most_common(1)[0][0] if values else None


def _shared_params(lines: Sequence[_Line]) -> dict[str, Any]:
    """The sampling params every line sent with the same value."""
    out: dict[str, Any] = {}
    for key in _PARAMS:
        seen = {json.dumps(line.params.get(key)) for line in lines}
        if len(seen) == 1 and key in lines[0].params:
            out[key] = lines[0].params[key]
    return out
