"""promptfoo's assertions, scored as promptfoo scores a test: each type on a pass and a fail, weights, `not-`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import similarity
from migrator.assertions import NEEDS_A_MODEL, answer, describe, rubrics, score, unsupported


def _one(kind: str, value: Any = None, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": kind, **({} if value is None else {"value": value}), **extra}]


# (assertion type, value, a reply that passes, a reply that fails)
CASES: list[tuple[str, Any, str, str]] = [
    ("equals", "positive", "positive", "Positive"),  # byte for byte, as promptfoo compares
    ("equals", 4, "4", "4.0"),  # a YAML number is compared as JavaScript writes it
    ("equals", {"label": "positive", "score": 1}, '{"score": 1.0, "label": "positive"}', '{"label": "positive"}'),
    ("contains", "refund", "We will refund you.", "We will Refund you."),
    ("icontains", "REFUND", "we will refund you", "we will return it"),
    ("contains-any", ["yes", "sure"], "sure thing", "no"),
    ("contains-any", "yes, sure", "sure thing", "no"),  # a CSV cell's comma-separated text
    ("contains-all", ["Paris", "France"], "Paris, France", "Paris, Texas"),
    ("icontains-any", ["YES", "Sure"], "sure thing", "nope"),
    ("icontains-all", ["paris", "FRANCE"], "PARIS is in france", "Paris"),
    ("starts-with", "The answer", "The answer is 4", "Answer: 4"),
    ("regex", r"^\d{3}-\d{4}$", "555-1234", "555-1234\n"),  # JavaScript's $ does not match before a final newline
    ("regex", r"(?<year>\d{4})", "in 2024", "in two thousand"),  # a named group, JavaScript's spelling
    ("regex", r"^\d+$", "42", "٤٢"),  # JavaScript's \d is ASCII
    ("is-json", None, '{"a": 1}', "{'a': 1}"),
    ("is-json", None, "[1, 2]", "NaN"),  # JSON.parse has no NaN
    ("is-json", {"type": "object", "required": ["total"]}, '{"total": 3}', '{"sum": 3}'),
    ("is-json", "type: object\nrequired: [total]\n", '{"total": 3}', "[3]"),  # a schema written as YAML
    ("contains-json", None, 'Here it is: {"a": {"b": 2}} done', "Here it is: [1, 2]"),
    ("contains-json", None, 'As YAML: {a: 1, b: "x"} // promptfoo reads that too', "no object here"),
    ("contains-json", {"type": "object", "required": ["a"]}, 'x {"b": 1} y {"a": 2}', 'x {"b": 1}'),
    ("levenshtein", "kitten", "sitting", "a completely different reply"),
]


@pytest.mark.parametrize(("kind", "value", "passes", "fails"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_type_scores_1_on_a_pass_0_on_a_fail_and_not_inverts_it(
    kind: str, value: Any, passes: str, fails: str
) -> None:
    assert unsupported(_one(kind, value)[0]) is None
    assert (score(passes, _one(kind, value)), score(fails, _one(kind, value))) == (1.0, 0.0)
    assert (score(passes, _one(f"not-{kind}", value)), score(fails, _one(f"not-{kind}", value))) == (0.0, 1.0)


# the one-line JavaScript forms promptfoo suites use, checked by pattern (no JavaScript runs)
JS_CASES: list[tuple[str, str, str]] = [
    ("output.includes('refund')", "a refund", "a return"),
    ('output.toLowerCase().includes("refund")', "A REFUND", "A RETURN"),
    ("output.trim() === 'positive'", "  positive\n", "positive."),
    ("output === 'positive';", "positive", "positive "),
    ("// a greeting\nreturn output.startsWith('Dear');\n", "Dear Ann", "Hi Ann"),  # a function body
    ("output.endsWith('!')\n", "Hi!", "Hi"),  # a YAML block's last newline: promptfoo trims it, one line
    ("output.endsWith('.')", "Done.", "Done"),
    ("output.length < 10", "short", "this one is too long"),
    ("output.length <= 2", "😀", "😀😀"),  # .length counts UTF-16 units: an emoji is 2
    ("!output.includes('sorry')", "Here you go", "I am sorry"),
    ("JSON.parse(output).label === 'positive'", '{"label": "positive"}', '{"label": "negative"}'),
    ("JSON.parse(output).total === 3", '{"total": 3.0}', '{"total": "3"}'),  # === does not convert
    ("JSON.parse(output).total == 3", '{"total": "3"}', '{"total": "4"}'),  # == does
    ("JSON.parse(output)['items'][0].ok === true", '{"items": [{"ok": true}]}', '{"items": [{"ok": 1}]}'),
    ("(output.includes(context.vars.name))", "Hello Ann", "Hello Bob"),
]


@pytest.mark.parametrize(("code", "passes", "fails"), JS_CASES, ids=[c[0] for c in JS_CASES])
def test_javascript_one_liners_score_as_promptfoo_runs_them(code: str, passes: str, fails: str) -> None:
    checks = _one("javascript", code, vars={"name": "Ann"})
    assert unsupported(checks[0]) is None
    assert (score(passes, checks), score(fails, checks)) == (1.0, 0.0)


def test_a_javascript_error_fails_even_under_not() -> None:
    # JSON.parse throws on a reply that is not JSON: promptfoo fails the assertion, not- or not
    for kind in ("javascript", "not-javascript"):
        assert score("positive", _one(kind, "JSON.parse(output).label === 'positive'")) == 0.0


def test_javascript_forms_that_are_not_translated_say_so() -> None:
    for code in (
        "output.split(' ').length > 3",
        "output.includes('a') && output.includes('b')",
        "file://check.js",
        "return output.includes('a')",  # one line: promptfoo writes its own `return` before it, a syntax error
        "output.includes('a');\noutput.includes('b')",  # a function body that returns nothing: promptfoo fails it
    ):
        assert unsupported(_one("javascript", code)[0]), code


# python assertions with a reply that passes and one that fails: scored here, and by promptfoo below
PY_SHARED = [
    ("'positive' in output.lower()", "POSITIVE", "negative"),
    ("len(output.split()) <= 3", "one two three", "one two three four"),
    ("json.loads(output)['total'] == 3", '{"total": 3}', '{"total": 4}'),
    ("context['vars']['name'] in output", "Hello Ann", "Hello Bob"),
]


@pytest.mark.parametrize(
    ("expr", "passes", "fails"),
    [
        *PY_SHARED,
        ("re.fullmatch(r'[A-Z]+', output) is not None", "ABC", "abc"),
        ("all(w.isalpha() for w in output.split())", "only words here", "words and 42"),
        ("'true' if output else 'false'", "x", ""),  # promptfoo reads "true" and "false" as a verdict
    ],
)
def test_python_expressions_score_as_promptfoo_runs_them(expr: str, passes: str, fails: str) -> None:
    checks = _one("python", expr, vars={"name": "Ann"})
    assert unsupported(checks[0]) is None
    assert (score(passes, checks), score(fails, checks)) == (1.0, 0.0)


def test_a_number_a_script_returns_is_its_score_and_an_error_fails() -> None:
    assert score("abcd", _one("python", "len(output) / 8")) == 0.5
    assert score("abcd", _one("not-python", "len(output) / 8")) == 0.5  # promptfoo flips the pass, not the number
    assert score("abcd", _one("python", "{'pass': True, 'score': 0.25}")) == 0.25
    assert score("abcd", _one("python", "int(output)")) == 0.0  # ValueError: the assertion fails
    assert score("abcd", _one("not-python", "int(output)")) == 0.0


def test_python_that_is_not_one_expression_or_reaches_out_is_not_translated() -> None:
    assert "not one expression" in str(unsupported(_one("python", "if output:\n    return True\nreturn False")[0]))
    assert unsupported(_one("python", "return 'a' in output")[0])  # one line: promptfoo adds the `return`
    assert "numpy" in str(unsupported(_one("python", "numpy.mean([1])")[0]))
    assert "internals" in str(unsupported(_one("python", "().__class__.__bases__")[0]))
    assert unsupported(_one("python", "file://grade.py")[0])


def test_the_score_is_the_weighted_mean_as_promptfoo_computes_it() -> None:
    # promptfoo's own example: equals (weight 2) fails, contains (weight 1) passes: 1/3
    checks = [{"type": "equals", "value": "Hello world", "weight": 2}, {"type": "contains", "value": "world"}]
    assert score("Goodbye world", checks) == pytest.approx(1 / 3)
    assert score("Hello world", checks) == 1.0
    # a weight of 0 counts for nothing
    assert (
        score("nope", [{"type": "contains", "value": "yes", "weight": 0}, {"type": "contains", "value": "no"}]) == 1.0
    )
    assert score("anything", []) == 1.0  # no assertion: promptfoo passes the test


def test_an_assert_set_scores_as_one_weighted_assertion() -> None:
    checks = [
        {
            "type": "assert-set",
            "weight": 3,
            "assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b"}],
        },
        {"type": "contains", "value": "c"},
    ]
    assert score("a c", checks) == pytest.approx((0.5 * 3 + 1) / 4)
    assert unsupported(checks[0]) is None
    assert unsupported({"type": "assert-set", "assert": [{"type": "factuality", "value": "x"}]})


def test_what_needs_a_model_or_is_not_the_reply_is_refused_with_the_reason() -> None:
    for kind in ("factuality", "model-graded-closedqa", "not-g-eval"):
        assert unsupported(_one(kind, "x")[0]) == NEEDS_A_MODEL[kind.removeprefix("not-")]
    # llm-rubric is graded by the judge; its not- form and an empty rubric are not
    assert unsupported(_one("llm-rubric", "polite")[0]) is None
    assert "not translated" in str(unsupported(_one("not-llm-rubric", "rude")[0]))
    assert unsupported({"type": "llm-rubric", "value": " "}) == "has no rubric text as its `value`"
    assert "objective" in str(unsupported({"type": "latency", "threshold": 500}))
    assert unsupported({"type": "rouge-n", "value": "x"}) == "not translated yet"
    assert unsupported({"type": "contains", "value": "x", "transform": "output.trim()"})
    assert unsupported({"type": "contains"}) == "has no `value`"
    assert unsupported({"type": "regex", "value": "(unclosed"}) == "a regex Python cannot compile"
    with pytest.raises(ValueError, match="needs the judge"):
        score("x", _one("llm-rubric", "polite"))  # with no grade from the judge


def test_a_rubric_counts_with_the_judges_grade_beside_the_other_checks() -> None:
    checks = [
        {"type": "icontains", "value": "refund"},
        {"type": "assert-set", "assert": [{"type": "llm-rubric", "value": "polite"}, {"type": "contains", "value": "!"}]},
        {"type": "llm-rubric", "value": "states the amount", "weight": 2},
    ]
    assert rubrics(checks) == ["polite", "states the amount"]
    graded = {"polite": 0.75, "states the amount": 0.0}
    # (1 + (0.75 + 0) / 2 + 0 * 2) / 4
    assert score("Your refund is sent", checks, graded) == pytest.approx((1 + 0.375) / 4)
    with pytest.raises(ValueError, match="list"):
        score("x", "positive")  # type: ignore[arg-type]


# --- similar: scored with migrator's own embeddings (not promptfoo's OpenAI ones: no parity test) ---

needs_similarity = pytest.mark.skipif(similarity.missing() is not None, reason=str(similarity.missing()))
REFUND = "Your refund has been processed and will reach your account within 5 business days."
REPHRASED = "We've issued your refund; expect it in your account in about five working days."
UNRELATED = "Our store in Leeds opens at 9am on Saturdays."


@needs_similarity
def test_similar_scores_the_cosine_as_promptfoo_does_and_not_similar_its_complement() -> None:
    close, far = similarity.cosines(REPHRASED, [REFUND, UNRELATED])
    assert close > 0.75 > far  # promptfoo's default threshold between them
    assert unsupported(_one("similar", REFUND)[0]) is None
    assert score(REPHRASED, _one("similar", REFUND)) == pytest.approx(close)
    (unrelated,) = similarity.cosines(UNRELATED, [REFUND])
    assert unrelated < 0.75  # a fail: it still scores its cosine
    assert score(UNRELATED, _one("similar", REFUND)) == pytest.approx(unrelated)
    assert score(REPHRASED, _one("not-similar", REFUND)) == pytest.approx(1 - close)
    assert score(REPHRASED, _one("similar:cosine", REFUND)) == score(REPHRASED, _one("similar:dot", REFUND))
    distance = (2 - 2 * close) ** 0.5  # unit vectors
    assert score(REPHRASED, _one("similar:euclidean", REFUND)) == pytest.approx(1 / (1 + distance))
    assert score(REPHRASED, _one("not-similar:euclidean", REFUND)) == pytest.approx(1 - 1 / (1 + distance))
    assert score("", _one("similar", REFUND)) == score("", _one("not-similar", REFUND)) == 0.0


@needs_similarity
def test_similar_to_a_list_takes_the_first_value_that_passes_else_the_closest() -> None:
    close, far = similarity.cosines(REPHRASED, [REFUND, UNRELATED])
    assert score(REPHRASED, _one("similar", [UNRELATED, REFUND])) == pytest.approx(close)
    # with no value over the threshold: the closest one's score
    assert score(REPHRASED, _one("similar", [UNRELATED, REFUND], threshold=0.99)) == pytest.approx(close)
    # a threshold both pass: the first value's score, as promptfoo stops at the first pass
    assert score(REPHRASED, _one("similar", [UNRELATED, REFUND], threshold=0.0)) == pytest.approx(far)
    # not-: the first value it is too close to, else the closest
    assert score(REPHRASED, _one("not-similar", [UNRELATED, REFUND])) == pytest.approx(1 - close)
    assert score(REPHRASED, _one("not-similar", [UNRELATED, REFUND], threshold=0.99)) == pytest.approx(1 - close)
    assert score(REPHRASED, _one("not-similar", [UNRELATED], threshold=0.99)) == pytest.approx(1 - far)


@needs_similarity
def test_similar_refuses_values_it_cannot_embed_and_says_when_the_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert unsupported(_one("similar", [])[0]) == "has no values"
    assert unsupported(_one("similar", {"a": 1})[0]) == "its value is not a text or a list of texts"
    assert unsupported(_one("similar", ["a", 2])[0]) == "its value is not a text or a list of texts"
    assert unsupported(_one("similar", "a", threshold="high")[0]) == "has a threshold that is not a number"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed
    reason = str(unsupported(_one("not-similar:cosine", "a")[0]))
    assert "optional extra `similarity`" in reason and "pip install 'migrator[similarity]'" in reason


def test_the_answer_a_demo_shows_is_the_equals_value_or_none() -> None:
    assert answer([{"type": "icontains", "value": "x"}, {"type": "equals", "value": "positive"}]) == "positive"
    assert answer([{"type": "equals", "value": 4.0}]) == "4"
    assert answer([{"type": "equals", "value": {"a": 1}}]) == '{"a": 1}'
    assert answer([{"type": "icontains", "value": "positive"}, {"type": "not-equals", "value": "negative"}]) is None
    assert answer("positive") == "positive"  # a lockfile's demo pool keeps the answer itself
    assert (
        describe([{"type": "icontains", "value": "refund"}, {"type": "is-json"}])
        == 'a reply that passes: icontains "refund"; is-json'
    )


# --- the same replies and assertions, scored by promptfoo itself -------------------------

PY_CASES = [
    *PY_SHARED,
    ("len(output) / 8", "abcd", "abcdefgh"),
    ("return 'x' in output\n", "xyz", "abc"),
]


def test_promptfoo_scores_every_case_as_migrator_does(
    tmp_path: Path, promptfoo_scores: Callable[[Path, str], dict[str, float]]
) -> None:
    """Each reply and assertions above, run through promptfoo's echo provider (it replies with the prompt)."""
    cases: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, value, passes, fails in CASES:
        for reply in (passes, fails):
            cases += [(reply, _one(kind, value)), (reply, _one(f"not-{kind}", value))]
    for code, passes, fails in JS_CASES:
        cases += [(reply, _one("javascript", code)) for reply in (passes, fails)]
    for expr, passes, fails in PY_CASES:
        cases += [(reply, _one(kind, expr)) for reply in (passes, fails) for kind in ("python", "not-python")]
    cases.append(
        (
            "Goodbye world",
            [{"type": "equals", "value": "Hello world", "weight": 2}, {"type": "contains", "value": "world"}],
        )
    )
    cases.append(("a c", [{"type": "assert-set", "weight": 3, "assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b"}]},
                          {"type": "contains", "value": "c"}]))  # fmt: skip
    # the reply goes in as an object's field: promptfoo would trim a string var
    tests = [
        {"description": f"c{i}", "vars": {"_prompt": {"text": reply}, "name": "Ann"}, "assert": checks}
        for i, (reply, checks) in enumerate(cases)
    ]
    config = {"prompts": ["{{ _prompt.text }}"], "providers": ["echo"], "tests": tests}
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))

    promptfoo_says = promptfoo_scores(tmp_path, "promptfooconfig.yaml")

    migrator_says = {
        f"c{i}": score(reply, [{**c, "vars": {"name": "Ann"}} for c in checks])
        for i, (reply, checks) in enumerate(cases)
    }
    assert promptfoo_says == pytest.approx(migrator_says)
    assert set(migrator_says.values()) > {0.0, 1.0}  # passes, failures and a script's own score
