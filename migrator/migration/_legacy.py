"""The app as it runs today, called: the legacy model with the original prompt and the app's params.

Two uses: scoring the app on test for the verdict (``_verdict``), and ``dataset.labels: legacy``,
where the legacy model's own replies, while it still answers, become the expected outputs. A
migration then optimises agreement with today's behaviour. Those calls go through the run's
client (cached, counted in the study's budget, retried), so a resumed run or a worker pays nothing
for the replies already had; the split is drawn from the labelled rows, as ``migrator eval`` draws
it again from the labels file the run writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from migrator.dataset import Example, split_examples
from migrator.errors import SpecError
from migrator.evaluate import Config, ExampleResult, evaluate, seeded
from migrator.llm import Endpoint, LLMClient
from migrator.metrics import Metric
from migrator.migration._prepare import Prepared, endpoint_for
from migrator.models import model_info
from migrator.prompts import PromptTemplate
from migrator.spec import MigrationSpec

__all__ = ["LABELS_ATTR", "Labelled", "LegacyCall", "apply_labels", "label_with_legacy", "legacy_call"]

log = logging.getLogger("migrator")

# the study's user attr with the legacy replies, {example id: reply}: a worker labels from it, calling nothing
LABELS_ATTR = "migrator.legacy_labels"

_NO_SCORE = Metric("reply", lambda _output, _expected: 0.0)


@dataclass(frozen=True)
class LegacyCall:
    """How the app calls its model today; ``lacking``: the API key variable the environment does not set."""

    config: Config
    endpoint: Endpoint
    lacking: str | None = None

    async def replies(self, client: LLMClient, template: PromptTemplate, examples: Sequence[Example], metric: Metric) -> list[ExampleResult]:
        """One example first: a model that no longer answers costs one failed request, not one per example."""
        probe = await evaluate(client, self.config, self.endpoint, template, examples[:1], metric)
        if probe[0].error is not None:
            return probe
        return probe + await evaluate(client, self.config, self.endpoint, template, examples[1:], metric)


def legacy_call(spec: MigrationSpec, api_bases: Mapping[str, str] | None = None) -> LegacyCall:
    from migrator.retirement import missing_key

    app = spec.app
    endpoint = endpoint_for(app, api_bases or {})
    params = tuple(sorted(seeded(app.params, model_info(app.model, api_base=endpoint.api_base).accepts, spec.seed).items()))
    lacking = missing_key({"model": app.model, "api_base": endpoint.api_base, "api_key_env": endpoint.api_key_env})
    return LegacyCall(Config(app.model, "original", 0, "none", params, endpoint.mode), endpoint, lacking)


@dataclass(frozen=True)
class Labelled:
    """What ``labels: legacy`` did: rows labelled, rows left out (no reply), agreement with the dataset's own labels."""

    labelled: int
    left_out: tuple[str, ...] = ()
    agreement: float | None = None
    compared: int = 0
    replies: Mapping[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": "legacy",
            "labelled": self.labelled,
            "left_out": list(self.left_out),
            "agreement_with_dataset": self.agreement,
            "compared_with_dataset": self.compared,
        }


def label_with_legacy(
    runner: asyncio.Runner, client: LLMClient, prepared: Prepared, api_bases: Mapping[str, str] | None = None
) -> tuple[Prepared, Labelled | None]:
    """``prepared`` with the legacy model's replies as expected outputs (and the split drawn from them).

    Unchanged, with None, unless the spec says ``dataset.labels: legacy``. A legacy model that does
    not answer is bad input (exit 2): the labels cannot be had.
    """
    spec = prepared.spec
    if spec.dataset.labels != "legacy":
        return prepared, None
    call = legacy_call(spec, api_bases)
    where, model = "dataset.labels", spec.app.model
    if call.lacking is not None:
        raise SpecError(f"labels: legacy needs the legacy model {model}, and {call.lacking} (its API key) is not set", file=spec.source_file, where=where)
    results = runner.run(call.replies(client, prepared.template, prepared.examples, _NO_SCORE))
    if results[0].error is not None:
        reason = results[0].error.removeprefix(f"{model}: ").splitlines()[0][:240]
        raise SpecError(
            f"labels: legacy needs the legacy model {model}, which does not answer ({reason}); give the dataset expected outputs",
            file=spec.source_file,
            where=where,
        )
    replies = {ex.id: r.output.strip() for ex, r in zip(prepared.examples, results, strict=True) if r.error is None and r.output.strip()}
    left_out = [ex.id for ex in prepared.examples if ex.id not in replies]
    if len(replies) < 2:
        raise SpecError(f"labels: legacy: the legacy model {model} replied to {len(replies)} of {len(results)} rows", file=spec.source_file, where=where)
    if left_out:
        log.warning("labels: legacy: %d row(s) left out, the legacy model gave no reply: %s", len(left_out), ", ".join(left_out[:5]))
    labelled = apply_labels(prepared, replies)
    # compared by the metric; a judge's metric scores in process only by exact match, which says nothing of free text
    compared = [e for e in labelled.examples if e.reference is not None] if prepared.metric.name != "judge" else []
    agreement = sum(prepared.metric.score(str(e.expected), e.reference) for e in compared) / len(compared) if compared else None
    return labelled, Labelled(len(replies), tuple(left_out), agreement, len(compared), replies)


def apply_labels(prepared: Prepared, replies: Mapping[str, str]) -> Prepared:
    """The examples with a reply, labelled with it, and the split drawn from them (as ``migrator eval`` draws it)."""
    spec = prepared.spec
    examples = tuple(replace(ex, expected=replies[ex.id]) for ex in prepared.examples if ex.id in replies)
    splits = split_examples(examples, spec.dataset.split, spec.seed, file=str(spec.resolve(spec.dataset.path)))
    return replace(prepared, examples=examples, splits=splits)
