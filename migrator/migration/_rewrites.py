"""Prompt rewrites: before the search, DSPy proposals per target family grounded on the legacy
prompt's failures on one of the family's targets; during it, reflections on the best config's
failures on train (``reflector``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from migrator.candidates import (
    Failure,
    PromptCandidate,
    Reflected,
    Rejection,
    Rewrites,
    propose_reflection,
    propose_rewrites,
)
from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.evaluate import Config, evaluate
from migrator.llm import Endpoint, LLMClient
from migrator.migration._prepare import Prepared, endpoint_for
from migrator.models import family
from migrator.search import REFLECTION_SAMPLE, Reflect, SearchSetup

__all__ = ["reflector", "rewrites"]

# how many train examples the proposer sees scored with the legacy prompt
_FAILURE_SAMPLE = 12


def rewrites(
    runner: asyncio.Runner,
    client: LLMClient,
    setup: SearchSetup,
    prepared: Prepared,
    api_bases: Mapping[str, str],
    on_progress: Callable[[str, Mapping[str, Any]], None],
) -> tuple[list[PromptCandidate], list[Rejection]]:
    """DSPy rewrites per target family, grounded on the legacy prompt's failures there."""
    space = setup.spec.search_space.prompt
    if not space.proposer or space.rewrites <= 0:
        return [], []
    proposer = endpoint_for(space.proposer, api_bases)
    sample = prepared.splits.train[:_FAILURE_SAMPLE] or prepared.splits.dev[:_FAILURE_SAMPLE]
    by_family: dict[str, str] = {}
    for model in setup.endpoints:
        by_family.setdefault(family(model), model)
    accepted: list[PromptCandidate] = []
    rejected: list[Rejection] = []
    for fam, model in by_family.items():
        on_progress("final", {"what": f"proposing {space.rewrites} rewrites for {fam}"})
        try:
            out = _rewrites_for(runner, client, setup, prepared, fam, model, proposer, sample)
        except BudgetExhausted as exc:
            # the search that follows stops at once and says which budget; what was written stays
            on_progress("final", {"what": f"the {exc.which} budget ran out while proposing rewrites"})
            break
        accepted += out.candidates
        rejected += out.rejected
        on_progress("notice", {"what": proposals_line(fam, space.rewrites, out)})
    return accepted, rejected


def proposals_line(fam: str, n: int, out: Rewrites) -> str:
    """What the proposer gave for one family, on one line: accepted, and why the rest were rejected."""
    line = f"rewrites for {fam}: {len(out.candidates)} of {n} accepted"
    if out.rejected:
        reasons = Counter(r.reason.removesuffix("; asked again in another framing").split(":")[0] for r in out.rejected)
        listed = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        line += f"; {len(out.rejected)} proposals rejected ({listed}); the report lists them"
    return line


def _rewrites_for(
    runner: asyncio.Runner,
    client: LLMClient,
    setup: SearchSetup,
    prepared: Prepared,
    fam: str,
    model: str,
    proposer: Endpoint,
    sample: Sequence[Example],
) -> Rewrites:
    """The rewrites for one target family, grounded on the legacy prompt's failures on ``model``."""
    original = prepared.template
    config = Config(model, "original", 0, "none", tuple(sorted(setup.legacy_params(model).items())), setup.endpoints[model].mode)
    results = runner.run(evaluate(client, config, setup.endpoints[model], original, sample, setup.metric))
    by_id = {ex.id: ex for ex in sample}
    failures = [
        Failure(by_id[r.example_id].inputs, setup.metric.expectation(by_id[r.example_id].expected), r.output or f"(error: {r.error})")
        for r in results
        if r.score < 1.0
    ]
    return propose_rewrites(
        original=original,
        metric=setup.metric,
        family=fam,
        train=prepared.splits.train,
        failures=failures,
        proposer=proposer,
        complete=lambda request: runner.run(client.complete(request)),
        n=setup.spec.search_space.prompt.rewrites,
        seed=setup.spec.seed,
        cache=getattr(client, "cache", None),
    )


def reflector(runner: asyncio.Runner, client: LLMClient, prepared: Prepared, api_bases: Mapping[str, str]) -> Reflect | None:
    """How the search writes its reflection slots: None when the spec asks for none."""
    space = prepared.spec.search_space.prompt
    if not space.reflections or space.proposer is None:
        return None
    proposer = endpoint_for(space.proposer, api_bases)
    pool = prepared.splits.train or prepared.splits.dev

    def reflect(setup: SearchSetup, config: Config, slot: str) -> Rewrites:
        # each slot reads a fresh slice of train, so two reflections see different failures
        index = int(slot.rsplit("-", 1)[1]) - 1
        start = (index * REFLECTION_SAMPLE) % max(1, len(pool))
        sample = [*pool[start:], *pool[:start]][:REFLECTION_SAMPLE]
        template = setup.prompts[config.prompt_id].template
        demos = setup.demos_for(config)

        def demos_but_itself(example: Example) -> Sequence[Any]:
            # a train example is in the demo pool: shown its own answer, it could not fail
            return [d for d in demos(example) if dict(d.inputs) != dict(example.inputs)]

        scoring = evaluate(client, config, setup.endpoints[config.model], template, sample, setup.metric, demos_but_itself)
        results = runner.run(scoring)
        by_id = {ex.id: ex for ex in sample}
        scored = [
            Reflected(
                by_id[r.example_id].inputs,
                setup.metric.expectation(by_id[r.example_id].expected),
                r.output or f"(error: {r.error})",
                r.score >= 1.0,
            )
            for r in results
        ]
        return propose_reflection(
            current=template,
            slot=slot,
            metric=setup.metric,
            train=prepared.splits.train,
            scored=scored,
            proposer=proposer,
            complete=lambda request: runner.run(client.complete(request)),
            seed=setup.spec.seed,
            origin={"family": family(config.model), "proposer": proposer.model, "parent": config.label(), "slot": slot},
            existing=[p.template.text() for p in setup.prompts.values() if not p.origin.get("pending")],
        )

    return reflect
