"""Few-shot demo pools: random, stratified and kNN picks from the train split."""

from __future__ import annotations

import pytest

from migrator.candidates import DemoPool
from migrator.dataset import Example


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


def test_an_example_with_no_literal_answer_is_never_a_demo() -> None:
    # a promptfoo test that checks `icontains` has no answer to show; one with `equals` does
    from migrator.metrics import build_metric
    from migrator.spec import MetricSpec

    metric = build_metric(MetricSpec(name="assertions"))
    train = [
        Example("a", {"review": "great"}, [{"type": "icontains", "value": "positive"}]),
        Example("b", {"review": "awful"}, [{"type": "not-icontains", "value": "sorry"}, {"type": "equals", "value": "negative"}]),
        Example("c", {"review": "superb"}, [{"type": "equals", "value": "positive"}]),
    ]
    pool = DemoPool(train, seed=0, answer=metric.answer)
    for strategy in ("random", "stratified", "knn"):
        demos = pool.demos(strategy, 3, QUERY)
        assert sorted((d.inputs["review"], d.answer) for d in demos) == [("awful", "negative"), ("superb", "positive")]
