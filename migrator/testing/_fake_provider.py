"""A deterministic fake model provider for litellm (``fake/<profile>`` model ids).

Shipped with the package so tests, the notebook and users' own CI can run a whole
migration with no network. It goes through litellm like any provider.

The fake "reads" a sentiment task: the true label of an input is decided by keyword
counts (see ``POSITIVE_WORDS`` / ``NEGATIVE_WORDS``). Each profile answers correctly
with a probability that depends on what a migration can change, so a search has
something real to find:

- ``fake/oracle``: always right, answers with the bare label.
- ``fake/fewshot``: right half the time with no demos, always with 2 or more.
- ``fake/chatty``: right, but rambles (no label on the first line) unless the prompt
  carries an explicit format line ("exactly one of" / "one word").
- ``fake/hot``: gets worse with temperature (right iff temperature <= 0.3).
- ``fake/weak``: right 40% of the time whatever you do.
- ``fake/noisy``: right 75% of the time; at a temperature above 0, which examples it
  gets right changes with the request seed (each sample is a new draw: sampling noise).
- ``fake/echo``: replies with the last user message (to see what was sent).
- ``fake/down``: always fails with a connection error (a retired or unreachable model).
- ``fake/proposer``: a prompt proposer answering DSPy's chat format with an instruction
  that states the output format and the variant it was asked for.
- ``fake/proposer-bad``: a proposer whose instructions add a template variable
  (``{{ reviewer }}``), which migrator must reject.
- ``fake/proposer-copy``: a proposer that answers with a training input instead of an
  instruction (as a 0.5B local model did), which migrator must reject.
- ``fake/proposer-refuse``: a proposer that refuses ("I'm sorry, but I can't assist..."),
  an instruction naming none of the labels, which migrator must reject.
- ``fake/proposer-shy``: refuses when shown failures (DSPy's long brief, GEPA's reflection
  prompt), and writes a prompt when asked in the short framing.

- ``fake/judge``: an LLM judge answering DSPy's chat format (``migrator.judge``): 5 when
  the reply is the reference reply (or, with no reference, the input's true label), else 1.
- ``fake/judge-lenient``: a judge that passes every reply (5): its agreement with exact
  labels is what shows it is useless.
- ``fake/judge-mumble``: a judge that answers no score at all.

Each proposer also answers GEPA's instruction-proposal prompt (a reflection), with the
instruction in a fenced block that names the labels its feedback lists.

The decision is a hash of the request, so the same request always gets the same reply.
A ``@<seconds>`` suffix (``fake/oracle@0.05``) adds that much latency to each call.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.models import import_litellm

__all__ = [
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "PROFILES",
    "FakeProfile",
    "hash_unit",
    "last_input",
    "make_sentiment_rows",
    "register_fake_provider",
    "true_label",
    "word_tokens",
]

POSITIVE_WORDS = ("great", "love", "excellent", "wonderful", "superb", "delightful", "fantastic", "perfect")
NEGATIVE_WORDS = ("terrible", "awful", "broken", "disappointing", "horrible", "useless", "refund", "worst")
_FORMAT_CUES = ("exactly one of", "one word", "only the label")


def true_label(text: str) -> str:
    """The label the fake believes is right for an input text."""
    words = re.findall(r"[a-z]+", text.lower())
    pos = sum(w in POSITIVE_WORDS for w in words)
    neg = sum(w in NEGATIVE_WORDS for w in words)
    return "positive" if pos >= neg else "negative"


def hash_unit(*parts: str) -> float:
    """A number in [0, 1) that is a function of ``parts``: the fakes' stand-in for chance."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class FakeProfile:
    """How likely a fake model is to be right, given what the request contains."""

    base: float = 1.0
    with_demos: float | None = None
    max_temperature: float | None = None
    needs_format_line: bool = False
    # at a temperature above 0 the request seed takes part in the draw
    seeded: bool = False

    def p_correct(self, n_demos: int, temperature: float) -> float:
        p = self.base
        if self.with_demos is not None and n_demos >= 2:
            p = self.with_demos
        if self.max_temperature is not None and temperature > self.max_temperature:
            p = 0.0
        return p


PROFILES: dict[str, FakeProfile] = {
    "oracle": FakeProfile(),
    "fewshot": FakeProfile(base=0.5, with_demos=1.0),
    "chatty": FakeProfile(needs_format_line=True),
    "hot": FakeProfile(max_temperature=0.3),
    "weak": FakeProfile(base=0.4),
    "noisy": FakeProfile(base=0.75, seeded=True),
    "shaky": FakeProfile(base=0.2, with_demos=0.7),  # demos help, and it still errs
}


def last_input(messages: Sequence[dict[str, Any]]) -> tuple[str, int]:
    """The text of the final question and how many demos came before it."""
    users = [m for m in messages if m.get("role") == "user"]
    assistants = [m for m in messages if m.get("role") == "assistant"]
    content = str(users[-1]["content"]) if users else ""
    if len(messages) == 1 and "Answer:" in content:
        # completion mode: one text, demos are earlier "Answer: x" blocks
        blocks = content.split("Answer:")
        return blocks[-2] if len(blocks) >= 2 else content, len(blocks) - 2
    return content, len(assistants)


def _dspy_field(text: str, name: str) -> str:
    match = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?:\n\n\[\[ ## |\Z)", text, re.DOTALL)
    return match.group(1).strip() if match else ""


_PROPOSERS = ("proposer", "proposer-bad", "proposer-copy", "proposer-refuse", "proposer-shy")
_JUDGES = ("judge", "judge-lenient", "judge-mumble")


def _judge(kind: str, messages: Sequence[dict[str, Any]]) -> str:
    """A judge's reply in DSPy's chat format: a reason and a 1-5 score."""
    if kind == "judge-mumble":
        return "The reply seems mostly fine to me, I suppose."
    last = str(messages[-1].get("content", "")) if messages else ""
    # the reply is the last field: DSPy's closing instruction follows it after a blank line
    reply, reference = _dspy_field(last, "reply").split("\n\n")[0], _dspy_field(last, "reference_reply")
    want = reference or true_label(_dspy_field(last, "app_input"))
    right = reply.strip().lower() == want.strip().lower()
    score = 5 if kind == "judge-lenient" or right else 1
    reason = f"the reply {'matches' if right else 'differs from'} the expected {want!r}"
    return f"[[ ## reason ## ]]\n{reason}\n\n[[ ## score ## ]]\n{score}\n\n[[ ## completed ## ]]"


# GEPA's instruction proposal prompt ends by asking for the instruction in a fenced block
_GEPA_ASK = "Provide the new instructions within ``` blocks"
_LABELS_LINE = re.compile(r"Answer with exactly one of: [^.\n]+\.")


def _reflect(kind: str, prompt: str) -> str:
    """A reply to GEPA's prompt: an instruction in a fenced block, naming the labels its feedback gives."""
    if kind in ("proposer-refuse", "proposer-shy"):  # shy: the feedback shows failures
        return "I'm sorry, but I can't assist with that request."
    if kind == "proposer-copy":
        inputs = re.search(r"## Inputs\n(.*?)\n", prompt)
        return f"```\n{inputs.group(1) if inputs else ''}\n```"
    labels = _LABELS_LINE.search(prompt)
    wrong = prompt.count("Wrong: the expected answer is")
    fmt = labels.group(0) if labels else "Answer with one word."
    extra = " Mention {{ reviewer }} when addressing them." if kind == "proposer-bad" else ""
    instruction = f"You label customer reviews by sentiment (from {wrong} mistakes). Read the whole review. {fmt}{extra}"
    return f"Here is a better instruction.\n```\n{instruction}\n```"


def _propose(kind: str, messages: Sequence[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content", "")) if messages else ""
    if _GEPA_ASK in last:
        return _reflect(kind, last)
    if kind == "proposer-copy":
        # what a small proposer does: echo a training input back as its "instruction"
        first = (_dspy_field(last, "task_examples").splitlines() or [""])[0]
        copied = first.removeprefix("- ").split(": ", 1)[-1].rsplit(" -> ", 1)[0]
        return f"[[ ## new_instruction ## ]]\n{copied}\n\n[[ ## completed ## ]]"
    if kind == "proposer-refuse" or (kind == "proposer-shy" and "[[ ## failures ## ]]" in last):
        # proposer-shy apologises when shown the legacy prompt's failures, and writes a
        # prompt when asked in the short framing
        return "[[ ## new_instruction ## ]]\nI'm sorry, but I can't assist with that request.\n\n[[ ## completed ## ]]"
    bad = kind == "proposer-bad"
    fmt = _dspy_field(last, "output_format") or "Answer briefly."
    variant = _dspy_field(last, "variant").split(" (")[0] or "rewrite"
    extra = " Mention {{ reviewer }} when addressing them." if bad else ""
    instruction = f"You label customer reviews by sentiment ({variant}). Read the whole review. {fmt}{extra}"
    return f"[[ ## new_instruction ## ]]\n{instruction}\n\n[[ ## completed ## ]]"


def _reply(profile_name: str, messages: Sequence[dict[str, Any]], params: dict[str, Any]) -> str:
    if profile_name in _PROPOSERS:
        return _propose(profile_name, messages)
    if profile_name in _JUDGES:
        return _judge(profile_name, messages)
    if profile_name == "echo":
        users = [m for m in messages if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else ""
    profile = PROFILES[profile_name]
    text, n_demos = last_input(messages)
    label = true_label(text)
    everything = "\n".join(str(m.get("content", "")) for m in messages)
    if profile.needs_format_line and not any(cue in everything.lower() for cue in _FORMAT_CUES):
        return "Thanks for sharing! Overall, I would say the customer feels this way about it."
    temperature = float(params.get("temperature", 0.0) or 0.0)
    sampling = f"{params.get('seed')}" if profile.seeded and temperature > 0 else ""
    draw = hash_unit(profile_name, everything, f"{temperature:.3f}", *([sampling] if sampling else []))
    if draw < profile.p_correct(n_demos, temperature):
        return label
    return "negative" if label == "positive" else "positive"


def word_tokens(text: str) -> int:
    """The tokens the fakes report for a text: one per word, at least one."""
    return max(1, len(text.split()))


def _handler_class() -> type:
    litellm = import_litellm()
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    class FakeLLM(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm custom provider answering ``fake/<profile>`` ids deterministically."""

        def _respond(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> Any:
            name, _, _ = model.removeprefix("fake/").partition("@")
            if name == "down":
                raise litellm.APIConnectionError(message="fake/down is unreachable", llm_provider="fake", model=model)
            if name not in PROFILES and name not in ("echo", *_PROPOSERS, *_JUDGES):
                raise litellm.NotFoundError(message=f"unknown fake model {model!r}", llm_provider="fake", model=model)
            text = _reply(name, messages, optional_params)
            cap = optional_params.get("max_tokens")
            words = text.split(" ")
            finish = "stop"
            if isinstance(cap, int) and len(words) > cap:
                text, finish = " ".join(words[:cap]), "length"
            prompt_tokens = sum(word_tokens(str(m.get("content", ""))) for m in messages)
            return ModelResponse(
                choices=[Choices(message=Message(content=text, role="assistant"), finish_reason=finish, index=0)],
                usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=word_tokens(text), total_tokens=0),
                model=model,
            )

        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return self._respond(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            _, _, delay = model.partition("@")
            if delay:
                await asyncio.sleep(float(delay))
            return self._respond(model, messages, kwargs.get("optional_params") or {})

    return FakeLLM


def register_fake_provider() -> None:
    """Make ``fake/...`` ids answer through litellm (idempotent)."""
    litellm = import_litellm()
    if any(entry.get("provider") == "fake" for entry in litellm.custom_provider_map):
        return
    litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "fake", "custom_handler": _handler_class()()}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()  # type: ignore[no-untyped-call]


def make_sentiment_rows(n: int, seed: int = 0, rng_words: Callable[[int], str] | None = None) -> list[dict[str, str]]:
    """``n`` labelled review rows the fake models can read (for tests and the notebook)."""
    fillers = ("the product", "this place", "the service", "our stay", "the app", "the delivery", "my order", "the staff")
    rows = []
    for i in range(n):
        u = hash_unit("row", str(seed), str(i))
        positive = u < 0.5
        words = POSITIVE_WORDS if positive else NEGATIVE_WORDS
        w1 = words[int(hash_unit("w1", str(seed), str(i)) * len(words))]
        w2 = words[int(hash_unit("w2", str(seed), str(i)) * len(words))]
        filler = fillers[int(hash_unit("f", str(seed), str(i)) * len(fillers))]
        extra = rng_words(i) if rng_words else f"visit {i}"
        rows.append({"id": f"r{i:04d}", "review": f"{filler.capitalize()} was {w1}, honestly {w2} ({extra}).", "label": "positive" if positive else "negative"})
    return rows
