"""Scoring functions: (model output, expected value) -> score in [0, 1].

Pure functions, looked up by name in one registry; ``python:pkg.mod:fn`` names a
user function with the same signature. ``assertions`` scores a promptfoo test's own
assertions (``migrator.assertions``): its expected value is a list of checks, not an answer.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from migrator import assertions
from migrator.errors import SpecError
from migrator.parsing import extract_json, extract_label, extract_number, normalize_text, strip_fences
from migrator.prompts import format_answer
from migrator.spec import MetricSpec

__all__ = ["METRICS", "Grader", "Metric", "build_metric"]

Scorer = Callable[[str, Any], float]


class Grader(Protocol):
    """A scorer that calls a model (an LLM judge, ``migrator.judge``): the score in [0, 1] and why."""

    async def grade(self, client: Any, example: Any, reply: str) -> tuple[float, str]: ...


@dataclass(frozen=True)
class Metric:
    """A named scorer plus what it tells the prompt transforms about the output format."""

    name: str
    score: Scorer
    labels: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    # the literal reply an expected value stands for; None when it has none (a list of checks)
    answers: Callable[[Any], str | None] = format_answer
    # what an expected value asks of a reply, in words
    explains: Callable[[Any], str] = format_answer
    # the spec it was built from: a pickled metric (sent to another process) is built again from it
    spec: MetricSpec | None = field(default=None, compare=False, repr=False)
    # the judge metric's grader, attached where its endpoint is known (``migrator.judge.attach``);
    # ``score`` is then only the exact comparison that checks the judge
    grader: Grader | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self.spec is None:
            return super().__reduce__()
        return build_metric, (self.spec,)

    @property
    def calls_per_answer(self) -> int:
        """Model calls to score one answer: 0 in process, 1 for an LLM judge's (``assertions`` with a
        judge: one per llm-rubric, counted as one, the usual test's)."""
        judged = self.name == "judge" or (self.name == "assertions" and self.spec is not None and self.spec.model is not None)
        return int(judged)

    def answer(self, expected: Any) -> str | None:
        """The reply a demo shows for this expected value; None when it has no literal one (demo pools skip the row)."""
        return self.answers(expected)

    def expectation(self, expected: Any) -> str:
        """What this expected value asks of a reply, as a proposer reads it beside a wrong answer."""
        return self.explains(expected)

    def format_hint(self) -> str:
        """One line describing the expected answer, derived from the metric."""
        if self.labels:
            return "Answer with exactly one of: " + ", ".join(self.labels) + ". Nothing else."
        if self.fields:
            return "Answer with only a JSON object with the keys: " + ", ".join(self.fields) + "."
        if self.name == "numeric":
            return "Answer with a number only."
        return "Answer with the answer only."


def _exact(output: str, expected: Any) -> float:
    return float(normalize_text(strip_fences(output)) == normalize_text(str(expected)))


def _no_answer(expected: Any) -> None:
    return None


def _label(labels: Sequence[str]) -> Scorer:
    def score(output: str, expected: Any) -> float:
        got = extract_label(output, labels)
        return float(got is not None and normalize_text(got) == normalize_text(str(expected)))

    return score


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", normalize_text(text))


def _f1(output: str, expected: Any) -> float:
    got, want = _tokens(strip_fences(output)), _tokens(str(expected))
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _numeric(tolerance: float) -> Scorer:
    def score(output: str, expected: Any) -> float:
        got = extract_number(output)
        try:
            want = float(expected)
        except (TypeError, ValueError):
            return 0.0
        return float(got is not None and _close(got, want, tolerance))

    return score


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[\d,]*\.?\d+\s*", value):
        return float(value.replace(",", ""))
    return None


def _field_equal(got: Any, want: Any, tolerance: float) -> bool:
    if want is None:
        return got is None or (isinstance(got, str) and normalize_text(got) in ("", "null", "none"))
    want_num, got_num = _as_number(want), _as_number(got)
    if want_num is not None and not isinstance(want, str):
        return got_num is not None and _close(got_num, want_num, tolerance)
    if got is None:
        return False
    return normalize_text(str(got)) == normalize_text(str(want))


def _json_fields(fields: Sequence[str], tolerance: float) -> Scorer:
    def score(output: str, expected: Any) -> float:
        got = extract_json(output)
        keys = list(fields) or (list(expected) if isinstance(expected, dict) else [])
        if not isinstance(got, dict) or not isinstance(expected, dict) or not keys:
            return 0.0
        return sum(_field_equal(got.get(k), expected.get(k), tolerance) for k in keys) / len(keys)

    return score


def _python(target: str, where: str) -> Scorer:
    module_name, _, fn_name = target.partition(":")
    if not module_name or not fn_name:
        raise SpecError(f"expected 'python:package.module:function', got 'python:{target}'", where=where)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"cannot import {module_name!r}: {exc}", where=where) from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise SpecError(f"{module_name!r} has no function {fn_name!r}", where=where)

    def score(output: str, expected: Any) -> float:
        return min(1.0, max(0.0, float(fn(output, expected))))

    return score


METRICS = ("exact", "label", "f1", "json_fields", "numeric", "assertions", "judge", "similarity", "python:<module>:<function>")


def build_metric(spec: MetricSpec, *, file: str | None = None) -> Metric:
    """The scorer a spec names; errors name the ``metric`` field."""
    return replace(_built(spec, file), spec=spec)


def _built(spec: MetricSpec, file: str | None) -> Metric:
    name = spec.name
    if name == "judge":
        if spec.model is None:
            raise SpecError("the 'judge' metric needs 'model: <litellm id>', the model that judges", file=file, where="metric.model")
        if not spec.reference and not spec.criteria:
            raise SpecError("a judge with 'reference: false' needs 'criteria: ...', what a good reply does", file=file, where="metric.criteria")
        if spec.reference:
            return Metric(name, _exact)
        # with no reference the expected value is no reply: demos skip it, and a proposer reads the criteria
        criteria = spec.criteria or ""
        return Metric(name, _exact, answers=_no_answer, explains=lambda _: criteria)
    for key in ("criteria",) if name == "assertions" else ("model", "criteria"):
        if getattr(spec, key) is not None:
            raise SpecError(f"only the 'judge' metric takes '{key}', not {name!r}", file=file, where=f"metric.{key}")
    if name == "exact":
        return Metric(name, _exact)
    if name == "label":
        if not spec.labels:
            raise SpecError("the 'label' metric needs 'labels: [...]'", file=file, where="metric.labels")
        return Metric(name, _label(spec.labels), labels=spec.labels)
    if name == "f1":
        return Metric(name, _f1)
    if name == "numeric":
        return Metric(name, _numeric(spec.tolerance))
    if name == "json_fields":
        return Metric(name, _json_fields(spec.fields or (), spec.tolerance), fields=spec.fields or ())
    if name == "assertions":
        return Metric(name, assertions.score, answers=assertions.answer, explains=assertions.describe)
    if name == "similarity":
        from migrator import similarity

        similarity.require(file)  # at load, not mid-search: the extra is optional
        return Metric(name, similarity.score)
    if name.startswith("python:"):
        try:
            return Metric(name, _python(name.removeprefix("python:"), "metric.name"))
        except SpecError as exc:
            raise SpecError(str(exc).removeprefix("metric.name: "), file=file, where="metric.name") from None
    raise SpecError(f"unknown metric {name!r}, expected one of {', '.join(METRICS)}", file=file, where="metric.name")
