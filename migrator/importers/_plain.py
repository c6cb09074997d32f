"""The plain way in: the app's prompt file, a dataset file and the legacy model's name.

The prompt may be migrator's prompt.yaml (kept where it is), a JSON list of chat messages
(OpenAI's and promptfoo's form), or a text file: with ``{{ var }}`` or Python's ``{var}``
placeholders it is the user turn; without any, it is the system prompt and the dataset's
input fields make the user turn.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from migrator.dataset import read_records
from migrator.errors import SourceError
from migrator.importers._draft import Draft, guess_metric
from migrator.prompts import PromptTemplate
from migrator.spec import read_text, read_yaml

__all__ = ["EXPECTED_NAMES", "from_messages", "from_plain", "read_prompt", "user_turn"]

# the field that holds the expected output, when the user does not say: the first of these a row has
EXPECTED_NAMES = ("expected", "expected_output", "label", "answer", "output", "target", "reference", "completion", "response")
_ROLES = ("system", "user", "assistant")


def read_prompt(path: Path) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The prompt's messages, and whether the file is migrator's own prompt.yaml (then the spec points at it)."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        raw = read_yaml(path, SourceError)
        own = isinstance(raw, dict) and "messages" in raw
        return _messages(raw.get("messages") if isinstance(raw, dict) else raw, path, "messages" if own else None), own
    text = read_text(path, SourceError, kind="prompt")
    if suffix == ".json" or text.lstrip().startswith("["):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise SourceError(f"invalid JSON: {exc.msg} (line {exc.lineno})", file=str(path)) from None
        else:
            return _messages(raw.get("messages") if isinstance(raw, dict) else raw, path, None), False
    return (("user", text.strip("\n")),), False


def _messages(raw: Any, path: Path, key: str | None) -> tuple[tuple[str, str], ...]:
    prefix = f"{key}" if key else ""
    if not isinstance(raw, list) or not raw:
        raise SourceError("expected a non-empty list of {role, content} messages", file=str(path), where=prefix or None)
    out = []
    for i, item in enumerate(raw):
        where = f"{prefix}[{i}]"
        if not isinstance(item, dict) or item.get("role") not in _ROLES or not isinstance(item.get("content"), str):
            raise SourceError("expected {role: system|user|assistant, content: text}", file=str(path), where=where)
        out.append((str(item["role"]), str(item["content"])))
    return tuple(out)


def python_placeholders(messages: Sequence[tuple[str, str]], fields: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``{name}`` (str.format, f-strings) as ``{{ name }}`` where the name is a data field and the text has no Jinja2."""
    if any(re.search(r"\{\{|\{%", content) for _, content in messages):
        return tuple(messages)
    names = "|".join(re.escape(f) for f in sorted(fields, key=len, reverse=True))
    if not names:
        return tuple(messages)
    pattern = re.compile(r"(?<!\{)\{(" + names + r")\}(?!\})")
    return tuple((role, pattern.sub(r"{{ \1 }}", content)) for role, content in messages)


def user_turn(fields: Sequence[str]) -> str:
    """The user turn for a prompt with no variables: each input field on its own labelled line."""
    if len(fields) == 1:
        return "{{ " + fields[0] + " }}"
    return "\n".join(f"{f.replace('_', ' ').capitalize()}: {{{{ {f} }}}}" for f in fields)


def _expected_field(rows: Sequence[Mapping[str, Any]], given: str | None, file: str) -> str | None:
    """The field with the expected outputs; None when the rows have none (then the legacy model labels them)."""
    if given is not None:
        missing = next((i for i, row in enumerate(rows, 1) if given not in row), None)
        if missing is not None:
            raise SourceError(f"row {missing} has no field {given!r} (--expected)", file=file)
        return given
    for name in EXPECTED_NAMES:
        if all(name in row for row in rows):
            return name
    return None


def from_plain(
    prompt: Path,
    data: Path,
    *,
    out: Path,
    model: str,
    name: str,
    expected: str | None = None,
    targets: Sequence[str] = (),
) -> Draft:
    """The app from its prompt file and dataset; the spec written to ``out`` refers to both where they are."""
    messages, own = read_prompt(prompt)
    return from_messages(
        messages, data, out=out, model=model, name=name, expected=expected, targets=targets,
        source=prompt, prompt_file=_relative(prompt, out) if own else None,
    )


def from_messages(
    messages: Sequence[tuple[str, str]],
    data: Path,
    *,
    out: Path,
    model: str,
    name: str,
    source: Path | str,
    params: Mapping[str, Any] | None = None,
    expected: str | None = None,
    targets: Sequence[str] = (),
    prompt_file: str | None = None,
) -> Draft:
    """The app from its prompt's messages (from a file, or a registry: ``source`` names it) and a dataset file.

    Args:
        prompt_file: the prompt file the spec refers to, where it is migrator's own; else prompt.yaml is written.
    """
    records = [row for _, row in read_records(data, SourceError)]
    if not records:
        raise SourceError("no rows; a golden dataset needs examples", file=str(data))
    expected_field = _expected_field(records, expected, str(data))
    fields = [k for k in records[0] if k not in (expected_field, "id")]
    notes: list[str] = []
    if expected_field is None:
        notes.append(
            f"no expected outputs (none of {', '.join(EXPECTED_NAMES)} is in every row; --expected FIELD names one): "
            "labels: legacy takes the legacy model's replies, so it must still answer"
        )
    messages = python_placeholders(messages, fields)
    variables = sorted(PromptTemplate(tuple(messages), source=str(source)).variables)
    if not variables:
        if not fields:
            raise SourceError(f"the rows have no field but {expected_field!r}: nothing to put in the prompt", file=str(data))
        turn = user_turn(fields)
        messages = (*(("system", c) if r == "user" else (r, c) for r, c in messages), ("user", turn))
        prompt_file = None
        variables = list(fields)
        notes.append(f"the prompt has no variables: it is the system prompt, and the user turn is {turn!r}")
    unknown = [v for v in variables if any(v not in row for row in records)]
    if unknown:
        raise SourceError(
            f"the prompt uses {{{{ {unknown[0]} }}}}, which not every row of {data.name} has (fields: {', '.join(fields)})",
            file=str(source),
        )
    ids = [row.get("id") for row in records]
    has_ids = all(i is not None for i in ids) and len({str(i) for i in ids}) == len(ids)
    if expected_field is None:
        metric, why = {"name": "f1"}, (
            "no expected outputs to guess from: token-overlap F1 with the legacy replies (exact for one-word "
            "answers); label for classes, similarity or judge for free text"
        )
    else:
        metric, why = guess_metric([row[expected_field] for row in records])
    shown = source.name if isinstance(source, Path) else source
    return Draft(
        name=name,
        source=f"{shown} and {data.name} ({len(records)} rows)",
        messages=tuple(messages),
        rows=tuple(records),
        input_fields=tuple(variables),
        metric={**metric, "_why": why},
        model=model,
        params=dict(params or {}),
        targets=tuple(targets),
        expected_field=expected_field,
        id_field="id" if has_ids else None,
        data_file=_relative(data, out),
        prompt_file=prompt_file,
        notes=tuple(notes),
    )


def _relative(path: Path, out: Path) -> str:
    return os.path.relpath(path.resolve(), out.resolve())
