"""Prompt candidates and few-shot demo pools the search chooses among.

Candidates are generated once per migration: the original prompt, deterministic
transforms of it that matter across model families, and (with a proposer model) DSPy
rewrites. Demo pools pick k train examples: random, stratified by label, or the
nearest neighbours of each input (TF-IDF + NearestNeighbors).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.dataset import Example
from migrator.errors import SpecError
from migrator.metrics import Metric
from migrator.prompts import Demo, PromptTemplate, format_answer

__all__ = ["DemoPool", "PromptCandidate", "TRANSFORMS", "apply_transforms"]


@dataclass(frozen=True)
class PromptCandidate:
    """A prompt the search may pick, with where it came from."""

    id: str
    template: PromptTemplate
    origin: Mapping[str, Any] = field(default_factory=dict)


def _system_text(template: PromptTemplate) -> str:
    return "\n\n".join(c.strip() for r, c in template.messages if r == "system")


def _non_system(template: PromptTemplate) -> list[tuple[str, str]]:
    return [(r, c) for r, c in template.messages if r != "system"]


def _with_last_user(messages: list[tuple[str, str]], edit: Callable[[str], str]) -> tuple[tuple[str, str], ...]:
    last = max(i for i, (r, _) in enumerate(messages) if r == "user")
    return tuple((r, edit(c) if i == last else c) for i, (r, c) in enumerate(messages))


def _user_turn(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Instruction moved into the user turn (small chat models often ignore system)."""
    system = _system_text(template)
    rest = _non_system(template)
    if not system:
        return template.messages
    return _with_last_user(rest, lambda c: f"{system}\n\n{c}")


def _system_turn(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Format rule restated as a short system turn, the original instruction kept."""
    system = _system_text(template)
    head = f"{system}\n\n{metric.format_hint()}" if system else metric.format_hint()
    return (("system", head), *_non_system(template))


def _format_line(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """An explicit output-format line derived from the metric, right before the answer."""
    return _with_last_user(list(template.messages), lambda c: f"{c}\n\n{metric.format_hint()}")


def _xml(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    system = _system_text(template)
    rest = _non_system(template)
    out: list[tuple[str, str]] = []
    if system:
        out.append(("system", f"<instructions>\n{system}\n</instructions>\n<format>{metric.format_hint()}</format>"))
    out += [(r, f"<input>\n{c}\n</input>" if r == "user" else c) for r, c in rest]
    return tuple(out)


def _markdown(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    system = _system_text(template)
    rest = _non_system(template)
    out: list[tuple[str, str]] = []
    if system:
        out.append(("system", f"## Instructions\n{system}\n\n## Output format\n{metric.format_hint()}"))
    out += [(r, f"## Input\n{c}" if r == "user" else c) for r, c in rest]
    return tuple(out)


def _terse(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Only the format rule and the input, for small models that drown in long prompts."""
    rest = _non_system(template)
    return _with_last_user(rest, lambda c: f"{c}\n{metric.format_hint()}")


TRANSFORMS: dict[str, Callable[[PromptTemplate, Metric], tuple[tuple[str, str], ...]]] = {
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
        out.append(PromptCandidate(name, PromptTemplate(messages, source=f"{original.source} [{name}]"), {"kind": "transform", "transform": name}))
    return out


def _input_text(example: Example) -> str:
    return " \n".join(str(v) for v in example.inputs.values())


class DemoPool:
    """Few-shot demos from the train split, chosen by strategy and k.

    Args:
        train: the examples demos are drawn from (never dev or test).
        seed: fixes the random and stratified orders.
    """

    def __init__(self, train: Sequence[Example], seed: int = 0) -> None:
        self.train = tuple(train)
        self.seed = seed
        self._knn: Any = None
        self._vectorizer: Any = None

    def _demo(self, ex: Example) -> Demo:
        return Demo(ex.inputs, format_answer(ex.expected))

    def _random(self, k: int) -> list[Example]:
        order = list(self.train)
        random.Random(self.seed).shuffle(order)
        return order[:k]

    def _stratified(self, k: int) -> list[Example]:
        by_label: dict[str, list[Example]] = {}
        for ex in self._random(len(self.train)):
            by_label.setdefault(format_answer(ex.expected), []).append(ex)
        queues = [by_label[label] for label in sorted(by_label)]
        picked: list[Example] = []
        while len(picked) < k and any(queues):
            for queue in queues:
                if queue and len(picked) < k:
                    picked.append(queue.pop(0))
        return picked

    def nearest(self, example: Example, k: int) -> list[Example]:
        """The k train examples whose inputs are closest to this one (TF-IDF cosine)."""
        if self._knn is None:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.neighbors import NearestNeighbors

            self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            matrix = self._vectorizer.fit_transform([_input_text(ex) for ex in self.train])
            self._knn = NearestNeighbors(metric="cosine").fit(matrix)
        n = min(len(self.train), k + 1)
        _, idx = self._knn.kneighbors(self._vectorizer.transform([_input_text(example)]), n_neighbors=n)
        found = [self.train[i] for i in idx[0] if self.train[i].id != example.id]
        return found[:k]

    def demos(self, strategy: str, k: int, example: Example) -> tuple[Demo, ...]:
        """Demos for one example; only ``knn`` depends on the example."""
        if k <= 0 or not self.train:
            return ()
        if strategy == "random":
            chosen = self._random(k)
        elif strategy == "stratified":
            chosen = self._stratified(k)
        elif strategy == "knn":
            chosen = self.nearest(example, k)
        else:
            raise ValueError(f"The 'strategy' parameter must be random, stratified or knn. Got {strategy!r} instead.")
        return tuple(self._demo(ex) for ex in chosen)
