"""What the winner changes against the legacy app: its chat messages, params and demos.

Each function computes the rows the report's diff section shows; the template lays
them out. A diff row's ``kind`` is ``add``, ``del`` or ``ctx`` (shared by both sides),
the class the page styles it with.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrator.outputs.report._format import input_cells, value

if TYPE_CHECKING:
    from migrator.evaluate import Config
    from migrator.migration import MigrationResult

__all__ = ["DemoRow", "Demos", "DiffRow", "ParamRow", "PromptDiff", "WinnerDiff", "winner_diff"]

Message = tuple[str, str]
_Pair = tuple[Message | None, Message | None]

# How legacy and winner messages are matched up, strictest first: the same message, the
# same text under another role (a change of role), the same role with other text.
_PAIRING: tuple[Callable[[Message], Hashable], ...] = (lambda m: m, lambda m: m[1], lambda m: m[0])


@dataclass(frozen=True)
class DiffRow:
    """One line of the diff: a message's role (shown as ``[role]``) or a line of its text."""

    kind: str
    text: str
    role: bool = False


@dataclass(frozen=True)
class PromptDiff:
    """What changed, in one sentence ("" when the prompt is kept), and each message's rows."""

    changes: str
    messages: list[list[DiffRow]]


@dataclass(frozen=True)
class ParamRow:
    name: str
    legacy: str
    winner: str
    changed: bool


@dataclass(frozen=True)
class DemoRow:
    inputs: list[tuple[str | None, str]]
    answer: str


@dataclass(frozen=True)
class Demos:
    """The few-shot examples the winner sends; no rows when it sends none."""

    intro: str = ""
    rows: list[DemoRow] = field(default_factory=list)


def _pair_messages(old: Sequence[Message], new: Sequence[Message], keys: Sequence[Callable[[Message], Hashable]] = _PAIRING) -> list[_Pair]:
    """Legacy and winner messages side by side, in order; ``None`` where one side has no counterpart."""
    if not keys:
        return [(m, None) for m in old] + [(None, m) for m in new]
    key, rest = keys[0], keys[1:]
    pairs: list[_Pair] = []
    matcher = difflib.SequenceMatcher(None, [key(m) for m in old], [key(m) for m in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs += zip(old[i1:i2], new[j1:j2], strict=True)
        else:
            pairs += _pair_messages(old[i1:i2], new[j1:j2], rest)
    return pairs


def _split(text: str) -> list[str]:
    # split, not splitlines: a trailing newline is sent to the model, so it is shown too
    return text.split("\n")


def _lines(kind: str, text: str) -> list[DiffRow]:
    return [DiffRow(kind, line) for line in _split(text)]


def _text_rows(old: str, new: str) -> list[DiffRow]:
    """Two versions of a message's text, line by line, with what changed marked."""
    a, b = _split(old), _split(new)
    rows: list[DiffRow] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            rows += [DiffRow("ctx", line) for line in a[i1:i2]]
        else:
            rows += [DiffRow("del", line) for line in a[i1:i2]] + [DiffRow("add", line) for line in b[j1:j2]]
    return rows


def _message_rows(old: Message | None, new: Message | None) -> list[DiffRow]:
    """One message as a reviewer reads it: its role, then its text, with what changed marked."""
    if new is None:
        assert old is not None
        return [DiffRow("del", old[0], role=True), *_lines("del", old[1])]
    if old is None:
        return [DiffRow("add", new[0], role=True), *_lines("add", new[1])]
    if old[0] == new[0]:
        roles = [DiffRow("ctx", new[0], role=True)]
    else:
        roles = [DiffRow("del", old[0], role=True), DiffRow("add", new[0], role=True)]
    return roles + _text_rows(old[1], new[1])


def _change_notes(pairs: Sequence[_Pair]) -> list[str]:
    """What changed, message by message, numbered as in the prompt that has the message."""
    notes: list[str] = []
    n_old = n_new = 0
    for old, new in pairs:
        n_old += old is not None
        n_new += new is not None
        if old is None:
            assert new is not None
            notes.append(f"message {n_new} ({new[0]}) is added")
        elif new is None:
            notes.append(f"legacy message {n_old} ({old[0]}) is removed")
        elif old[0] != new[0]:
            text = "" if old[1] == new[1] else " and its text changes"
            notes.append(f"message {n_new} changes role from {old[0]} to {new[0]}{text}")
        elif old[1] != new[1]:
            notes.append(f"the text of message {n_new} ({new[0]}) changes")
    return notes


def _prompt_diff(old: Sequence[Message], new: Sequence[Message]) -> PromptDiff:
    """The winner's chat messages against the legacy ones."""
    pairs = _pair_messages(old, new)
    return PromptDiff("; ".join(_change_notes(pairs)), [_message_rows(a, b) for a, b in pairs])


def _param_rows(legacy: Mapping[str, Any], winner: Mapping[str, Any]) -> list[ParamRow]:
    """Every sampling param either side sets, legacy value against the winner's."""
    rows = []
    for name in sorted(set(legacy) | set(winner)):
        old, new = legacy.get(name), winner.get(name)
        # the request seed migrator adds is how it reproduces replies, not a tuned change
        added_seed = name == "seed" and old is None
        shown = f"{value(new)} (request seed, added by migrator)" if added_seed else ("–" if new is None else value(new))
        rows.append(ParamRow(name, "–" if old is None else value(old), shown, old != new and not added_seed))
    return rows


def _demos(result: MigrationResult, config: Config) -> Demos:
    """The demos ``config`` sends, as drawn for the first test example (knn picks them per input)."""
    from migrator.candidates import DemoPool  # loads dspy: only once a report is drawn

    if not config.demos:
        return Demos()
    splits = result.prepared.splits
    sample = splits.test[0] if splits.test else splits.dev[0]
    drawn = DemoPool(splits.train, seed=result.spec.seed, answer=result.prepared.metric.answer).demos(
        config.demo_strategy, config.demos, sample
    )
    if config.demo_strategy == "knn":
        intro = (f"{config.demos} per request, the train examples nearest to each input (of {len(splits.train)}). "
                 f"For test example {sample.id} they are:")
    else:
        intro = f"{config.demos} per request, the same for every input (strategy {config.demo_strategy}):"
    return Demos(intro, [DemoRow(input_cells(d.inputs), d.answer) for d in drawn])


@dataclass(frozen=True)
class WinnerDiff:
    """The winner against the legacy app: model, prompt, params and demos."""

    legacy_model: str
    config: Config
    origin: Mapping[str, Any]  # where the winner's prompt candidate came from
    prompt: PromptDiff
    params: list[ParamRow]
    demos: Demos


def winner_diff(result: MigrationResult) -> WinnerDiff | None:
    """What the winner changes, or None when there is no winner."""
    if result.verdict.winner is None:
        return None
    config = result.verdict.winner.config
    candidate = result.prompts[config.prompt_id]
    return WinnerDiff(
        legacy_model=result.spec.app.model,
        config=config,
        origin=candidate.origin,
        prompt=_prompt_diff(result.prepared.template.messages, candidate.template.messages),
        params=_param_rows(dict(result.spec.app.params), dict(config.params)),
        demos=_demos(result, config),
    )
