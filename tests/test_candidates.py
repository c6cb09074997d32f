"""Prompt candidates and few-shot demo pools the search picks among."""

from __future__ import annotations

import pytest

from migrator.candidates import TRANSFORMS, DemoPool, apply_transforms
from migrator.dataset import Example
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


def _train(labels: list[str]) -> list[Example]:
    return [Example(f"t{i:02d}", {"review": f"review number {i}"}, label) for i, label in enumerate(labels)]


TRAIN = _train(["positive"] * 8 + ["negative"] * 4)
QUERY = Example("q", {"review": "anything"}, "positive")


def _ids(pool: DemoPool, strategy: str, k: int, example: Example = QUERY) -> list[str]:
    by_text = {ex.inputs["review"]: ex.id for ex in pool.train}
    return [by_text[d.inputs["review"]] for d in pool.demos(strategy, k, example)]


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_random_and_stratified_are_deterministic_by_seed(strategy: str) -> None:
    assert _ids(DemoPool(TRAIN, seed=1), strategy, 4) == _ids(DemoPool(TRAIN, seed=1), strategy, 4)
    orders = {tuple(_ids(DemoPool(TRAIN, seed=s), strategy, 4)) for s in range(5)}
    assert len(orders) > 1


def test_random_returns_k_distinct_train_examples() -> None:
    ids = _ids(DemoPool(TRAIN, seed=0), "random", 5)
    assert len(ids) == len(set(ids)) == 5
    assert set(ids) <= {ex.id for ex in TRAIN}


def test_demos_show_the_expected_answer() -> None:
    train = [Example("a", {"q": "2+2"}, 4.0), Example("b", {"q": "invoice"}, {"total": 3})]
    answers = {d.inputs["q"]: d.answer for d in DemoPool(train).demos("random", 2, QUERY)}
    assert answers == {"2+2": "4", "invoice": '{"total": 3}'}


def test_stratified_alternates_labels() -> None:
    demos = DemoPool(TRAIN, seed=3).demos("stratified", 6, QUERY)
    assert [d.answer for d in demos] == ["negative", "positive"] * 3


def test_stratified_uses_the_majority_when_a_label_runs_out() -> None:
    demos = DemoPool(TRAIN, seed=3).demos("stratified", 12, QUERY)
    assert [d.answer for d in demos][:8] == ["negative", "positive"] * 4
    assert [d.answer for d in demos][8:] == ["positive"] * 4


def test_k_larger_than_train_returns_all_of_it() -> None:
    assert len(DemoPool(TRAIN).demos("random", 50, QUERY)) == len(TRAIN)


def test_no_demos_for_k_zero_or_an_empty_pool() -> None:
    assert DemoPool(TRAIN).demos("knn", 0, QUERY) == ()
    assert DemoPool([]).demos("random", 3, QUERY) == ()


def test_unknown_strategy_raises() -> None:
    with pytest.raises(ValueError, match="'strategy' parameter"):
        DemoPool(TRAIN).demos("best", 2, QUERY)


KNN_TRAIN = [
    Example("hotel", {"review": "the hotel room was dirty and the hotel staff rude"}, "negative"),
    Example("pasta", {"review": "wonderful pasta and tiramisu at this italian restaurant"}, "positive"),
    Example("battery", {"review": "phone battery drains fast and the battery gets hot"}, "negative"),
    Example("camera", {"review": "great camera with sharp photos in low light"}, "positive"),
    Example("shipping", {"review": "shipping took three weeks and the parcel was crushed"}, "negative"),
    Example("garden", {"review": "lovely garden and quiet pool at the resort"}, "positive"),
]


def test_knn_returns_the_nearest_train_examples() -> None:
    pool = DemoPool(KNN_TRAIN, seed=0)
    query = Example("new", {"review": "my phone battery is hot and the battery dies"}, "negative")
    assert _ids(pool, "knn", 1, query) == ["battery"]

    query = Example(
        "new2", {"review": "the italian restaurant pasta was wonderful; also great camera photos"}, "positive"
    )
    assert set(_ids(pool, "knn", 2, query)) == {"pasta", "camera"}


def test_knn_never_returns_the_example_itself() -> None:
    pool = DemoPool(KNN_TRAIN, seed=0)
    for example in KNN_TRAIN:
        ids = _ids(pool, "knn", 3, example)
        assert example.id not in ids
        assert len(ids) == 3


def test_knn_depends_on_the_example() -> None:
    pool = DemoPool(KNN_TRAIN, seed=0)
    near_hotel = Example("x", {"review": "dirty hotel room"}, "negative")
    near_garden = Example("y", {"review": "quiet garden by the pool"}, "positive")
    assert _ids(pool, "knn", 1, near_hotel) == ["hotel"]
    assert _ids(pool, "knn", 1, near_garden) == ["garden"]
