"""Prompt candidates and few-shot demo pools the search chooses among.

Candidates are generated once per migration: the original prompt, deterministic
transforms of it that matter across model families, and (with a proposer model) DSPy
rewrites. Demo pools pick k train examples: random, stratified by label, or the
nearest neighbours of each input (TF-IDF + NearestNeighbors).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from migrator.dataset import Example
from migrator.errors import BudgetExhausted, SpecError
from migrator.llm import Endpoint, LLMRequest, LLMResponse
from migrator.metrics import Metric
from migrator.prompts import Demo, PromptTemplate, format_answer

__all__ = [
    "TRANSFORMS",
    "DemoPool",
    "Failure",
    "PromptCandidate",
    "Rejection",
    "Rewrites",
    "apply_transforms",
    "propose_rewrites",
    "validate_rewrite",
]


@dataclass(frozen=True)
class PromptCandidate:
    """A prompt the search may pick, with where it came from."""

    id: str
    template: PromptTemplate
    origin: Mapping[str, Any] = field(default_factory=dict)


def _system_text(template: PromptTemplate) -> str:
    return "\n\n".join(c.strip() for r, c in template.messages if r == "system")


def _non_system(template: PromptTemplate) -> list[tuple[str, str]]:
    return [(r, c) for r, c in template.messages if r != "system"]


def _with_last_user(messages: list[tuple[str, str]], edit: Callable[[str], str]) -> tuple[tuple[str, str], ...]:
    last = max(i for i, (r, _) in enumerate(messages) if r == "user")
    return tuple((r, edit(c) if i == last else c) for i, (r, c) in enumerate(messages))


def _user_turn(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Instruction moved into a user turn of its own (small chat models often ignore system).

    It is the first message, not merged into the input's turn: demos repeat the input's
    turn, so a merged instruction would be sent once per demo, and a fixed first message
    keeps the prompt prefix the same across inputs (prompt caching).
    """
    system = _system_text(template)
    if not system:
        return template.messages
    return (("user", system), *_non_system(template))


def _system_turn(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Format rule restated as a short system turn, the original instruction kept."""
    system = _system_text(template)
    head = f"{system}\n\n{metric.format_hint()}" if system else metric.format_hint()
    return (("system", head), *_non_system(template))


def _format_line(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """An explicit output-format line derived from the metric, right before the answer."""
    return _with_last_user(list(template.messages), lambda c: f"{c}\n\n{metric.format_hint()}")


def _sectioned(system_fmt: str, user_fmt: str) -> Callable[[PromptTemplate, Metric], tuple[tuple[str, str], ...]]:
    """A transform that wraps the instruction, the format rule and the input in markers."""

    def transform(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
        system = _system_text(template)
        out: list[tuple[str, str]] = []
        if system:
            out.append(("system", system_fmt.format(system=system, fmt=metric.format_hint())))
        out += [(r, user_fmt.format(content=c) if r == "user" else c) for r, c in _non_system(template)]
        return tuple(out)

    return transform


_xml = _sectioned("<instructions>\n{system}\n</instructions>\n<format>{fmt}</format>", "<input>\n{content}\n</input>")
_markdown = _sectioned("## Instructions\n{system}\n\n## Output format\n{fmt}", "## Input\n{content}")


def _terse(template: PromptTemplate, metric: Metric) -> tuple[tuple[str, str], ...]:
    """Only the format rule and the input, for small models that drown in long prompts."""
    rest = _non_system(template)
    return _with_last_user(rest, lambda c: f"{c}\n{metric.format_hint()}")


TRANSFORMS: dict[str, Callable[[PromptTemplate, Metric], tuple[tuple[str, str], ...]]] = {
    "user_turn": _user_turn,
    "system_turn": _system_turn,
    "format_line": _format_line,
    "xml": _xml,
    "markdown": _markdown,
    "terse": _terse,
}


def apply_transforms(
    original: PromptTemplate, metric: Metric, names: Sequence[str], *, file: str | None = None
) -> list[PromptCandidate]:
    """The original prompt followed by each named transform of it."""
    out = [PromptCandidate("original", original, {"kind": "original"})]
    for name in names:
        if name not in TRANSFORMS:
            raise SpecError(
                f"unknown prompt transform {name!r}, expected one of {', '.join(TRANSFORMS)}",
                file=file,
                where="search_space.prompt.transforms",
            )
        messages = TRANSFORMS[name](original, metric)
        out.append(PromptCandidate(name, PromptTemplate(messages, source=f"{original.source} [{name}]"), {"kind": "transform", "transform": name}))
    return out


def _input_text(example: Example) -> str:
    return " \n".join(str(v) for v in example.inputs.values())


class DemoPool:
    """Few-shot demos from the train split, chosen by strategy and k.

    Args:
        train: the examples demos are drawn from (never dev or test).
        seed: fixes the random and stratified orders.
    """

    def __init__(self, train: Sequence[Example], seed: int = 0) -> None:
        self.train = tuple(train)
        self.seed = seed
        self._knn: Any = None
        self._vectorizer: Any = None
        # every trial asks again for the same examples' neighbours
        self._nearest: dict[tuple[str, str, int], list[Example]] = {}

    def _demo(self, ex: Example) -> Demo:
        return Demo(ex.inputs, format_answer(ex.expected))

    def _random(self, k: int) -> list[Example]:
        order = list(self.train)
        random.Random(self.seed).shuffle(order)
        return order[:k]

    def _stratified(self, k: int) -> list[Example]:
        by_label: dict[str, list[Example]] = {}
        for ex in self._random(len(self.train)):
            by_label.setdefault(format_answer(ex.expected), []).append(ex)
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


@dataclass(frozen=True)
class Failure:
    """An input the legacy prompt got wrong on a target, with what the target said."""

    inputs: Mapping[str, Any]
    expected: str
    output: str


@dataclass(frozen=True)
class Rejection:
    origin: Mapping[str, Any]
    text: str
    reason: str


@dataclass(frozen=True)
class Rewrites:
    """What one proposer run produced for one target family."""

    candidates: tuple[PromptCandidate, ...]
    rejected: tuple[Rejection, ...]


def _signature() -> Any:
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

    return ProposeInstruction


def _render_examples(examples: Sequence[Example], limit: int = 6) -> str:
    lines = []
    for ex in examples[:limit]:
        inputs = "; ".join(f"{k}: {str(v)[:300]}" for k, v in ex.inputs.items())
        lines.append(f"- {inputs} -> {format_answer(ex.expected)}")
    return "\n".join(lines) or "(none)"


def _render_failures(failures: Sequence[Failure], limit: int = 5) -> str:
    lines = []
    for f in failures[:limit]:
        inputs = "; ".join(f"{k}: {str(v)[:300]}" for k, v in f.inputs.items())
        lines.append(f"- input: {inputs}\n  target answered: {f.output.strip()[:200]!r}\n  expected: {f.expected}")
    return "\n".join(lines) or "(the target made no mistakes on the sample)"


def _copies_an_input(instruction: str, train: Sequence[Example]) -> bool:
    """True when most of the 'instruction' is one of the training inputs, verbatim."""
    text = " ".join(instruction.split()).lower()
    for ex in train:
        for value in ex.inputs.values():
            piece = " ".join(str(value).split()).lower()
            if len(piece) >= 20 and piece in text and len(piece) >= len(text) / 2:
                return True
    return False


def validate_rewrite(
    original: PromptTemplate, instruction: str, rewrite_id: str, *, metric: Metric | None = None, train: Sequence[Example] = ()
) -> PromptTemplate | str:
    """The rewritten template, or the reason it is rejected.

    Rejected: empty, a copied training input, (for a label metric) no label named,
    template syntax errors, and template variables added or dropped.
    """
    from migrator.errors import TemplateError

    text = instruction.strip()
    if len(text) < 20:
        return "empty or too short to be an instruction"
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
    complete: Callable[[LLMRequest], LLMResponse],
    n: int,
    seed: int,
    cache: Any = None,
) -> Rewrites:
    """N rewritten instructions for one target family, written by a DSPy program.

    DSPy calls the proposer through migrator's own client (``complete``), so its calls
    are cached, retried, budgeted and counted like every other call. The proposals are
    cached too, by (legacy prompt, target family, proposer, seed, n): a rerun makes no
    proposer calls.

    Args:
        proposer: how to reach the proposer model (any target endpoint will do).
        complete: sends one request through the client and returns its reply.
    """
    from migrator.llm import request_key

    payload = {"kind": "dspy-rewrites", "prompt": [list(m) for m in original.messages], "family": family, "proposer": proposer.model, "seed": seed, "n": n}
    if proposer.served_by is not None:
        payload["served_by"] = proposer.served_by
    key = request_key(payload)
    cached = cache.get(key) if cache is not None else None
    if cached is None:
        proposals = _run_proposer(original, metric, family, train, failures, proposer, complete, n, seed)
        if cache is not None and any(not p.get("error") for p in proposals):
            cache.put(key, f"proposer:{proposer.model}", {"proposals": proposals})
    else:
        proposals = list(cached["proposals"])
    accepted: list[PromptCandidate] = []
    rejected: list[Rejection] = []
    seen = {original.text()}
    slug = family.replace("/", "-").replace(".", "")
    for i, proposal in enumerate(proposals):
        rewrite_id = f"rewrite-{slug}-{i + 1}"
        origin = {"kind": "rewrite", "family": family, "proposer": proposer.model, "seed": seed, "index": i + 1}
        instruction = str(proposal.get("text") or "")
        result = (
            f"the proposer failed: {proposal['error']}"
            if proposal.get("error")
            else validate_rewrite(original, instruction, rewrite_id, metric=metric, train=train)
        )
        if isinstance(result, str):
            rejected.append(Rejection(origin, instruction, result))
        elif result.text() in seen:
            rejected.append(Rejection(origin, instruction, "duplicate of an earlier candidate"))
        else:
            seen.add(result.text())
            accepted.append(PromptCandidate(rewrite_id, result, origin))
    return Rewrites(tuple(accepted), tuple(rejected))


def _client_lm(endpoint: Endpoint, complete: Callable[[LLMRequest], LLMResponse], seed: int) -> Any:
    """A DSPy LM whose every call is one request through migrator's client.

    DSPy's own LM would call litellm with its own retries: no Retry-After, no error
    mapping, no budget, no cache. This one sends what DSPy asks for as an
    ``LLMRequest``; the params the model takes pass (DSPy's ``rollout_id`` becomes the
    request seed), and what the client raises (a spent budget included) reaches the caller.
    """
    import os

    os.environ.setdefault("DSPY_CACHEDIR", os.path.join(os.path.expanduser("~"), ".cache", "migrator", "dspy"))
    import dspy

    from migrator.evaluate import seeded
    from migrator.models import model_info

    accepts = model_info(endpoint.model, api_base=endpoint.api_base).accepts

    class ClientLM(dspy.BaseLM):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(model=endpoint.model, temperature=1.0, max_tokens=600, cache=False, num_retries=0)

        def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
            wanted = {**self.kwargs, **kwargs}
            rollout = wanted.get("rollout_id")
            chosen: dict[str, Any] = {k: wanted[k] for k in ("temperature", "max_tokens") if k in accepts and wanted.get(k) is not None}
            params = seeded(chosen, accepts, seed, sample=int(rollout or 0))
            turns = tuple((str(m["role"]), str(m["content"])) for m in messages or [{"role": "user", "content": prompt or ""}])
            if endpoint.mode == "completion":
                request = LLMRequest(endpoint, prompt="\n\n".join(c for _, c in turns), params=tuple(sorted(params.items())))
            else:
                request = LLMRequest(endpoint, messages=turns, params=tuple(sorted(params.items())))
            response = complete(request)
            usage = {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens}
            message = SimpleNamespace(role="assistant", content=response.text)
            choice = SimpleNamespace(message=message, finish_reason=response.finish_reason)
            return SimpleNamespace(choices=[choice], usage=usage, model=endpoint.model, cache_hit=response.cached)

    return ClientLM()


def _run_proposer(
    original: PromptTemplate,
    metric: Metric,
    family: str,
    train: Sequence[Example],
    failures: Sequence[Failure],
    proposer: Endpoint,
    complete: Callable[[LLMRequest], LLMResponse],
    n: int,
    seed: int,
) -> list[dict[str, str]]:
    import dspy

    lm = _client_lm(proposer, complete, seed)
    program = dspy.Predict(_signature())
    instruction = "\n\n".join(c for r, c in original.messages if r == "system") or original.text()
    inputs = {
        "original_instruction": instruction,
        "task_examples": _render_examples(list(train)),
        "output_format": metric.format_hint(),
        "target_model": family,
        "failures": _render_failures(failures),
    }
    out: list[dict[str, str]] = []
    with dspy.context(lm=lm):
        for i in range(n):
            variant = f"rewrite {i + 1} of {n} (seed {seed}); make it different from the others"
            try:
                prediction = program(**inputs, variant=variant, config={"rollout_id": i})
                out.append({"text": str(prediction.new_instruction)})
            except Exception as exc:  # a proposer that cannot follow DSPy's format yields no rewrite
                spent = _budget_in(exc)
                if spent is not None:
                    raise spent from None
                out.append({"text": "", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
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
