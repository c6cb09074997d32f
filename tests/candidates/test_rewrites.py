"""DSPy rewrites: validated one by one, asked through migrator's client, cached by what was asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.candidates import Failure, Rewrites, propose_rewrites, validate_rewrite
from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.llm import Endpoint, LLMRequest, LLMResponse, ResponseCache
from migrator.metrics import build_metric
from migrator.prompts import PromptTemplate
from migrator.spec import MetricSpec

LABEL = build_metric(MetricSpec(name="label", labels=("positive", "negative")))
ORIGINAL = PromptTemplate(
    (("system", "Classify the sentiment of the review."), ("user", "Review: {{ review }}")), source="prompt.yaml"
)
TRAIN = [Example("t1", {"review": "The battery died after a single day of light use."}, "negative")]
FAILURES = [Failure({"review": "Not bad at all."}, "positive", "Negative.")]
PROPOSER = Endpoint("openai/proposer", "chat", api_base="http://127.0.0.1:9/v1", served_by="http://127.0.0.1:9/v1")
GOOD = "Decide whether the review is positive or negative; answer with that one word only."


def _reply(text: str) -> LLMResponse:
    """A reply in the layout DSPy's chat adapter reads its output field from."""
    body = f"[[ ## new_instruction ## ]]\n{text}\n\n[[ ## completed ## ]]"
    return LLMResponse(body, prompt_tokens=10, completion_tokens=5, cost_usd=0.0, latency_s=0.0)


def _propose(complete: Callable[[LLMRequest], LLMResponse], cache: ResponseCache | None, n: int = 3) -> Rewrites:
    return propose_rewrites(
        original=ORIGINAL,
        metric=LABEL,
        family="openai/gpt-4o",
        train=TRAIN,
        failures=FAILURES,
        proposer=PROPOSER,
        complete=complete,
        n=n,
        seed=7,
        cache=cache,
    )


def test_a_rewrite_that_keeps_the_variables_becomes_the_system_turn() -> None:
    template = validate_rewrite(ORIGINAL, f"  {GOOD}\n", "rewrite-x-1", metric=LABEL, train=TRAIN)
    assert isinstance(template, PromptTemplate)
    assert template.messages == (("system", GOOD), ("user", "Review: {{ review }}"))
    assert template.source == "prompt.yaml [rewrite-x-1]"


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        ("Be brief.", "too short"),
        ("The battery died after a single day of light use.", "copies a training input"),
        ("Decide what the reviewer thinks and answer with one word.", "names none of the labels"),
        (GOOD + " Product: {{ product }}", "introduces template variable(s) product"),
        (GOOD + " Mind the {{ review", "template syntax error"),
    ],
)
def test_a_rewrite_is_rejected_with_the_reason(instruction: str, reason: str) -> None:
    result = validate_rewrite(ORIGINAL, instruction, "rewrite-x-1", metric=LABEL, train=TRAIN)
    assert isinstance(result, str) and reason in result


def test_a_rewrite_that_drops_a_variable_the_prompt_uses_is_rejected() -> None:
    original = PromptTemplate((("system", "Classify {{ review }}."), ("user", "Now answer.")))
    result = validate_rewrite(original, GOOD, "rewrite-x-1", metric=LABEL)
    assert result == "drops template variable(s) review that the original prompt uses"


def test_proposals_are_asked_through_the_client_judged_and_a_rerun_asks_nothing(tmp_path: Path) -> None:
    # the third proposal is too short, so it is asked again in the other framing
    replies = iter([GOOD, GOOD, "Too short.", GOOD + " Write it in lowercase."])
    asked: list[LLMRequest] = []

    def complete(request: LLMRequest) -> LLMResponse:
        asked.append(request)
        return _reply(next(replies))

    cache = ResponseCache(tmp_path / "cache.db")
    first = _propose(complete, cache)

    assert len(asked) == 4 and all(r.endpoint == PROPOSER and r.messages for r in asked)
    assert len({dict(r.params)["seed"] for r in asked}) == 4  # one request seed per proposal
    assert "[[ ## failures ## ]]" in asked[2].messages[-1][1] and "[[ ## task ## ]]" in asked[3].messages[-1][1]
    assert [(c.id, c.template.messages[0]) for c in first.candidates] == [
        ("rewrite-openai-gpt-4o-1", ("system", GOOD)),
        ("rewrite-openai-gpt-4o-3", ("system", GOOD + " Write it in lowercase.")),
    ]
    assert first.candidates[0].origin == {
        "kind": "rewrite", "family": "openai/gpt-4o", "proposer": "openai/proposer", "seed": 7, "index": 1,
        "framing": "rewrite",
    }  # fmt: skip
    assert first.candidates[1].origin["framing"] == "direct"
    assert [(r.origin["index"], r.reason) for r in first.rejected] == [
        (2, "duplicate of an earlier candidate"),
        (3, "empty or too short to be an instruction; asked again in another framing"),
    ]

    def no_calls(request: LLMRequest) -> LLMResponse:
        raise AssertionError("the proposer was asked again")

    assert _propose(no_calls, cache) == first


def test_a_budget_spent_while_proposing_reaches_the_caller() -> None:
    def spent(request: LLMRequest) -> LLMResponse:
        raise BudgetExhausted("calls")

    with pytest.raises(BudgetExhausted) as info:
        _propose(spent, None, n=1)
    assert info.value.which == "calls"


def test_a_proposer_that_fails_yields_a_rejection_not_an_error() -> None:
    def broken(request: LLMRequest) -> LLMResponse:
        raise RuntimeError("connection reset")

    rewrites = _propose(broken, None, n=2)
    assert rewrites.candidates == ()
    failed = "the proposer failed: RuntimeError: connection reset"
    assert [r.reason for r in rewrites.rejected] == [f"{failed}; asked again in another framing", failed] * 2
