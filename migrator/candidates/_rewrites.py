"""Rewritten instructions per target family, proposed by a DSPy program and validated.

:func:`propose_rewrites` asks a proposer model, through migrator's own client, for N
rewrites of the legacy instruction that address what the target got wrong; each one
passes :func:`validate_rewrite` or becomes a :class:`Rejection` with its reason. This is
the one module that imports dspy, and only when a proposer runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol, TypeAlias

from migrator.candidates._transforms import PromptCandidate
from migrator.dataset import Example
from migrator.errors import BudgetExhausted
from migrator.llm import Endpoint, LLMRequest, LLMResponse, request_key
from migrator.metrics import Metric
from migrator.models import import_dspy
from migrator.prompts import PromptTemplate

Complete: TypeAlias = Callable[[LLMRequest], LLMResponse]
"""Sends one request through migrator's client and returns its reply."""


@dataclass(frozen=True)
class Failure:
    """An input the legacy prompt got wrong on a target, with what the target said."""

    inputs: Mapping[str, Any]
    expected: str
    output: str


@dataclass(frozen=True)
class Rejection:
    """A proposal that did not become a candidate, with the reason."""

    origin: Mapping[str, Any]
    text: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """As a study and summary.json store it (JSON)."""
        return {"origin": dict(self.origin), "text": self.text, "reason": self.reason}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Rejection:
        return cls(stored["origin"], stored["text"], stored["reason"])


@dataclass(frozen=True)
class Rewrites:
    """What one proposer run produced for one target family."""

    candidates: tuple[PromptCandidate, ...]
    rejected: tuple[Rejection, ...]


class ProposalCache(Protocol):
    """Where proposals are kept between runs: migrator's response cache fits."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, model: str, value: dict[str, Any]) -> None: ...


def _copies_an_input(instruction: str, train: Sequence[Example]) -> bool:
    """True when most of the 'instruction' is one of the training inputs, verbatim."""
    text = " ".join(instruction.split()).lower()
    for ex in train:
        for value in ex.inputs.values():
            piece = " ".join(str(value).split()).lower()
            if len(piece) >= 20 and piece in text and len(piece) >= len(text) / 2:
                return True
    return False


# an answer that opens with an apology or a refusal: no instruction follows it
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry\b|i apologi[sz]e|my apologies|apologies\b|unfortunately\b"
    r"|i (cannot|can ?not|can'?t|am unable|'m unable|am not able|won'?t|do not|don'?t)\b|as an ai\b)",
    re.IGNORECASE,
)


def _refuses(instruction: str) -> bool:
    """True when the 'instruction' opens with an apology or a refusal."""
    return bool(_REFUSAL.match(instruction.strip()))


def validate_rewrite(
    original: PromptTemplate,
    instruction: str,
    rewrite_id: str,
    *,
    metric: Metric | None = None,
    train: Sequence[Example] = (),
) -> PromptTemplate | str:
    """The rewritten template, or the reason it is rejected.

    Rejected: empty, an apology or refusal, a copied training input, (for a label metric)
    no label named, template syntax errors, and template variables added or dropped.
    """
    from migrator.errors import TemplateError

    text = instruction.strip()
    if len(text) < 20:
        return "empty or too short to be an instruction"
    if _refuses(text):
        return "apologises or refuses instead of giving an instruction"
    if _copies_an_input(text, train):
        return "copies a training input instead of giving an instruction"
    if metric is not None and metric.labels and not any(label.lower() in text.lower() for label in metric.labels):
        return f"names none of the labels the metric expects ({', '.join(metric.labels)})"
    rest = [(r, c) for r, c in original.messages if r != "system"]
    template = PromptTemplate((("system", text), *rest), source=f"{original.source} [{rewrite_id}]")
    try:
        found = template.variables
    except TemplateError as exc:
        return f"template syntax error: {exc}"
    new = sorted(found - original.variables)
    lost = sorted(original.variables - found)
    if new:
        return f"introduces template variable(s) {', '.join(new)} that the dataset does not provide"
    if lost:
        return f"drops template variable(s) {', '.join(lost)} that the original prompt uses"
    return template


def propose_rewrites(
    *,
    original: PromptTemplate,
    metric: Metric,
    family: str,
    train: Sequence[Example],
    failures: Sequence[Failure],
    proposer: Endpoint,
    complete: Complete,
    n: int,
    seed: int,
    cache: ProposalCache | None = None,
) -> Rewrites:
    """N rewritten instructions for one target family, written by a DSPy program.

    DSPy calls the proposer through migrator's own client (``complete``), so its calls
    are cached, retried, budgeted and counted like every other call. The proposals are
    cached too, by (legacy prompt, target family, proposer, seed, n): a rerun makes no
    proposer calls.

    A proposal that fails (an apology or refusal, a copied input, no label, a broken
    template, or a reply DSPy cannot parse) is asked again in the other framing (a short
    brief to write a prompt from scratch); the failed attempt is kept as a rejection with
    its reason.

    Args:
        proposer: how to reach the proposer model (any target endpoint will do).
        complete: sends one request through the client and returns its reply.
        cache: keeps the proposals between runs (the client's response cache); ``None``
            asks the proposer every time.
    """
    key = _proposals_key(original, family, proposer, n=n, seed=seed)
    proposals = _cached(cache, key)
    if proposals is None:
        brief = _brief(original, metric, family, train, failures)

        def flaw(text: str) -> str | None:
            result = validate_rewrite(original, text, "check", metric=metric, train=train)
            return result if isinstance(result, str) else None

        proposals = _run_proposer(brief, _client_lm(proposer, complete, seed), n=n, seed=seed, flaw=flaw)
        if cache is not None and any(not p.get("error") for p in proposals):
            cache.put(key, f"proposer:{proposer.model}", {"proposals": proposals})
    origin = {"kind": "rewrite", "family": family, "proposer": proposer.model, "seed": seed}
    return _judge(proposals, original, origin, metric=metric, train=train)


def _proposals_key(original: PromptTemplate, family: str, proposer: Endpoint, *, n: int, seed: int) -> str:
    """The cache key of one proposer run: what it is asked and who answers."""
    payload: dict[str, Any] = {
        "kind": "dspy-rewrites",
        "prompt": [list(m) for m in original.messages],
        "family": family,
        "proposer": proposer.model,
        "seed": seed,
        "n": n,
        # a failed proposal is asked again in the next framing
        "framings": list(_FRAMINGS),
    }
    if proposer.served_by is not None:
        payload["served_by"] = proposer.served_by
    return request_key(payload)


def _cached(cache: ProposalCache | None, key: str) -> list[dict[str, Any]] | None:
    cached = cache.get(key) if cache is not None else None
    return None if cached is None else list(cached["proposals"])


def _judge(
    proposals: Sequence[Mapping[str, Any]],
    original: PromptTemplate,
    origin: Mapping[str, Any],
    *,
    metric: Metric,
    train: Sequence[Example],
    seen: Collection[str] = (),
    ids: Callable[[int], str] | None = None,
) -> Rewrites:
    """Each proposal accepted as a candidate, or rejected with the reason; duplicates rejected.

    Args:
        seen: texts of the prompts there are already (the original is one).
        ids: the candidate id of the i-th proposal (from 1); ``rewrite-<family>-<i>`` by default.
    """
    accepted: list[PromptCandidate] = []
    rejected: list[Rejection] = []
    seen = {original.text(), *seen}
    slug = str(origin.get("family", "")).replace("/", "-").replace(".", "")
    i = 0
    for proposal in proposals:
        instruction = str(proposal.get("text") or "")
        if proposal.get("superseded"):  # a failed attempt, asked again in the next framing
            where = {**origin, "index": i + 1, "framing": proposal.get("framing")}
            rejected.append(Rejection(where, instruction, f"{proposal['superseded']}; asked again in another framing"))
            continue
        i += 1
        rewrite_id = ids(i) if ids is not None else f"rewrite-{slug}-{i}"
        where = {**origin, "index": i, **({"framing": proposal["framing"]} if proposal.get("framing") else {})}
        result = (
            f"the proposer failed: {proposal['error']}"
            if proposal.get("error")
            else validate_rewrite(original, instruction, rewrite_id, metric=metric, train=train)
        )
        if isinstance(result, str):
            rejected.append(Rejection(where, instruction, result))
        elif result.text() in seen:
            rejected.append(Rejection(where, instruction, "duplicate of an earlier candidate"))
        else:
            seen.add(result.text())
            accepted.append(PromptCandidate(rewrite_id, result, where))
    return Rewrites(tuple(accepted), tuple(rejected))


def _brief(
    original: PromptTemplate, metric: Metric, family: str, train: Sequence[Example], failures: Sequence[Failure]
) -> dict[str, str]:
    """The DSPy program's inputs, the same for every rewrite of one run."""
    instruction = "\n\n".join(c for r, c in original.messages if r == "system") or original.text()
    return {
        "original_instruction": instruction,
        "task_examples": _render_examples(list(train), metric),
        "output_format": metric.format_hint(),
        "target_model": family,
        "failures": _render_failures(failures),
    }


def _render_examples(examples: Sequence[Example], metric: Metric, limit: int = 6) -> str:
    """Train inputs with their answers; an example whose expected value is no answer (a promptfoo test's checks) is not shown."""
    answered = [(ex, answer) for ex in examples if (answer := metric.answer(ex.expected)) is not None]
    lines = [f"- {_inputs_line(ex.inputs)} -> {answer}" for ex, answer in answered[:limit]]
    return "\n".join(lines) or "(none)"


def _render_failures(failures: Sequence[Failure], limit: int = 5) -> str:
    lines = [
        f"- input: {_inputs_line(f.inputs)}\n  target answered: {f.output.strip()[:200]!r}\n  expected: {f.expected}"
        for f in failures[:limit]
    ]
    return "\n".join(lines) or "(the target made no mistakes on the sample)"


def _inputs_line(inputs: Mapping[str, Any]) -> str:
    """An example's inputs on one line, each value cut short so a long document does not crowd the rest."""
    return "; ".join(f"{k}: {str(v)[:300]}" for k, v in inputs.items())


# How the proposer is asked, in order: rewrite the legacy instruction from its failures;
# then, for a proposal that failed, write a prompt from scratch from a short brief (a
# small proposer that apologises or copies an input given the long brief often manages this).
_FRAMINGS = ("rewrite", "direct")


def _signature(framing: str) -> Any:
    import_dspy()
    import dspy

    class ProposeInstruction(dspy.Signature):  # type: ignore[misc]
        """Rewrite the instruction (system prompt) of an LLM app so that the target model answers
        correctly and in exactly the required output format. Study the failures: they show what the
        target model actually answered with the original instruction. Keep the task the same; be
        concrete; do not include examples or template placeholders."""

        original_instruction: str = dspy.InputField()
        task_examples: str = dspy.InputField(desc="inputs with their expected outputs, from the training data")
        output_format: str = dspy.InputField(desc="what the metric expects the answer to look like")
        target_model: str = dspy.InputField(desc="the model family the instruction is written for")
        failures: str = dspy.InputField(desc="inputs the target got wrong: its actual output vs the expected output")
        variant: str = dspy.InputField(desc="which of several different rewrites this is")
        new_instruction: str = dspy.OutputField(desc="the complete rewritten instruction, plain text")

    class WriteInstruction(dspy.Signature):  # type: ignore[misc]
        """Write a short, direct system prompt for a small language model that does the task shown by
        the examples. Say what the input is and exactly what to answer. Write only the prompt itself."""

        task: str = dspy.InputField(desc="what the app does, in the words of its current prompt")
        task_examples: str = dspy.InputField(desc="inputs with their expected outputs")
        output_format: str = dspy.InputField(desc="what the answer must look like")
        variant: str = dspy.InputField(desc="which of several different prompts this is")
        new_instruction: str = dspy.OutputField(desc="the system prompt, plain text")

    return {"rewrite": ProposeInstruction, "direct": WriteInstruction}[framing]


def _client_lm(endpoint: Endpoint, complete: Complete, seed: int) -> Any:
    """A DSPy LM whose every call is one request through migrator's client.

    DSPy's own LM would call litellm with its own retries: no Retry-After, no error
    mapping, no budget, no cache. This one sends what DSPy asks for as an
    ``LLMRequest``; the params the model takes pass (DSPy's ``rollout_id`` becomes the
    request seed), and what the client raises (a spent budget included) reaches the caller.
    """
    import_dspy()
    import dspy

    from migrator.evaluate import seeded
    from migrator.models import model_info

    accepts = model_info(endpoint.model, api_base=endpoint.api_base).accepts

    class ClientLM(dspy.BaseLM):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(model=endpoint.model, temperature=1.0, max_tokens=600, cache=False, num_retries=0)

        def forward(
            self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
        ) -> Any:
            wanted = {**self.kwargs, **kwargs}
            rollout = wanted.get("rollout_id")
            chosen: dict[str, Any] = {
                k: wanted[k] for k in ("temperature", "max_tokens") if k in accepts and wanted.get(k) is not None
            }
            params = tuple(sorted(seeded(chosen, accepts, seed, sample=int(rollout or 0)).items()))
            turns = tuple(
                (str(m["role"]), str(m["content"])) for m in messages or [{"role": "user", "content": prompt or ""}]
            )
            response = complete(_request(endpoint, turns, params))
            usage = {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens}
            message = SimpleNamespace(role="assistant", content=response.text)
            choice = SimpleNamespace(message=message, finish_reason=response.finish_reason)
            return SimpleNamespace(choices=[choice], usage=usage, model=endpoint.model, cache_hit=response.cached)

    return ClientLM()


def _request(endpoint: Endpoint, turns: tuple[tuple[str, str], ...], params: tuple[tuple[str, Any], ...]) -> LLMRequest:
    """DSPy's turns as one request: chat messages, or one prompt for a completion endpoint."""
    if endpoint.mode == "completion":
        return LLMRequest(endpoint, prompt="\n\n".join(c for _, c in turns), params=params)
    return LLMRequest(endpoint, messages=turns, params=params)


def _run_proposer(
    brief: Mapping[str, str],
    lm: Any,
    *,
    n: int,
    seed: int,
    flaw: Callable[[str], str | None] = lambda _: None,
    framings: Sequence[str] = _FRAMINGS,
    label: str = "rewrite",
) -> list[dict[str, Any]]:
    """N proposals from the DSPy program, each ``{"text", "framing"}`` (or with ``"error"``).

    A proposal that ``flaw`` finds fault with, or that fails, is asked again in the next of
    ``framings``; the failed attempt stays in the list before it, marked ``"superseded"`` with
    the reason. ``label`` names the proposals to the proposer (and so keeps their requests apart).
    """
    import_dspy()
    import dspy

    programs = {framing: dspy.Predict(_signature(framing)) for framing in framings}
    short = {
        "task": brief["original_instruction"][:600],
        "task_examples": brief["task_examples"],
        "output_format": brief["output_format"],
    }
    out: list[dict[str, Any]] = []
    with dspy.context(lm=lm):
        for i in range(n):
            variant = f"{label} {i + 1} of {n} (seed {seed}); make it different from the others"
            for attempt, framing in enumerate(framings):
                inputs = brief if framing == "rewrite" else short
                try:
                    prediction = programs[framing](**inputs, variant=variant, config={"rollout_id": i + n * attempt})
                    proposal: dict[str, Any] = {"text": str(prediction.new_instruction), "framing": framing}
                    reason = flaw(proposal["text"])
                except Exception as exc:  # a proposer that cannot follow DSPy's format yields no rewrite
                    spent = _budget_in(exc)
                    if spent is not None:
                        raise spent from None
                    error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    proposal, reason = {"text": "", "framing": framing, "error": error}, f"the proposer failed: {error}"
                if reason is None or attempt == len(framings) - 1:
                    out.append(proposal)
                    break
                out.append({"text": proposal["text"], "framing": framing, "superseded": reason})
    return out


def _budget_in(exc: BaseException) -> BudgetExhausted | None:
    """The spent budget behind an exception, however deep DSPy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BudgetExhausted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
