"""Prompt templates: chat messages rendered with sandboxed, strict Jinja2.

Dataset values are passed to templates as data; they are never parsed as templates,
so a review that contains ``{{ ... }}`` is rendered literally.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from migrator.errors import TemplateError

__all__ = ["Demo", "PromptTemplate", "format_answer"]

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclass(frozen=True)
class Demo:
    """A few-shot example: template inputs and the answer to show."""

    inputs: Mapping[str, Any]
    answer: str


def format_answer(value: Any) -> str:
    """How an expected value is written as a model answer in a demo."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class PromptTemplate:
    """Chat messages whose contents are Jinja2 templates.

    ``source`` names where the template came from, for error messages.
    """

    messages: tuple[tuple[str, str], ...]
    source: str = "prompt"

    def __reduce__(self) -> tuple[Any, ...]:
        # the compiled Jinja2 templates (cached on the instance) are compiled again where it is unpickled
        return type(self), (self.messages, self.source)

    def _each(self, build: Callable[[str], Any]) -> list[Any]:
        """``build`` applied to each message's content; syntax errors name the message."""
        out = []
        for i, (_, content) in enumerate(self.messages):
            try:
                out.append(build(content))
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"Jinja2 syntax error: {exc.message} (template line {exc.lineno})",
                    file=self.source,
                    where=f"messages[{i}].content",
                ) from None
            except (ArithmeticError, ValueError, RecursionError) as exc:  # Jinja2 folds constants while parsing: {{ 2 ** 100000 }}
                raise TemplateError(f"cannot compile: {type(exc).__name__}: {exc}", file=self.source, where=f"messages[{i}].content") from None
        return out

    @cached_property
    def _compiled(self) -> tuple[tuple[str, jinja2.Template], ...]:
        templates = self._each(_ENV.from_string)
        return tuple((role, t) for (role, _), t in zip(self.messages, templates, strict=True))

    @cached_property
    def variables(self) -> frozenset[str]:
        """Names the template reads from the inputs."""
        found: set[str] = set()
        for names in self._each(lambda content: meta.find_undeclared_variables(_ENV.parse(content))):
            found |= names
        return frozenset(found)

    def check(self, input_fields: Sequence[str], sample: Mapping[str, Any] | None = None) -> None:
        """Fail early if the template uses a variable the dataset lacks, or cannot render."""
        unknown = sorted(self.variables - set(input_fields))
        if unknown:
            raise TemplateError(
                f"uses variable '{unknown[0]}' that the dataset does not provide (input fields: {', '.join(input_fields)})",
                file=self.source,
            )
        if not any(role == "user" for role, _ in self.messages):
            raise TemplateError("needs at least one user message", file=self.source)
        if sample is not None:
            self.render(sample)

    def _render_one(self, index: int, template: jinja2.Template, inputs: Mapping[str, Any]) -> str:
        try:
            return template.render(**inputs)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}", file=self.source, where=f"messages[{index}].content") from None
        except SecurityError as exc:
            raise TemplateError(f"unsafe template rejected by the sandbox: {exc}", file=self.source, where=f"messages[{index}].content") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"cannot render: {exc}", file=self.source, where=f"messages[{index}].content") from None
        except OverflowError as exc:  # the sandbox's cap on range()
            raise TemplateError(f"unsafe template rejected by the sandbox: {exc}", file=self.source, where=f"messages[{index}].content") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, AssertionError, RecursionError) as exc:
            # {{ 1/0 }}, {{ review + 1 }}, {{ review|dictsort }}, {{ review|truncate(-1) }}, a recursive macro, ...
            raise TemplateError(f"cannot render: {type(exc).__name__}: {exc}", file=self.source, where=f"messages[{index}].content") from None

    def _last_user(self) -> int:
        return max(i for i, (role, _) in enumerate(self.messages) if role == "user")

    def render(self, inputs: Mapping[str, Any], demos: Sequence[Demo] = ()) -> list[dict[str, str]]:
        """Chat messages; demos go in as user/assistant turns before the final user turn."""
        compiled = self._compiled
        last = self._last_user()
        out: list[dict[str, str]] = []
        for i, (role, template) in enumerate(compiled):
            if i == last:
                for demo in demos:
                    out.append({"role": "user", "content": self._render_one(i, template, demo.inputs)})
                    out.append({"role": "assistant", "content": demo.answer})
            out.append({"role": role, "content": self._render_one(i, template, inputs)})
        return out

    def render_text(self, inputs: Mapping[str, Any], demos: Sequence[Demo] = (), answer_cue: str = "Answer:") -> str:
        """One plain-text prompt for a completion endpoint, ending in the answer cue."""
        compiled = self._compiled
        last = self._last_user()
        parts: list[str] = []
        for i, (role, template) in enumerate(compiled):
            if i == last:
                for demo in demos:
                    parts.append(f"{self._render_one(i, template, demo.inputs).strip()}\n{answer_cue} {demo.answer}")
                parts.append(f"{self._render_one(i, template, inputs).strip()}\n{answer_cue}")
            elif role == "assistant":
                parts.append(f"{answer_cue} {self._render_one(i, template, inputs).strip()}")
            else:
                parts.append(self._render_one(i, template, inputs).strip())
        return "\n\n".join(parts)

    def text(self) -> str:
        """The template as a reviewer reads it."""
        return "\n\n".join(f"[{role}]\n{content}" for role, content in self.messages)
