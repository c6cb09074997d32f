"""Scoring: each metric a spec can name, scored on the replies models really give."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import SpecError
from migrator.metrics import Metric, build_metric
from migrator.spec import MetricSpec


def _metric(name: str, **kwargs: object) -> Metric:
    return build_metric(MetricSpec(name=name, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "expected", "score"),
    [
        ("Paris", "Paris", 1.0),
        ("  paris.", "Paris", 1.0),
        ("```\nParis\n```", "Paris", 1.0),
        ("The answer is Paris", "Paris", 0.0),
        ("42", 42, 1.0),
        ("Lyon", "Paris", 0.0),
    ],
)
def test_exact(reply: str, expected: object, score: float) -> None:
    assert _metric("exact").score(reply, expected) == score


@pytest.mark.parametrize(
    ("reply", "expected", "score"),
    [
        ("positive", "positive", 1.0),
        ("Positive.", "positive", 1.0),
        ("I'd say this review is negative.", "negative", 1.0),
        ("negative\n\nReview: great stuff, positive", "negative", 1.0),
        ("positive", "negative", 0.0),
        ("Thanks for sharing! The customer feels this way.", "positive", 0.0),
    ],
)
def test_label(reply: str, expected: str, score: float) -> None:
    assert _metric("label", labels=("positive", "negative")).score(reply, expected) == score


def test_label_without_labels_names_metric_labels() -> None:
    with pytest.raises(SpecError, match=r"^m\.yaml: metric\.labels: "):
        build_metric(MetricSpec(name="label"), file="m.yaml")


def test_f1() -> None:
    f1 = _metric("f1").score
    assert f1("the cat sat on the mat", "The cat sat on the mat.") == 1.0
    assert f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert f1("a dog", "the cat") == 0.0
    assert f1("", "") == 1.0
    assert f1("", "the cat") == 0.0


@pytest.mark.parametrize(
    ("reply", "expected", "score"),
    [
        ("1249.5", 1249.5, 1.0),
        ("The total is $1,249.50.", "1249.50", 1.0),
        ("-7", -7, 1.0),
        ("7", -7, 0.0),
        ("1249.6", 1249.5, 0.0),
        ("no number", 3, 0.0),
        ("3", "not a number", 0.0),
    ],
)
def test_numeric(reply: str, expected: object, score: float) -> None:
    assert _metric("numeric").score(reply, expected) == score


def test_numeric_tolerance_from_the_spec() -> None:
    assert _metric("numeric", tolerance=0.01).score("100.5", 100) == 1.0
    assert _metric("numeric").score("100.5", 100) == 0.0


INVOICE = {"vendor": "ACME GmbH", "total": 1249.5, "currency": "EUR", "po_number": None}
FIELDS = ("vendor", "total", "currency", "po_number")


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"vendor": "ACME GmbH", "total": 1249.5, "currency": "EUR", "po_number": null}', 1.0),
        ('```json\n{"vendor": "acme gmbh", "total": "1,249.50", "currency": "eur", "po_number": null}\n```', 1.0),
        ('Here it is: {"vendor": "ACME GmbH", "total": 1249.5, "currency": "EUR"} Hope that helps!', 1.0),
        ('{"vendor": "ACME GmbH", "total": 1249.5, "currency": "EUR", "po_number": "null"}', 1.0),
        ('{"vendor": "ACME GmbH", "total": 1249.5, "currency": "USD", "po_number": null}', 0.75),
        ('{"vendor": "ACME GmbH", "total": 1200, "currency": "USD", "po_number": "PO-1"}', 0.25),
        ('{"vendor": null, "total": null, "currency": null, "po_number": null}', 0.25),
        ('{"total": true}', 0.25),
        ("I could not find an invoice.", 0.0),
        ("[1, 2]", 0.0),
    ],
)
def test_json_fields_gives_per_field_credit(reply: str, score: float) -> None:
    assert _metric("json_fields", fields=FIELDS).score(reply, INVOICE) == score


def test_json_fields_numeric_tolerance() -> None:
    strict = _metric("json_fields", fields=("total",))
    loose = _metric("json_fields", fields=("total",), tolerance=0.01)
    assert strict.score('{"total": 100.4}', {"total": 100}) == 0.0
    assert loose.score('{"total": 100.4}', {"total": 100}) == 1.0


def test_json_fields_defaults_to_the_expected_keys() -> None:
    metric = _metric("json_fields")
    assert metric.score('{"a": 1, "b": 2, "extra": 3}', {"a": 1, "b": 3}) == 0.5
    assert metric.score('{"a": 1}', "not a dict") == 0.0


def test_python_metric_loads_a_user_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_scoring_mod.py").write_text(
        "def length_match(output, expected):\n"
        "    return 1.0 if len(output) == len(expected) else 0.0\n"
        "def overshoot(output, expected):\n"
        "    return 5 if output == 'big' else -3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    metric = build_metric(MetricSpec(name="python:my_scoring_mod:length_match"))
    assert metric.name == "python:my_scoring_mod:length_match"
    assert metric.score("abc", "xyz") == 1.0
    assert metric.score("abcd", "xyz") == 0.0

    clamped = build_metric(MetricSpec(name="python:my_scoring_mod:overshoot"))
    assert clamped.score("big", "") == 1.0
    assert clamped.score("small", "") == 0.0


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("python:no_such_module_xyz:fn", "cannot import 'no_such_module_xyz'"),
        ("python:json:no_such_fn", "has no function 'no_such_fn'"),
        ("python:json", "expected 'python:package.module:function'"),
        ("accuracy", "unknown metric 'accuracy'"),
    ],
)
def test_bad_metric_names_metric_name(name: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        build_metric(MetricSpec(name=name), file="migration.yaml")

    message = str(info.value)
    assert message.startswith("migration.yaml: metric.name: "), message
    assert fragment in message
    assert "metric.name: metric.name" not in message


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        (
            MetricSpec(name="label", labels=("positive", "negative")),
            "Answer with exactly one of: positive, negative. Nothing else.",
        ),
        (
            MetricSpec(name="json_fields", fields=("vendor", "total")),
            "Answer with only a JSON object with the keys: vendor, total.",
        ),
        (MetricSpec(name="numeric"), "Answer with a number only."),
        (MetricSpec(name="exact"), "Answer with the answer only."),
        (MetricSpec(name="f1"), "Answer with the answer only."),
    ],
)
def test_format_hint_per_metric(spec: MetricSpec, hint: str) -> None:
    assert build_metric(spec).format_hint() == hint


def test_the_assertions_metric_scores_a_promptfoo_tests_checks_and_shows_its_equals_as_the_answer() -> None:
    import pickle

    metric = _metric("assertions")
    checks = [{"type": "icontains", "value": "positive"}, {"type": "equals", "value": "positive", "weight": 3}]
    assert metric.score("Positive", checks) == pytest.approx(1 / 4)
    assert metric.score("positive", checks) == 1.0
    assert metric.answer(checks) == "positive"
    assert metric.answer([{"type": "icontains", "value": "positive"}]) is None  # no literal answer: no demo
    assert "icontains" in metric.expectation([{"type": "icontains", "value": "positive"}])
    assert pickle.loads(pickle.dumps(metric)).score("positive", checks) == 1.0  # sent to another process


def test_every_other_metric_shows_the_expected_value_itself_as_the_answer() -> None:
    assert _metric("numeric").answer(4.0) == "4"
    assert _metric("exact").expectation("Paris") == "Paris"
    assert _metric("json_fields", fields=("a",)).answer({"a": 1}) == '{"a": 1}'
