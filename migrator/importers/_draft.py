"""What an importer read, before ``migrator init`` writes it: the prompt, the rows, the metric and the notes.

``render`` turns a ``Draft`` into the text of the files (a commented migration.yaml, prompt.yaml,
the dataset as JSONL); it writes nothing. Which metric fits the expected outputs is guessed here,
once, for every importer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from migrator import similarity
from migrator.errors import SourceError

__all__ = ["DATA_FILE", "PROMPT_FILE", "SPEC_FILE", "Draft", "advice", "check_names", "guess_metric", "render", "rows_with_ids", "slug"]

SPEC_FILE, PROMPT_FILE, DATA_FILE = "migration.yaml", "prompt.yaml", "data.jsonl"

# a label set larger than this, or labels longer than this, is free text rather than classes
_MAX_LABELS, _MAX_LABEL_WORDS = 20, 4
# below this many rows the notes say how coarse the test split's score is
_ENOUGH_ROWS = 100


@dataclass(frozen=True)
class Draft:
    """An app as an importer read it.

    Args:
        source: what it was made from, for the header comment ("chat log logs.jsonl, 120 lines").
        messages: the prompt template, (role, Jinja2 text) per message.
        rows: dataset rows, each with ``id``, the input fields and ``expected``.
        model: the legacy model (a litellm id).
        targets: the models the user listed; with ``targets: auto`` they are its catalog.
        data_file: the dataset's path as the spec names it, when the rows are not written (the plain case).
        prompt_file: the prompt file's path as the spec names it, when it is not written.
        notes: what the user must know: what was not translated, and guesses to check.
    """

    name: str
    source: str
    messages: tuple[tuple[str, str], ...]
    rows: tuple[Mapping[str, Any], ...]
    input_fields: tuple[str, ...]
    metric: Mapping[str, Any]
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    # None: the rows have no expected outputs, and the spec says labels: legacy
    expected_field: str | None = "expected"
    id_field: str | None = "id"
    data_file: str | None = None
    prompt_file: str | None = None
    notes: tuple[str, ...] = ()


def guess_metric(values: Sequence[Any]) -> tuple[dict[str, Any], str]:
    """The metric the expected values call for, and one line saying why (for the spec's comment)."""
    if values and all(isinstance(v, dict) for v in values):
        fields = sorted({k for v in values for k in v})
        return {"name": "json_fields", "fields": fields}, f"every expected output is a JSON object (keys {', '.join(fields)})"
    if values and all(_is_number(v) for v in values):
        return {"name": "numeric"}, "every expected output is a number"
    texts = [str(v).strip() for v in values]
    counts = Counter(texts)
    short = all(len(t.split()) <= _MAX_LABEL_WORDS for t in counts)
    if 2 <= len(counts) <= _MAX_LABELS and short and len(counts) <= max(2, len(texts) // 3):
        labels = [label for label, _ in counts.most_common()]
        return {"name": "label", "labels": labels}, f"{len(labels)} distinct short answers over {len(texts)} rows: classes"
    if short:
        return {"name": "exact"}, "short answers: exact match after normalising case and spaces"
    if similarity.missing() is None:
        return {"name": "similarity"}, (
            "free text: embedding similarity to the expected reply (closeness of wording and topic; "
            "metric judge, an LLM with criteria, checks what a reply says)"
        )
    return {"name": "f1"}, (
        "free text: token-overlap F1 against the expected reply; pip install 'migrator[similarity]' for "
        "embedding similarity, or metric judge (an LLM with criteria)"
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*-?\d[\d,]*(\.\d+)?\s*", value) is not None


def render(draft: Draft, *, prompt_path: str = PROMPT_FILE, data_path: str = DATA_FILE) -> dict[str, str]:
    """The files ``migrator init`` writes, by name: migration.yaml, and prompt.yaml and data.jsonl where they are new."""
    files: dict[str, str] = {}
    prompt_ref = draft.prompt_file or prompt_path
    data_ref = draft.data_file or data_path
    if draft.prompt_file is None:
        files[PROMPT_FILE] = _dump({"messages": [{"role": r, "content": c} for r, c in draft.messages]})
    if draft.data_file is None:
        files[DATA_FILE] = "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in draft.rows)
    files[SPEC_FILE] = _spec_text(draft, prompt_ref, data_ref)
    return files


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as YAML blocks (``|``), so a prompt reads as it is written."""


def _block_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted style where a block cannot hold the text exactly (trailing spaces)
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _block_str)


def _dump(value: Any) -> str:
    text: str = yaml.dump(value, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
    return text


def _inline(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10_000)
    return text.strip().removesuffix("...").strip()


def _spec_text(draft: Draft, prompt_ref: str, data_ref: str) -> str:
    n = len(draft.rows)
    train, dev, test = _split(n)
    lines = [
        f"# migration.yaml written by `migrator init` from {draft.source}.",
        "# `migrator run migration.yaml --dry-run` shows the plan and its cost; `migrator run migration.yaml --out runs/x` runs it.",
    ]
    notes = advice(draft)
    if notes:
        lines.append("#")
        lines.append("# Check before running:")
        lines.extend(f"#   - {note}" for note in notes)
    lines += [
        f"name: {_inline(draft.name)}",
        "app:",
        f"  model: {_inline(draft.model)}   # the legacy model being retired",
        f"  prompt_file: {_inline(prompt_ref)}",
    ]
    if draft.params:
        lines.append(f"  params: {_inline(dict(draft.params))}   # as the app sends them today")
    lines += [
        "dataset:",
        f"  path: {_inline(data_ref)}   # {n} rows",
        *([f"  id_field: {_inline(draft.id_field)}"] if draft.id_field else []),
        *(
            [f"  expected_field: {_inline(draft.expected_field)}"]
            if draft.expected_field
            else ["  labels: legacy   # the expected outputs are the legacy model's replies (it must still answer)"]
        ),
        f"  input_fields: {_inline(list(draft.input_fields))}",
        f"  split: {{train: {train}, dev: {dev}, test: {test}}}   # train feeds demos and rewrites; dev the search; test the verdict",
    ]
    metric, why = draft.metric, draft.metric.get("_why", "")
    shown = {k: v for k, v in metric.items() if not k.startswith("_")}
    lines.append(f"metric: {_inline(shown)}" + (f"   # {why}" if why else ""))
    lines.append("targets: auto   # the legacy model's successor (litellm's retirement data), then the catalog's live models")
    if draft.targets:
        lines.append("catalog:   # the models you listed: candidates for `targets: auto`")
        lines.extend(f"  - {_inline(t)}" for t in draft.targets)
    lines += [
        "# no search_space: the built-in one searches prompt transforms, demos up to 8 by every strategy, and temperature",
        "budget: {trials: 40, finalists: 3}   # add calls:, usd: or minutes: to cap what the run may spend",
        "objective: quality",
        "seed: 0",
    ]
    return "\n".join(lines) + "\n"


def advice(draft: Draft) -> list[str]:
    """The importer's notes, and what the draft itself tells (too few rows for a verdict)."""
    notes = list(draft.notes)
    n = len(draft.rows)
    if n < _ENOUGH_ROWS:
        test = round(n * _split(n)[2])
        notes.append(f"only {n} rows: the test split holds {test}, so one row moves the test score by {100 / max(1, test):.1f} points")
    return notes


def _split(n: int) -> tuple[float, float, float]:
    """A split that leaves the test split at least 20 rows where the data allows it."""
    if n >= 100:
        return 0.2, 0.5, 0.3
    return 0.3, 0.4, 0.3


def rows_with_ids(rows: Sequence[Mapping[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The rows, each with an ``id`` first (``<prefix>-0001``), the order kept."""
    width = max(4, len(str(len(rows))))
    return [{"id": f"{prefix}-{i:0{width}d}", **row} for i, row in enumerate(rows, 1)]


def check_names(names: Sequence[str], where: str, file: str) -> None:
    """Variable names Jinja2 can read; else one line naming them."""
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if bad:
        raise SourceError(f"variable name {bad[0]!r} is not a valid identifier (letters, digits, _)", file=file, where=where)


def slug(text: str) -> str:
    """A migration name (letters, digits, ``.``, ``_``, ``-``) from a file or folder name."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return out or "app"
