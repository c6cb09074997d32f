"""Reflective rewrites during the search: prompt slots that are filled as the search learns.

With ``search_space.prompt.reflections: R`` the prompt choices hold R slots,
``reflect-1`` .. ``reflect-R``, from the first trial on (an Optuna categorical keeps its
choices for the whole study). Each stands for the original prompt, and the planner does
not offer it, until it is written. Slot i is written once the search passes the i-th of R
evenly spaced checkpoints before the refining end of its budget (trials, calls, USD or
minutes, whichever is furthest spent): under the
study's lock, the caller's ``Reflect`` scores the best complete config on a sample of train
and has the proposer write a new instruction from its failures; the accepted one fills the
slot and is tried at once with the rest of the best config. What each slot became (its
messages, or the rejected proposals) is stored in the study, so every worker and a resumed
run see the same prompts, and a slot is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from migrator.candidates import PromptCandidate, Rejection, Rewrites
from migrator.evaluate import Config
from migrator.search._planner import REFINE_SHARE, best_complete
from migrator.search._setup import SearchSetup
from migrator.search._trials import TrialsView

__all__ = [
    "REFLECTIONS_ATTR",
    "REFLECTION_SAMPLE",
    "Reflect",
    "due_slot",
    "pending_prompts",
    "reflection_line",
    "reflection_rejections",
    "stored_reflections",
    "with_reflections",
    "written",
]

REFLECTIONS_ATTR = "migrator.reflections"
# how many train examples the best config is scored on for one reflection (a fresh slice each time)
REFLECTION_SAMPLE = 12

Reflect = Callable[[SearchSetup, Config, str], Rewrites]
"""Writes slot ``str`` from how ``Config`` (the best so far) does on train: a candidate, or rejections."""


def stored_reflections(study: Any) -> dict[str, Any]:
    """What each slot of the study became so far (slot -> stored entry)."""
    return dict(study.user_attrs.get(REFLECTIONS_ATTR) or {})


def slot_ids(setup: SearchSetup) -> list[str]:
    return [f"reflect-{i}" for i in range(1, setup.space.prompt.reflections + 1)]


def with_reflections(setup: SearchSetup, stored: Mapping[str, Any] | None) -> SearchSetup:
    """``setup`` with a prompt for every slot: the written ones from ``stored``, the rest pending."""
    slots = slot_ids(setup)
    if not slots:
        return setup
    prompts = dict(setup.prompts)
    original = setup.prompts["original"].template
    for slot in slots:
        entry = (stored or {}).get(slot) or {}
        if entry.get("messages"):
            prompts[slot] = PromptCandidate.from_dict({**entry, "id": slot})
        else:
            prompts[slot] = PromptCandidate(slot, original, {"kind": "reflection", "pending": True})
    return replace(setup, prompts=prompts)


def pending_prompts(setup: SearchSetup) -> frozenset[str]:
    """The slots not written (yet): no trial is offered them."""
    return frozenset(p.id for p in setup.prompts.values() if p.origin.get("pending"))


def written(prompts: Mapping[str, PromptCandidate]) -> dict[str, PromptCandidate]:
    """``prompts`` without the slots never written: what the report and the exports show."""
    return {k: p for k, p in prompts.items() if not p.origin.get("pending")}


def due_slot(setup: SearchSetup, view: TrialsView, stored: Mapping[str, Any], progress: float) -> str | None:
    """The slot to write now, if one is due: the first unwritten one whose checkpoint is passed.

    Checkpoint i of R lies at i / (R + 1) of the search before its refining end (the last
    quarter); ``progress`` is how far the search is through its budgets (the largest share of
    trials, calls, USD or minutes spent). A complete trial is needed: its config is the one
    reflected on.
    """
    slots = slot_ids(setup)
    left = [s for s in slots if s not in stored]
    if not left or best_complete(view.observed) is None:
        return None
    i = slots.index(left[0]) + 1
    return left[0] if progress >= (1 - REFINE_SHARE) * i / (len(slots) + 1) - 1e-9 else None


def stored_entry(out: Rewrites, origin: Mapping[str, Any]) -> dict[str, Any]:
    """What one slot became, as the study stores it: the candidate if one was accepted, and the rejections."""
    entry: dict[str, Any] = {"origin": dict(origin), "rejected": [r.as_dict() for r in out.rejected]}
    if out.candidates:
        entry.update(out.candidates[0].as_dict())
    return entry


def reflection_rejections(stored: Mapping[str, Any] | None) -> list[Rejection]:
    """Every proposal a slot rejected, in slot order."""
    return [
        Rejection.from_dict(r)
        for _, entry in sorted((stored or {}).items())
        for r in entry.get("rejected", [])
    ]


def reflection_line(slot: str, out: Rewrites) -> str:
    """What one reflection gave, on one line of the console."""
    reasons = "; ".join(dict.fromkeys(r.reason.removesuffix("; asked again in another framing") for r in out.rejected))
    if out.candidates:
        tried = "accepted: tried next with the rest of that config"
        return f"{slot}: {tried}" + (f" (after {len(out.rejected)} rejected: {reasons})" if out.rejected else "")
    return f"{slot}: no instruction accepted ({reasons}); the report lists the proposals"
