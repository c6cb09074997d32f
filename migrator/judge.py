"""The ``judge`` metric: an LLM grades each reply, through migrator's client.

A judge request is an ``LLMRequest`` like any other: cached (a rerun or a resume pays
nothing for a reply it judged before), counted in the budget and retried on provider
faults. DSPy writes the judge's prompt from a signature and parses its reply
(``dspy.ChatAdapter``), as it does for its own LLM-judged metrics; migrator only sends
the request, so that every call passes through its client. The prompt is shown whole by
``judge_prompt`` (the dry run, MLflow's ``judge/prompt.txt`` and summary.json carry it).

The judge answers a score from 1 to 5 and a one-sentence reason; the metric's score is
``(score - 1) / 4``, and a reply passes at 3 or more.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from migrator import assertions
from migrator.dataset import Example
from migrator.errors import BudgetExhausted, JudgeFailed, LLMError
from migrator.llm import Endpoint, LLMClient, LLMRequest
from migrator.metrics import Metric
from migrator.models import import_dspy, model_info
from migrator.parsing import normalize_text, strip_fences
from migrator.prompts import format_answer
from migrator.redaction import redact

__all__ = [
    "CALLS_PER_ANSWER",
    "DEFAULT_CRITERIA",
    "MAX_TOKENS",
    "PASS_SCORE",
    "RUBRIC_CRITERIA",
    "Judge",
    "JudgeAgreement",
    "RubricGrader",
    "agreement",
    "agreement_on",
    "attach",
    "exact_match",
    "judge_of",
    "judge_prompt",
    "parse_verdict",
]

# one judge request per scored answer (retries are the client's, and counted by it)
CALLS_PER_ANSWER = 1
# a reply the judge scores 3 of 5 or more passes: (3 - 1) / 4
PASS_SCORE = 0.5
MAX_TOKENS = 300

# what the rubric grader's prompt shows as its criteria: each test's own rubric goes there
RUBRIC_CRITERIA = "{the test's llm-rubric}"
DEFAULT_CRITERIA = (
    "The reply does what the reference reply does: it states the same facts, the same decision and the "
    "same next step for the customer, in the same format. Wording, tone and length may differ."
)

_INSTRUCTIONS = (
    "Grade one reply that an LLM application gave to one input. Score from 1 to 5 how well the reply "
    "meets the criteria: 5 fully, 4 with a small slip, 3 partly, 2 barely, 1 not at all or not a reply. "
    "Judge against the criteria{reference} only; style counts only where the criteria say so."
)


def _signature(reference: bool) -> Any:
    dspy = import_dspy()
    fields: dict[str, Any] = {
        "criteria": (str, dspy.InputField(desc="what a good reply does")),
        "app_input": (str, dspy.InputField(desc="the input the application answered")),
    }
    if reference:
        fields["reference_reply"] = (str, dspy.InputField(desc="a reply known to be good for this input"))
    fields["reply"] = (str, dspy.InputField(desc="the reply to grade"))
    fields["reason"] = (str, dspy.OutputField(desc="one sentence: what the reply gets right or wrong"))
    fields["score"] = (int, dspy.OutputField(desc="1 to 5"))
    instructions = _INSTRUCTIONS.format(reference=" and the reference reply" if reference else "")
    return dspy.Signature(fields, instructions)


@dataclass(frozen=True)
class Judge:
    """Which model judges, on what criteria, and whether it sees the expected reply."""

    endpoint: Endpoint
    criteria: str = DEFAULT_CRITERIA
    reference: bool = True

    def messages(self, inputs: Mapping[str, Any], expected: Any, reply: str) -> list[dict[str, str]]:
        """The judge's chat turns for one reply, written by DSPy's ChatAdapter."""
        dspy = import_dspy()
        values = {"criteria": self.criteria, "app_input": _shown_input(inputs), "reply": reply or "(no reply)"}
        if self.reference:
            values["reference_reply"] = format_answer(expected)
        turns = dspy.ChatAdapter().format(_signature(self.reference), demos=[], inputs=values)
        return [{"role": str(t["role"]), "content": str(t["content"])} for t in turns]

    def request(self, example: Example, reply: str) -> LLMRequest:
        accepts = model_info(self.endpoint.model, api_base=self.endpoint.api_base).accepts
        params = {k: v for k, v in (("temperature", 0), ("max_tokens", MAX_TOKENS)) if k in accepts}
        turns = tuple((m["role"], m["content"]) for m in self.messages(example.inputs, example.expected, reply))
        if self.endpoint.mode == "completion":
            return LLMRequest(self.endpoint, prompt="\n\n".join(c for _, c in turns), params=tuple(sorted(params.items())))
        return LLMRequest(self.endpoint, messages=turns, params=tuple(sorted(params.items())))

    async def grade(self, client: LLMClient, example: Example, reply: str) -> tuple[float, str]:
        """The score in [0, 1] and the judge's reason; a judge that answers no score gives 0, and says so.

        A spent budget propagates, like any call's.
        A judge that cannot be reached after the client's retries raises :class:`JudgeFailed`:
        the reply is then not scored (a failed example), rather than scored 0.
        """
        try:
            response = await client.complete(self.request(example, strip_fences(reply)))
        except BudgetExhausted:
            raise
        except LLMError as exc:
            raise JudgeFailed(f"judge {self.endpoint.model} failed: " + redact(str(exc))[:300]) from None
        score, reason = parse_verdict(response.text)
        if score is None:
            return 0.0, "judge gave no score: " + response.text.strip()[:300]
        return (score - 1) / 4, reason


def parse_verdict(text: str) -> tuple[int | None, str]:
    """The judge's 1-5 score and reason: DSPy's parse, else the first ``score`` number a small judge wrote."""
    dspy = import_dspy()
    try:
        parsed = dspy.ChatAdapter().parse(_signature(False), text)
        score, reason = int(parsed["score"]), str(parsed.get("reason") or "")
    except Exception:  # a judge that does not follow the format: look for the score it meant
        found = re.search(r"score\D{0,12}([1-5])\b", text, re.IGNORECASE) or re.fullmatch(r"\s*([1-5])\s*", text)
        if found is None:
            return None, ""
        score, reason = int(found.group(1)), text.strip()[:300]
    if not 1 <= score <= 5:
        return None, reason
    return score, reason


def _shown_input(inputs: Mapping[str, Any]) -> str:
    if len(inputs) == 1:
        return str(next(iter(inputs.values())))
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())


def judge_prompt(judge: Judge) -> str:
    """The judge's prompt as a reviewer reads it: its turns, with placeholders where each reply's values go."""
    turns = judge.messages({"input": "{app_input}"}, "{reference_reply}", "{reply}")
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in turns)


@dataclass(frozen=True)
class RubricGrader:
    """The ``assertions`` metric with a judge: each test's ``llm-rubric``\ s graded by the judge (the
    rubric its criteria, no reference reply, as promptfoo grades them), then the test scored as promptfoo does."""

    endpoint: Endpoint

    async def grade(self, client: LLMClient, example: Example, reply: str) -> tuple[float, str]:
        texts = assertions.rubrics(example.expected)
        graded = await asyncio.gather(
            *(Judge(self.endpoint, rubric, reference=False).grade(client, example, reply) for rubric in texts)
        )
        score = assertions.score(reply, example.expected, {t: g[0] for t, g in zip(texts, graded, strict=True)})
        return score, "; ".join(f"{t[:80]}: {why}" for t, (_, why) in zip(texts, graded, strict=True))


def judge_of(grader: Any) -> Judge | None:
    """The judge a metric's grader calls, as its prompt and price are shown (a rubric grader's: each test's rubric)."""
    if isinstance(grader, Judge):
        return grader
    if isinstance(grader, RubricGrader):
        return Judge(grader.endpoint, RUBRIC_CRITERIA, reference=False)
    return None


def attach(metric: Metric, endpoint: Endpoint | None) -> Metric:
    """``metric`` with its judge calling ``endpoint``: the judge metric's (the spec's criteria), or
    the ``assertions`` metric's, which grades each test's ``llm-rubric``."""
    if endpoint is None or metric.spec is None:
        return metric
    spec = metric.spec
    if metric.name == "judge":
        return replace(metric, grader=Judge(endpoint, spec.criteria or DEFAULT_CRITERIA, spec.reference))
    if metric.name == "assertions":
        return replace(metric, grader=RubricGrader(endpoint))
    return metric


@dataclass(frozen=True)
class JudgeAgreement:
    """How often the judge's pass/fail matches an exact comparison with the expected reply, on the same replies."""

    n: int
    exact_matches: int
    agree: float
    # Cohen's kappa: agreement beyond what two raters with these pass rates would reach by chance; None when undefined
    kappa: float | None
    # replies equal to the expected one that the judge failed: a judge that does this is not to be trusted
    exact_but_failed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "exact_matches": self.exact_matches,
            "agreement": round(self.agree, 4),
            "kappa": None if self.kappa is None else round(self.kappa, 4),
            "exact_but_failed": self.exact_but_failed,
        }


def agreement(pairs: Sequence[tuple[float, bool]]) -> JudgeAgreement | None:
    """Agreement of (judge score, exact match) pairs; None with no pairs."""
    if not pairs:
        return None
    n = len(pairs)
    judged = [score >= PASS_SCORE for score, _ in pairs]
    exact = [match for _, match in pairs]
    agree = sum(j == e for j, e in zip(judged, exact, strict=True)) / n
    p_judge, p_exact = sum(judged) / n, sum(exact) / n
    chance = p_judge * p_exact + (1 - p_judge) * (1 - p_exact)
    kappa = None if math.isclose(chance, 1.0) else (agree - chance) / (1 - chance)
    failed = sum(e and not j for j, e in zip(judged, exact, strict=True))
    return JudgeAgreement(n, sum(exact), agree, kappa, failed)


def agreement_on(replies: Iterable[tuple[str, str, float]], expected: Mapping[str, Any]) -> JudgeAgreement | None:
    """The judge's agreement with an exact comparison on ``(example id, reply, judge score)``
    triples, each distinct reply to an example once (a config scored twice counts once)."""
    seen: dict[tuple[str, str], float] = {}
    for example_id, reply, score in replies:
        if example_id in expected:
            seen.setdefault((example_id, reply), score)
    return agreement([(score, exact_match(reply, expected[eid])) for (eid, reply), score in seen.items()])


def exact_match(output: str, expected: Any) -> bool:
    """Whether a reply is the expected one, compared as the ``exact`` metric does."""
    return normalize_text(strip_fences(output)) == normalize_text(format_answer(expected))
