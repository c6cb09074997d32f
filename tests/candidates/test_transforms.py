"""The prompt candidates: the original, then deterministic transforms of it."""

from __future__ import annotations

import pytest

from migrator.candidates import TRANSFORMS, apply_transforms
from migrator.errors import SpecError
from migrator.metrics import Metric, build_metric
from migrator.prompts import Demo, PromptTemplate
from migrator.spec import MetricSpec

LABEL = build_metric(MetricSpec(name="label", labels=("positive", "negative")))
JSON = build_metric(MetricSpec(name="json_fields", fields=("vendor", "total")))
NUMERIC = build_metric(MetricSpec(name="numeric"))
TEMPLATE = PromptTemplate(
    (("system", "Classify the sentiment of the review."), ("user", "Product: {{ product }}\nReview: {{ review }}")),
    source="prompt.yaml",
)
NO_SYSTEM = PromptTemplate((("user", "Review: {{ review }}"),), source="bare.yaml")
INPUTS = {"product": "Phone X", "review": "Battery died in a day"}


def test_original_comes_first_then_each_transform_in_order() -> None:
    candidates = apply_transforms(TEMPLATE, LABEL, ["xml", "terse"])
    assert [c.id for c in candidates] == ["original", "xml", "terse"]
    assert candidates[0].template is TEMPLATE
    assert candidates[1].origin == {"kind": "transform", "transform": "xml"}
    assert candidates[1].template.source == "prompt.yaml [xml]"


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("metric", [LABEL, JSON, NUMERIC], ids=["label", "json", "numeric"])
def test_each_transform_keeps_the_variables_and_renders(name: str, metric: Metric) -> None:
    (candidate,) = apply_transforms(TEMPLATE, metric, [name])[1:]
    template = candidate.template

    assert template.variables == TEMPLATE.variables
    template.check(["product", "review"], sample=INPUTS)
    messages = template.render(INPUTS)
    final_user = [m for m in messages if m["role"] == "user"][-1]["content"]
    assert "Phone X" in final_user and "Battery died in a day" in final_user
    assert template.render_text(INPUTS).endswith("Answer:")


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_work_without_a_system_message(name: str) -> None:
    (candidate,) = apply_transforms(NO_SYSTEM, LABEL, [name])[1:]
    messages = candidate.template.render({"review": "great"})
    assert "great" in messages[-1]["content"] and messages[-1]["role"] == "user"


@pytest.mark.parametrize("metric", [LABEL, JSON, NUMERIC], ids=["label", "json", "numeric"])
def test_format_line_adds_the_metric_hint_to_the_final_user_turn(metric: Metric) -> None:
    (candidate,) = apply_transforms(TEMPLATE, metric, ["format_line"])[1:]
    messages = candidate.template.render(INPUTS)

    assert messages[-1]["content"].endswith(metric.format_hint())
    assert messages[0] == {"role": "system", "content": "Classify the sentiment of the review."}


def test_user_turn_moves_the_instruction_into_a_user_message_sent_once() -> None:
    (candidate,) = apply_transforms(TEMPLATE, LABEL, ["user_turn"])[1:]
    messages = candidate.template.render(INPUTS)
    assert [m["role"] for m in messages] == ["user", "user"]
    assert messages[0]["content"] == "Classify the sentiment of the review."
    assert messages[1]["content"].startswith("Product: Phone X")
    # with demos, the instruction still comes first and only once
    demos = [Demo({"product": "Lamp", "review": "Broke on day one."}, "negative"), Demo({"product": "Mug", "review": "Love it."}, "positive")]
    with_demos = candidate.template.render(INPUTS, demos)
    assert with_demos[0] == messages[0]
    assert sum("Classify the sentiment" in m["content"] for m in with_demos) == 1
    assert [m["role"] for m in with_demos] == ["user", "user", "assistant", "user", "assistant", "user"]


def test_system_turn_restates_the_format_rule_and_keeps_the_instruction() -> None:
    (candidate,) = apply_transforms(TEMPLATE, LABEL, ["system_turn"])[1:]
    system = candidate.template.render(INPUTS)[0]
    assert system["role"] == "system"
    assert "Classify the sentiment of the review." in system["content"]
    assert system["content"].endswith(LABEL.format_hint())


def test_terse_drops_the_instruction_but_keeps_the_format_rule() -> None:
    (candidate,) = apply_transforms(TEMPLATE, LABEL, ["terse"])[1:]
    messages = candidate.template.render(INPUTS)
    assert [m["role"] for m in messages] == ["user"]
    assert "Classify" not in messages[0]["content"]
    assert messages[0]["content"].endswith(LABEL.format_hint())


@pytest.mark.parametrize("name", ["xml", "markdown"])
def test_structured_layouts_carry_the_format_hint(name: str) -> None:
    (candidate,) = apply_transforms(TEMPLATE, JSON, [name])[1:]
    assert JSON.format_hint() in candidate.template.render(INPUTS)[0]["content"]


def test_unknown_transform_names_the_spec_field() -> None:
    with pytest.raises(SpecError) as info:
        apply_transforms(TEMPLATE, LABEL, ["xml", "shout"], file="migration.yaml")

    message = str(info.value)
    assert message.startswith("migration.yaml: search_space.prompt.transforms: ")
    assert "'shout'" in message and "format_line" in message
