"""Output normalisation: the answer a user's model gave, however it phrased it."""

from __future__ import annotations

import pytest

from migrator.parsing import extract_json, extract_label, extract_number, normalize_text, strip_fences

LABELS = ("positive", "negative")


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("positive", "positive"),
        ("Negative", "negative"),
        ("  NEGATIVE.  ", "negative"),
        ('"positive"', "positive"),
        ("**Positive**", "positive"),
        ("The sentiment is negative.", "negative"),
        ("Sentiment: positive - the reviewer loved it.", "positive"),
        ("positive\n\nReview: The battery died and it was awful. negative", "positive"),
        ("negative\nReview: wonderful, positive", "negative"),
        ("\n\n  positive\n", "positive"),
        ("```\nnegative\n```", "negative"),
        ("Here you go:\n```text\npositive\n```", "positive"),
    ],
)
def test_extract_label(reply: str, label: str) -> None:
    assert extract_label(reply, LABELS) == label


@pytest.mark.parametrize("reply", ["", "   \n", "I am not sure.", "positively great", "It's a mixed review."])
def test_extract_label_none_when_no_label_is_given(reply: str) -> None:
    assert extract_label(reply, LABELS) is None


def test_extract_label_only_reads_the_first_line() -> None:
    assert extract_label("I cannot decide.\nnegative", LABELS) is None


def test_extract_label_prefers_the_earliest_label_and_respects_hyphenated_words() -> None:
    labels = ("toxic", "non-toxic")
    assert extract_label("This comment is non-toxic.", labels) == "non-toxic"
    assert extract_label("toxic, not non-toxic", labels) == "toxic"
    assert extract_label("The review is very positive", ("positive", "very positive")) == "very positive"


def test_extract_label_returns_the_label_as_spelled_in_the_spec() -> None:
    assert extract_label("billing issue", ("Billing Issue", "Other")) == "Billing Issue"


@pytest.mark.parametrize(
    ("reply", "number"),
    [
        ("42", 42.0),
        ("The answer is 17.", 17.0),
        ("1,249", 1249.0),
        ("$1,249.50", 1249.5),
        ("Total: $1,249.50 (incl. VAT)", 1249.5),
        ("1,000,000 units", 1_000_000.0),
        ("-12", -12.0),
        ("\u22123.5", -3.5),
        ("-.5", -0.5),
        (".25", 0.25),
        ("```\n3.75\n```", 3.75),
        ("12\n\nQuestion: what is 5 + 5?", 12.0),
    ],
)
def test_extract_number(reply: str, number: float) -> None:
    assert extract_number(reply) == number


@pytest.mark.parametrize("reply", ["", "no idea", "twelve"])
def test_extract_number_none_without_digits(reply: str) -> None:
    assert extract_number(reply) is None


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ('{"total": 12.5}', {"total": 12.5}),
        ('```json\n{"total": 12.5, "currency": "EUR"}\n```', {"total": 12.5, "currency": "EUR"}),
        ('Sure! Here is the data: {"a": {"b": [1, 2]}} Let me know.', {"a": {"b": [1, 2]}}),
        ('Result: {"text": "a } inside", "q": "say \\"hi\\""} end', {"text": "a } inside", "q": 'say "hi"'}),
        ('{broken} then {"ok": true}', {"ok": True}),
        ("[1, 2, 3]", [1, 2, 3]),
    ],
)
def test_extract_json(reply: str, value: object) -> None:
    assert extract_json(reply) == value


@pytest.mark.parametrize("reply", ["", "no json here", "{not: json}", '{"unterminated": 1'])
def test_extract_json_none_when_there_is_no_object(reply: str) -> None:
    assert extract_json(reply) is None


def test_strip_fences_returns_the_first_block_or_the_text() -> None:
    assert strip_fences("intro\n```python\nx = 1\n```\n```\nsecond\n```") == "x = 1"
    assert strip_fences("  plain answer \n") == "plain answer"


def test_normalize_text() -> None:
    assert normalize_text("  The   ANSWER:\n is  Straße. ") == "the answer: is strasse"
    assert normalize_text("\uff21\uff22\uff23") == "abc"  # full-width letters
    assert normalize_text("**(yes)**") == "yes"
