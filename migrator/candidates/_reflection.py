"""Reflective rewrites: a new instruction written from the current best config's results on train.

GEPA's idea, during the search: show a proposer the instruction the best config sends, a
sample of train inputs with what the target answered and feedback on each, and ask for a
better instruction. The proposal prompt and the parsing of its reply are the ``gepa``
library's own (``InstructionProposalSignature``); the call is one request through migrator's
client (cached, retried, budgeted). A proposal that fails validation (an apology, a copied
input, no label, a broken template, a duplicate) is asked again in the short "direct" framing
of :mod:`migrator.candidates._rewrites`; each failed attempt is kept as a rejection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.candidates._rewrites import (
    Complete,
    Failure,
    Rewrites,
    _brief,
    _client_lm,
    _inputs_line,
    _judge,
    _request,
    _run_proposer,
    validate_rewrite,
)
from migrator.dataset import Example
from migrator.llm import Endpoint
from migrator.metrics import Metric
from migrator.prompts import PromptTemplate

__all__ = ["Reflected", "propose_reflection"]

# how many of the scored train examples the proposer reads (failures first): a small
# proposer's context holds the instruction and about this many inputs
_RECORDS = 6
_MAX_TOKENS = 700


@dataclass(frozen=True)
class Reflected:
    """One train example as the best config answered it."""

    inputs: Mapping[str, Any]
    expected: str
    output: str
    correct: bool


def _feedback(record: Reflected, metric: Metric) -> str:
    if record.correct:
        return "Correct."
    return f"Wrong: the expected answer is {record.expected}. {metric.format_hint()}"


def _records(scored: Sequence[Reflected], metric: Metric) -> list[dict[str, Any]]:
    """GEPA's dataset with feedback: the failures first, then a correct answer or two for contrast."""
    ordered = [r for r in scored if not r.correct] + [r for r in scored if r.correct]
    return [
        {"Inputs": _inputs_line(r.inputs), "Generated Outputs": r.output.strip()[:300] or "(empty)", "Feedback": _feedback(r, metric)}
        for r in ordered[:_RECORDS]
    ]


def _instruction(template: PromptTemplate) -> str:
    return "\n\n".join(c for r, c in template.messages if r == "system") or template.text()


def propose_reflection(
    *,
    current: PromptTemplate,
    slot: str,
    metric: Metric,
    train: Sequence[Example],
    scored: Sequence[Reflected],
    proposer: Endpoint,
    complete: Complete,
    seed: int,
    origin: Mapping[str, Any],
    existing: Collection[str] = (),
) -> Rewrites:
    """At most one new candidate for ``slot``, written from how ``current`` did on ``scored``.

    Args:
        current: the template the best config sends (its system turn is what is rewritten).
        scored: train examples as the best config answered them.
        origin: how the candidate came about (the parent config), kept with it and its rejections.
        existing: the texts of the prompts the search has already: a copy of one is a duplicate.
    """
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    from migrator.evaluate import seeded

    gepa_prompt = InstructionProposalSignature.prompt_renderer(
        {"current_instruction_doc": _instruction(current), "dataset_with_feedback": _records(scored, metric)}
    )
    accepts = _accepted_params(proposer)
    params = seeded({k: v for k, v in (("temperature", 1.0), ("max_tokens", _MAX_TOKENS)) if k in accepts}, accepts, seed)
    response = complete(_request(proposer, (("user", str(gepa_prompt)),), tuple(sorted(params.items()))))
    text = InstructionProposalSignature.output_extractor(response.text)["new_instruction"]
    seen = set(existing)

    def flaw(instruction: str) -> str | None:
        result = validate_rewrite(current, instruction, slot, metric=metric, train=train)
        if isinstance(result, str):
            return result
        return "duplicate of an earlier candidate" if result.text() in seen else None

    proposals: list[dict[str, Any]] = []
    reason = flaw(text)
    if reason is None:
        proposals.append({"text": text, "framing": "gepa"})
    else:
        proposals.append({"text": text, "framing": "gepa", "superseded": reason})
        failures = [Failure(r.inputs, r.expected, r.output) for r in scored if not r.correct]
        brief = _brief(current, metric, str(origin.get("family", proposer.model)), train, failures)
        lm = _client_lm(proposer, complete, seed)
        proposals += _run_proposer(brief, lm, n=1, seed=seed, flaw=flaw, framings=("direct",), label=slot)
    return _judge(proposals, current, {**origin, "kind": "reflection"}, metric=metric, train=train, seen=seen, ids=lambda _: slot)


def _accepted_params(endpoint: Endpoint) -> frozenset[str]:
    from migrator.models import model_info

    return model_info(endpoint.model, api_base=endpoint.api_base).accepts
