"""The template recovered from rendered prompts: constant text kept, what varies named and extracted."""

from __future__ import annotations

from migrator.importers import infer_template
from migrator.prompts import PromptTemplate


def _renders_back(inferred_template: str, values: tuple[dict[str, str], ...], texts: list[str]) -> None:
    template = PromptTemplate((("user", inferred_template),))
    assert [template.render(v)[0]["content"] for v in values] == texts


def test_labelled_fields_become_named_variables_and_render_back_to_each_text() -> None:
    texts = [
        "Customer tier: gold\nQuestion: where is my order?",
        "Customer tier: basic\nQuestion: can I pay by card for my order?",
        "Customer tier: silver\nQuestion: my order never came",
    ]
    got = infer_template(texts)
    assert got.template == "Customer tier: {{ customer_tier }}\nQuestion: {{ question }}"
    assert got.values[1] == {"customer_tier": "basic", "question": "can I pay by card for my order?"}
    _renders_back(got.template, got.values, texts)


def test_a_word_every_value_shares_by_chance_stays_in_the_value() -> None:
    # "my order" is in every question and "?" ends two of them: neither is the template's text
    texts = ["Where is my order?", "I want to cancel my order", "Why did my order arrive broken?"]
    got = infer_template(texts, fallback="question")
    assert got.template == "{{ question }}"
    _renders_back(got.template, got.values, texts)


def test_a_value_inside_a_sentence_is_cut_at_word_boundaries() -> None:
    texts = ["You help Acme's customers. Today is 2024-05-01. Be brief.", "You help Acme's customers. Today is 2024-06-11. Be brief."]
    got = infer_template(texts)
    assert got.template == "You help Acme's customers. Today is {{ input }}. Be brief."
    assert [v["input"] for v in got.values] == ["2024-05-01", "2024-06-11"]


def test_identical_texts_are_constant_and_braces_in_them_stay_literal() -> None:
    got = infer_template(["Reply as JSON like {{\"a\": 1}}."] * 3)
    assert got.variables == ()
    assert PromptTemplate((("user", got.template),)).render({})[0]["content"] == "Reply as JSON like {{\"a\": 1}}."


def test_names_are_unique_across_the_messages_of_one_prompt() -> None:
    taken: set[str] = set()
    first = infer_template(["Name: Ann", "Name: Bob"], taken=taken)
    second = infer_template(["Name: Cy", "Name: Di"], taken=taken)
    assert (first.variables, second.variables) == (("name",), ("name_2",))
