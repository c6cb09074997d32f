"""Prompt templates: rendering for chat and completion endpoints, strictness and the sandbox."""

from __future__ import annotations

import pytest

from migrator.errors import TemplateError
from migrator.prompts import Demo, PromptTemplate, format_answer

TEMPLATE = PromptTemplate(
    (("system", "Classify the sentiment of the review."), ("user", "Review: {{ review }}")), source="prompt.yaml"
)
DEMOS = (Demo({"review": "Loved it"}, "positive"), Demo({"review": "Broke on day two"}, "negative"))


def test_render_fills_variables() -> None:
    assert TEMPLATE.render({"review": "Great phone"}) == [
        {"role": "system", "content": "Classify the sentiment of the review."},
        {"role": "user", "content": "Review: Great phone"},
    ]


def test_demos_are_turns_before_the_final_user_turn() -> None:
    messages = TEMPLATE.render({"review": "Great phone"}, demos=DEMOS)

    assert messages == [
        {"role": "system", "content": "Classify the sentiment of the review."},
        {"role": "user", "content": "Review: Loved it"},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Review: Broke on day two"},
        {"role": "assistant", "content": "negative"},
        {"role": "user", "content": "Review: Great phone"},
    ]


def test_demos_go_before_the_last_user_turn_when_there_are_several() -> None:
    template = PromptTemplate((("user", "Context: {{ ctx }}"), ("assistant", "ok"), ("user", "Q: {{ q }}")))
    messages = template.render({"ctx": "C", "q": "Q1"}, demos=[Demo({"ctx": "C", "q": "Q0"}, "A0")])

    assert [m["content"] for m in messages] == ["Context: C", "ok", "Q: Q0", "A0", "Q: Q1"]


def test_render_text_ends_with_the_answer_cue_and_shows_demo_answers() -> None:
    text = TEMPLATE.render_text({"review": "Great phone"}, demos=DEMOS)

    assert text.endswith("Review: Great phone\nAnswer:")
    assert text.startswith("Classify the sentiment of the review.")
    assert "Review: Loved it\nAnswer: positive" in text
    assert "Review: Broke on day two\nAnswer: negative" in text
    assert text.index("Answer: positive") < text.index("Answer: negative") < text.index("Great phone")


def test_render_text_takes_a_custom_cue() -> None:
    assert TEMPLATE.render_text({"review": "x"}, answer_cue="Sentiment:").endswith("Review: x\nSentiment:")


def test_undefined_variable_names_the_message() -> None:
    template = PromptTemplate((("system", "S"), ("user", "{{ review }} {{ product }}")), source="prompt.yaml")

    with pytest.raises(TemplateError) as info:
        template.render({"review": "x"})

    assert str(info.value).startswith("prompt.yaml: messages[1].content: ")
    assert "product" in str(info.value)


def test_undefined_attribute_is_an_error_not_an_empty_string() -> None:
    template = PromptTemplate((("user", "{{ row.title }}"),))
    with pytest.raises(TemplateError, match=r"messages\[0\]"):
        template.render({"row": {}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ review.__class__.__base__.__subclasses__() }}",
        "{{ items.append(1) }}",
    ],
)
def test_sandbox_rejects_unsafe_access(source: str) -> None:
    template = PromptTemplate((("system", "S"), ("user", source)), source="evil.yaml")

    with pytest.raises(TemplateError) as info:
        template.render({"review": "r", "items": []})

    assert str(info.value).startswith("evil.yaml: messages[1].content: ")
    assert "unsafe" in str(info.value)


def test_dataset_values_are_rendered_literally() -> None:
    value = "{{ 7*7 }} {% for x in range(3) %}{{ x }}{% endfor %} {{ ''.__class__ }}"
    messages = TEMPLATE.render({"review": value}, demos=[Demo({"review": "{{ 6*7 }}"}, "{{ answer }}")])

    assert messages[-1]["content"] == f"Review: {value}"
    assert messages[1]["content"] == "Review: {{ 6*7 }}"
    assert messages[2]["content"] == "{{ answer }}"
    assert "49" not in messages[-1]["content"]


def test_variables_lists_what_the_template_reads() -> None:
    template = PromptTemplate(
        (("system", "Language: {{ lang }}"), ("user", "{% for t in tags %}{{ t }}{% endfor %} {{ review }}"))
    )
    assert template.variables == {"lang", "tags", "review"}


def test_check_rejects_variables_the_dataset_lacks() -> None:
    with pytest.raises(TemplateError) as info:
        TEMPLATE.check(["text", "label"])

    message = str(info.value)
    assert message.startswith("prompt.yaml: ")
    assert "'review'" in message and "text" in message


def test_check_passes_for_matching_fields_and_renders_the_sample() -> None:
    TEMPLATE.check(["review"], sample={"review": "fine"})


def test_check_requires_a_user_message() -> None:
    with pytest.raises(TemplateError, match="user message"):
        PromptTemplate((("system", "Just a system prompt"),)).check([])


def test_check_with_a_sample_surfaces_render_errors() -> None:
    template = PromptTemplate((("user", "{{ review.__class__ }}"),))
    with pytest.raises(TemplateError, match="unsafe"):
        template.check(["review"], sample={"review": "x"})


@pytest.mark.parametrize("broken", ["Review: {{ review ", "{% if review %}no end", "{{ review | no_such_filter }}"])
def test_syntax_errors_are_template_errors_naming_the_message(broken: str) -> None:
    template = PromptTemplate((("system", "S"), ("user", broken)), source="prompt.yaml")

    with pytest.raises(TemplateError, match=r"^prompt\.yaml: messages\[1\]\.content: Jinja2 syntax error"):
        template.render({"review": "x"})
    with pytest.raises(TemplateError, match=r"messages\[1\]"):
        _ = template.variables


def test_text_shows_roles_and_raw_templates() -> None:
    assert TEMPLATE.text() == "[system]\nClassify the sentiment of the review.\n\n[user]\nReview: {{ review }}"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("positive", "positive"),
        (3.0, "3"),
        (2.5, "2.5"),
        (7, "7"),
        (True, "true"),
        ({"total": 1}, '{"total": 1}'),
        ("café", "café"),
    ],
)
def test_format_answer(value: object, written: str) -> None:
    assert format_answer(value) == written


def test_format_answer_keeps_non_ascii_in_json() -> None:
    assert format_answer({"city": "Zürich"}) == '{"city": "Zürich"}'


@pytest.mark.parametrize(
    "content",
    [
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }} {{ review }}",
        "{% for x in review recursive %}{{ loop(x) }}{% endfor %}",
        "{{ review|truncate(-1) }}",
        "{{ review|dictsort }}",
        "{{ review|xmlattr }}",
        "{{ 2 ** 100000 }} {{ review }}",
    ],
)
def test_a_template_that_cannot_be_compiled_or_rendered_is_a_template_error(content: str) -> None:
    template = PromptTemplate((("user", content),), source="prompt.yaml")
    with pytest.raises(TemplateError, match="messages\\[0\\]"):
        template.check(["review"], {"review": "fine"})
