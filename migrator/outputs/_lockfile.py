"""The winner lockfile (winner.yaml): one pydantic model, built from a result and read back here.

``lockfile_of`` builds it from a migration's result, ``read_lockfile`` reads and checks one
(every problem is one line naming the file and field), and ``load_lockfile`` rebuilds what
re-scoring it needs: template, metric, demos and the dataset's split, as the run drew it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from migrator import __version__
from migrator.spec import DatasetSpec, Message, MetricSpec, SplitSpec, TargetSpec, read_yaml, validated

if TYPE_CHECKING:  # the schema is cheap to import; rebuilding a lockfile loads the rest
    from migrator.candidates import DemoPool
    from migrator.dataset import Example, Splits
    from migrator.evaluate import Config
    from migrator.llm import LLMClient
    from migrator.metrics import Metric
    from migrator.migration import Evaluated, MigrationResult
    from migrator.prompts import Demo, PromptTemplate

__all__ = ["Lockfile", "WinnerLock", "evaluate_lockfile", "load_lockfile", "lockfile_of", "read_lockfile"]

# labels: legacy: the rows the run scored, labelled by the legacy model; winner.yaml's dataset
LABELS_FILE = "legacy_labels.jsonl"
LABELS_ID, LABELS_EXPECTED, LABELS_REFERENCE = "id", "expected", "dataset_expected"


class _Locked(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockedEndpoint(_Locked):
    mode: Literal["chat", "completion"] | None = None
    api_base: str | None = None
    api_key_env: str | None = None


class LockedDemo(_Locked):
    inputs: dict[str, Any]
    answer: str

    @field_validator("answer", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        return str(value)  # YAML reads an answer such as 4 as a number


class LockedExample(_Locked):
    inputs: dict[str, Any]
    expected: Any


class LockedDemos(_Locked):
    k: int = Field(default=0, ge=0)
    strategy: str = "none"
    fixed: list[LockedDemo] = Field(default_factory=list)
    pool: list[LockedExample] = Field(default_factory=list)


class LockedDataset(_Locked):
    path: str
    id_field: str | None = None
    expected_field: str
    input_fields: list[str] | None = None
    split: SplitSpec
    # the spec's seed: it drew the split, and the run bootstrapped the test CI with it
    seed: int = 0


class LockedScores(_Locked):
    dev: float | None = None
    test: float
    test_ci: list[float]


class WinnerLock(_Locked):
    """winner.yaml: everything an app needs to call the winner, and enough to re-score it."""

    migrator_version: str | None = None
    name: str
    spec_hash: str | None = None
    model: str = Field(min_length=1)
    endpoint: LockedEndpoint = LockedEndpoint()
    prompt_id: str = "original"
    origin: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    demos: LockedDemos = LockedDemos()
    metric: MetricSpec
    dataset: LockedDataset
    scores: LockedScores | None = None

    @field_serializer("metric")
    def _metric(self, metric: MetricSpec) -> dict[str, Any]:
        return metric.model_dump(mode="json", exclude_none=True)

    def dump(self) -> dict[str, Any]:
        """The lockfile as plain data, in the order it is written."""
        return self.model_dump(mode="json")

    def target(self) -> TargetSpec:
        """The winner's model and how to reach it."""
        return TargetSpec.model_validate(self._target_fields())

    def _target_fields(self) -> dict[str, Any]:
        return {"model": self.model, **self.endpoint.model_dump(exclude_none=True)}


def read_lockfile(path: Path) -> WinnerLock:
    """Read and check a winner.yaml; a problem is one line naming the file and the field."""
    lock: WinnerLock = validated(WinnerLock, read_yaml(path), path)
    # the model id and endpoint are checked as a spec's target is (a provider, a key variable name)
    validated(TargetSpec, lock._target_fields(), path)
    return lock


def lockfile_of(result: MigrationResult, out_dir: Path) -> WinnerLock | None:
    """The self-contained lockfile of the winner (None without one); paths relative to ``out_dir``."""
    winner = result.verdict.winner
    if winner is None:
        return None
    spec, config = result.spec, winner.config
    candidate = result.prompts[config.prompt_id]
    target = next(t for t in spec.targets if t.model == config.model)
    return WinnerLock(
        migrator_version=__version__,
        name=spec.name,
        spec_hash=spec.spec_hash(),
        model=config.model,
        endpoint=LockedEndpoint(mode=result.endpoints[config.model].mode, api_base=target.api_base, api_key_env=target.api_key_env),
        prompt_id=config.prompt_id,
        origin=dict(candidate.origin),
        messages=[Message(role=r, content=c) for r, c in candidate.template.messages],  # type: ignore[arg-type]
        params=dict(config.params),
        demos=_locked_demos(result, winner),
        metric=spec.metric,
        dataset=_locked_dataset(result, out_dir),
        scores=LockedScores(dev=winner.dev.score if winner.dev else None, test=winner.test.score, test_ci=list(winner.test_ci)),
    )


def _locked_demos(result: MigrationResult, winner: Evaluated) -> LockedDemos:
    """kNN demos ship their whole pool (picked per input); a fixed strategy ships its picks."""
    from migrator.candidates import DemoPool

    config, splits, metric = winner.config, result.prepared.splits, result.prepared.metric
    drawn = DemoPool(splits.train, seed=result.spec.seed, answer=metric.answer)
    if config.demos and config.demo_strategy == "knn":
        pool = [LockedExample(inputs=dict(ex.inputs), expected=_pooled(ex.expected, metric)) for ex in drawn.train]
        return LockedDemos(k=config.demos, strategy=config.demo_strategy, pool=pool)
    fixed: list[LockedDemo] = []
    if config.demos:
        chosen = drawn.demos(config.demo_strategy, config.demos, splits.dev[0])
        fixed = [LockedDemo(inputs=dict(d.inputs), answer=d.answer) for d in chosen]
    return LockedDemos(k=config.demos, strategy=config.demo_strategy, fixed=fixed)


def _pooled(expected: Any, metric: Metric) -> Any:
    """A kNN pool entry's expected value: as it is, or the answer itself where the metric's
    expected value is no answer (a promptfoo test's checks), so every reader shows the same demo."""
    from migrator.prompts import format_answer

    shown = metric.answer(expected)
    return expected if shown == format_answer(expected) else shown


def _locked_dataset(result: MigrationResult, out_dir: Path) -> LockedDataset:
    spec = result.spec
    if result.labels is not None:  # labels: legacy: scored on the labelled rows the run writes beside it
        return LockedDataset(
            path=LABELS_FILE,
            id_field=LABELS_ID,
            expected_field=LABELS_EXPECTED,
            input_fields=list(spec.dataset.input_fields or result.prepared.examples[0].inputs),
            split=spec.dataset.split,
            seed=spec.seed,
        )
    dataset_path = spec.resolve(spec.dataset.path).resolve()
    try:
        dataset_ref = os.path.relpath(dataset_path, out_dir.resolve())
    except ValueError:  # another drive on Windows
        dataset_ref = str(dataset_path)
    return LockedDataset(
        path=dataset_ref,
        id_field=spec.dataset.id_field,
        expected_field=spec.dataset.expected_field or LABELS_EXPECTED,  # set unless labels: legacy (above)
        input_fields=list(spec.dataset.input_fields) if spec.dataset.input_fields else None,
        split=spec.dataset.split,
        seed=spec.seed,
    )


@dataclass(frozen=True)
class Lockfile:
    """A winner.yaml, loaded back: enough to re-score it on its dataset."""

    path: Path
    lock: WinnerLock
    target: TargetSpec
    template: PromptTemplate
    metric: Metric
    splits: Splits
    config: Config
    demo_pool: DemoPool
    fixed_demos: tuple[Demo, ...]

    @property
    def seed(self) -> int:
        return self.lock.dataset.seed

    def demos_for(self, example: Example) -> Sequence[Demo]:
        """The demos the winner shows for this input: its kNN picks, or its fixed set."""
        if self.config.demos and self.config.demo_strategy == "knn":
            return self.demo_pool.demos("knn", self.config.demos, example)
        return self.fixed_demos

    def prompt_for(self, example: Example) -> list[dict[str, str]] | str:
        """Exactly what the winner sends for this input: chat messages, or one completion prompt."""
        from migrator.evaluate import build_request
        from migrator.migration import endpoint_for

        request = build_request(self.config, endpoint_for(self.target, {}), self.template, example, self.demos_for(example))
        return request.prompt if request.prompt is not None else [{"role": r, "content": c} for r, c in request.messages]


def load_lockfile(path: Path, dataset: Path | None = None) -> Lockfile:
    """Read winner.yaml and rebuild its template, demos, metric and dataset split.

    ``dataset`` replaces the dataset file the lockfile names (same fields and split).
    """
    from migrator.candidates import DemoPool
    from migrator.dataset import Example, load_examples, split_examples
    from migrator.evaluate import Config
    from migrator.metrics import build_metric
    from migrator.migration import endpoint_for
    from migrator.prompts import Demo, PromptTemplate

    lock = read_lockfile(path)
    template = PromptTemplate(tuple((m.role, m.content) for m in lock.messages), source=str(path))
    metric = build_metric(lock.metric, file=str(path))
    dataset_spec = _dataset_spec(lock, path, dataset)
    examples = load_examples(Path(dataset_spec.path), dataset_spec)
    template.check(dataset_spec.input_fields or tuple(examples[0].inputs), examples[0].inputs)
    splits = split_examples(examples, dataset_spec.split, lock.dataset.seed, file=dataset_spec.path)
    target = lock.target()
    demos = lock.demos
    pool = tuple(Example(f"pool{i}", p.inputs, p.expected) for i, p in enumerate(demos.pool))
    config = Config(target.model, lock.prompt_id, demos.k, demos.strategy, tuple(sorted(lock.params.items())), endpoint_for(target, {}).mode)
    fixed = tuple(Demo(d.inputs, d.answer) for d in demos.fixed)
    demo_pool = DemoPool(pool, seed=lock.dataset.seed, answer=metric.answer)
    return Lockfile(path, lock, target, template, metric, splits, config, demo_pool, fixed)


def _dataset_spec(lock: WinnerLock, path: Path, dataset: Path | None) -> DatasetSpec:
    ds = lock.dataset
    fields = {
        "path": str(dataset or (path.parent / ds.path)),
        "expected_field": ds.expected_field,
        "input_fields": tuple(ds.input_fields) if ds.input_fields else None,
        "id_field": ds.id_field,
        "split": ds.split,
    }
    return validated(DatasetSpec, fields, path, "dataset.")  # type: ignore[no-any-return]


def evaluate_lockfile(lock: Lockfile, client: LLMClient, split: str, api_bases: Mapping[str, str] | None = None) -> Evaluated:
    """Score a winner lockfile on one split of its dataset.

    A config that samples (a temperature above 0) is scored as the verdict scored it: with
    the same seeded samples per example, their mean, and the spread as its noise.
    """
    from migrator.evaluate import evaluate_samples, merge_samples, sampled, summarize
    from migrator.migration import SAMPLES, Noise, endpoint_for, judged, scored

    endpoint = endpoint_for(lock.target, api_bases or {})
    metric = judged(lock.metric, api_bases or {})
    samples = range(SAMPLES if sampled(lock.config) else 1)
    with asyncio.Runner() as runner:
        per_sample = runner.run(
            evaluate_samples(
                client, lock.config, endpoint, lock.template, lock.splits.get(split), metric, lock.demos_for,
                samples=samples, seed=lock.seed,
            )
        )  # fmt: skip
    noise = Noise((), tuple(summarize(s).score for s in per_sample)) if len(per_sample) > 1 else None
    return scored(split, lock.config, None, merge_samples(per_sample), lock.seed, None, noise)
