"""Few-shot demos from the train split: random, stratified by label, or nearest neighbours."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from migrator.dataset import Example
from migrator.prompts import Demo, format_answer


def _input_text(example: Example) -> str:
    return " \n".join(str(v) for v in example.inputs.values())


class DemoPool:
    """Few-shot demos from the train split, chosen by strategy and k.

    Args:
        train: the examples demos are drawn from (never dev or test).
        seed: fixes the random and stratified orders.
        answer: the reply a demo shows for an expected value (``Metric.answer``); an example
            it gives None for (a promptfoo test with checks but no ``equals``) is never a demo.
    """

    def __init__(self, train: Sequence[Example], seed: int = 0, answer: Callable[[Any], str | None] = format_answer) -> None:
        self.answer = answer
        self.train = tuple(ex for ex in train if answer(ex.expected) is not None)
        self.seed = seed
        self._knn: Any = None
        self._vectorizer: Any = None
        # every trial asks again for the same examples' neighbours
        self._nearest: dict[tuple[str, str, int], list[Example]] = {}

    def _demo(self, ex: Example) -> Demo:
        return Demo(ex.inputs, str(self.answer(ex.expected)))

    def _random(self, k: int) -> list[Example]:
        order = list(self.train)
        random.Random(self.seed).shuffle(order)
        return order[:k]

    def _stratified(self, k: int) -> list[Example]:
        by_label: dict[str, list[Example]] = {}
        for ex in self._random(len(self.train)):
            by_label.setdefault(str(self.answer(ex.expected)), []).append(ex)
        queues = [by_label[label] for label in sorted(by_label)]
        picked: list[Example] = []
        while len(picked) < k and any(queues):
            for queue in queues:
                if queue and len(picked) < k:
                    picked.append(queue.pop(0))
        return picked

    def nearest(self, example: Example, k: int) -> list[Example]:
        """The k train examples whose inputs are closest to this one (TF-IDF cosine)."""
        key = (example.id, _input_text(example), k)
        if key not in self._nearest:
            self._nearest[key] = self._search(example, k)
        return self._nearest[key]

    def _search(self, example: Example, k: int) -> list[Example]:
        if self._knn is None:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.neighbors import NearestNeighbors

            self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            matrix = self._vectorizer.fit_transform([_input_text(ex) for ex in self.train])
            self._knn = NearestNeighbors(metric="cosine").fit(matrix)
        n = min(len(self.train), k + 1)
        _, idx = self._knn.kneighbors(self._vectorizer.transform([_input_text(example)]), n_neighbors=n)
        found = [self.train[i] for i in idx[0] if self.train[i].id != example.id]
        return found[:k]

    def demos(self, strategy: str, k: int, example: Example) -> tuple[Demo, ...]:
        """Demos for one example; only ``knn`` depends on the example."""
        if k <= 0 or not self.train:
            return ()
        if strategy == "random":
            chosen = self._random(k)
        elif strategy == "stratified":
            chosen = self._stratified(k)
        elif strategy == "knn":
            chosen = self.nearest(example, k)
        else:
            raise ValueError(f"The 'strategy' parameter must be random, stratified or knn. Got {strategy!r} instead.")
        return tuple(self._demo(ex) for ex in chosen)
