"""A prompt template recovered from the texts an app sent: what every text shares stays, the rest becomes variables.

Logs hold rendered prompts, not the template: ``"Customer tier: gold\\nQuestion: where is my order?"``
on one line, ``"Customer tier: basic\\nQuestion: can I pay by card?"`` on the next. The parts all
texts share, in order, are the template's constant text; each stretch between them that differs is a
variable, named from the label just before it (``tier``, ``question``) where there is one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Inferred", "infer_template", "variable_name"]

# a shared run of this many words is the template's text, even with no label or line break in it
_MIN_WORDS = 3
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_LABEL = re.compile(r"([A-Za-z][A-Za-z0-9 _-]{0,40}?)\s*[:=]\s*[\"'(\[<]?\s*$")


@dataclass(frozen=True)
class Inferred:
    """The template (Jinja2 text) and, per input text, the value of each variable."""

    template: str
    variables: tuple[str, ...]
    values: tuple[dict[str, str], ...]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _shared(texts: Sequence[list[str]]) -> list[str]:
    """The tokens every text has, in order (matched blocks of the first against each other text)."""
    skeleton = texts[0]
    for other in texts[1:]:
        matcher = difflib.SequenceMatcher(None, skeleton, other, autojunk=False)
        skeleton = [tok for block in matcher.get_matching_blocks() for tok in skeleton[block.a : block.a + block.size]]
    return skeleton


def _anchors(texts: Sequence[str]) -> list[str]:
    """The constant stretches of text, in order: the shared runs that look like the template's own."""
    tokenised = [_tokens(t) for t in texts]
    skeleton = _shared(tokenised)
    first = tokenised[0]
    matcher = difflib.SequenceMatcher(None, first, skeleton, autojunk=False)
    runs = []
    for block in (b for b in matcher.get_matching_blocks() if b.size):
        run = "".join(first[block.a : block.a + block.size])
        starts, ends = block.a == 0, block.a + block.size == len(first)
        run = _whole_words(run, keep_start=starts, keep_end=ends)
        edge = (starts and all(t.startswith(run) for t in texts)) or (ends and all(t.endswith(run) for t in texts))
        # at an edge, shared words are the template's ("Be brief."), a lone "?" every question ends with is not
        if run and ((edge and re.search(r"\w", run)) or _framing(run)):
            runs.append(run)
    return runs


def _whole_words(run: str, *, keep_start: bool, keep_end: bool) -> str:
    """A shared run without the part-words at its ends, which belong to the values next to it (2024-|05-01)."""
    if not keep_end:
        run = re.sub(r"[\w-]+$", "", run)
    if not keep_start:
        run = re.sub(r"^\w+", "", run)
    return run


def _framing(run: str) -> bool:
    """Text that frames fields (a label, a line break, several words), not a word the values share by chance."""
    words = re.findall(r"\w+", run)
    return len(words) >= _MIN_WORDS or (bool(re.search(r"[\n:=<>\[\]{}|#]", run)) and run.strip(" ") != "")


def _pattern(anchors: Sequence[str]) -> re.Pattern[str]:
    parts = [re.escape(a) for a in anchors]
    return re.compile("^(.*?)" + "(.*?)".join(parts) + "(.*?)$", re.DOTALL) if parts else re.compile("^(.*)$", re.DOTALL)


def variable_name(label: str, taken: set[str], fallback: str) -> str:
    """A Jinja2-safe, unused variable name from a label ("Customer tier" -> ``customer_tier``)."""
    base = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_") or fallback
    if base[0].isdigit():
        base = f"{fallback}_{base}"
    name, n = base, 2
    while name in taken or name in _RESERVED:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


# names Jinja2 or migrator's templates give a meaning of their own
_RESERVED = frozenset({"loop", "self", "true", "false", "none", "range", "demos", "namespace", "caller", "varargs", "kwargs"})


def infer_template(texts: Sequence[str], *, fallback: str = "input", taken: set[str] | None = None) -> Inferred:
    """The template the texts were rendered from (one text: itself, with no variable).

    Args:
        fallback: the name of a variable with no label before it (then ``<fallback>_2``, ...).
        taken: names already used in other messages of the same prompt; the new ones are added.
    """
    taken = set() if taken is None else taken
    if len(set(texts)) <= 1:
        return Inferred(_escaped(texts[0]) if texts else "", (), tuple({} for _ in texts))
    anchors = _anchors(texts)
    while True:
        pattern = _pattern(anchors)
        matches = [pattern.match(t) for t in texts]
        if all(matches) or not anchors:
            break
        anchors = anchors[:-1]  # an anchor found out of order in some text: drop the last and retry
    groups = [m.groups() if m else (t,) for m, t in zip(matches, texts, strict=True)]
    slots = len(groups[0])
    varying = [any(g[i] != groups[0][i] for g in groups) for i in range(slots)]
    template, names = "", []
    for i in range(slots):
        if varying[i]:
            label = _LABEL.search(template)
            name = variable_name(label.group(1) if label else "", taken, fallback)
            names.append((i, name))
            template += "{{ " + name + " }}"
        else:
            template += _escaped(groups[0][i])
        if i < len(anchors):
            template += _escaped(anchors[i])
    values = tuple({name: g[i] for i, name in names} for g in groups)
    return Inferred(template, tuple(n for _, n in names), values)


def _escaped(text: str) -> str:
    """Constant text that Jinja2 renders as is: ``{{``, ``{%`` and ``{#`` wrapped in a raw block."""
    if not re.search(r"\{[{%#]|[}%#]\}", text):
        return text
    return "{% raw %}" + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}") + "{% endraw %}"
