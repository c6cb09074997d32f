"""Deterministic rewrites of the legacy prompt that matter across model families.

Each transform maps (template, metric) to new messages; :func:`apply_transforms` makes
the candidates the search picks among: the original first, then each named transform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from migrator.errors import SpecError
from migrator.metrics import Metric
from migrator.prompts import PromptTemplate

Messages: TypeAlias = tuple[tuple[str, str], ...]
"""A template's turns as (role, content) pairs."""
Transform: TypeAlias = Callable[[PromptTemplate, Metric], Messages]


@dataclass(frozen=True)
class PromptCandidate:
    """A prompt the search may pick, with where it came from."""

    id: str
    template: PromptTemplate
    origin: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """As a study stores it (JSON)."""
        messages = [list(m) for m in self.template.messages]
        return {"id": self.id, "messages": messages, "source": self.template.source, "origin": dict(self.origin)}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> PromptCandidate:
        template = PromptTemplate(tuple((r, t) for r, t in stored["messages"]), source=stored["source"])
        return cls(stored["id"], template, stored["origin"])


def _system_text(template: PromptTemplate) -> str:
    return "\n\n".join(c.strip() for r, c in template.messages if r == "system")


def _non_system(template: PromptTemplate) -> list[tuple[str, str]]:
    return [(r, c) for r, c in template.messages if r != "system"]


def _with_last_user(messages: list[tuple[str, str]], edit: Callable[[str], str]) -> Messages:
    last = max(i for i, (r, _) in enumerate(messages) if r == "user")
    return tuple((r, edit(c) if i == last else c) for i, (r, c) in enumerate(messages))


def _user_turn(template: PromptTemplate, metric: Metric) -> Messages:
    """Instruction moved into a user turn of its own (small chat models often ignore system).

    It is the first message, not merged into the input's turn: demos repeat the input's
    turn, so a merged instruction would be sent once per demo, and a fixed first message
    keeps the prompt prefix the same across inputs (prompt caching).
    """
    system = _system_text(template)
    if not system:
        return template.messages
    return (("user", system), *_non_system(template))


def _system_turn(template: PromptTemplate, metric: Metric) -> Messages:
    """Format rule restated as a short system turn, the original instruction kept."""
    system = _system_text(template)
    head = f"{system}\n\n{metric.format_hint()}" if system else metric.format_hint()
    return (("system", head), *_non_system(template))


def _format_line(template: PromptTemplate, metric: Metric) -> Messages:
    """An explicit output-format line derived from the metric, right before the answer."""
    return _with_last_user(list(template.messages), lambda c: f"{c}\n\n{metric.format_hint()}")


def _sectioned(system_fmt: str, user_fmt: str) -> Transform:
    """A transform that wraps the instruction, the format rule and the input in markers."""

    def transform(template: PromptTemplate, metric: Metric) -> Messages:
        system = _system_text(template)
        out: list[tuple[str, str]] = []
        if system:
            out.append(("system", system_fmt.format(system=system, fmt=metric.format_hint())))
        out += [(r, user_fmt.format(content=c) if r == "user" else c) for r, c in _non_system(template)]
        return tuple(out)

    return transform


_xml = _sectioned("<instructions>\n{system}\n</instructions>\n<format>{fmt}</format>", "<input>\n{content}\n</input>")
_markdown = _sectioned("## Instructions\n{system}\n\n## Output format\n{fmt}", "## Input\n{content}")


def _terse(template: PromptTemplate, metric: Metric) -> Messages:
    """Only the format rule and the input, for small models that drown in long prompts."""
    rest = _non_system(template)
    return _with_last_user(rest, lambda c: f"{c}\n{metric.format_hint()}")


TRANSFORMS: dict[str, Transform] = {
    "user_turn": _user_turn,
    "system_turn": _system_turn,
    "format_line": _format_line,
    "xml": _xml,
    "markdown": _markdown,
    "terse": _terse,
}


def apply_transforms(
    original: PromptTemplate, metric: Metric, names: Sequence[str], *, file: str | None = None
) -> list[PromptCandidate]:
    """The original prompt followed by each named transform of it."""
    out = [PromptCandidate("original", original, {"kind": "original"})]
    for name in names:
        if name not in TRANSFORMS:
            raise SpecError(
                f"unknown prompt transform {name!r}, expected one of {', '.join(TRANSFORMS)}",
                file=file,
                where="search_space.prompt.transforms",
            )
        messages = TRANSFORMS[name](original, metric)
        out.append(
            PromptCandidate(
                name,
                PromptTemplate(messages, source=f"{original.source} [{name}]"),
                {"kind": "transform", "transform": name},
            )
        )
    return out
