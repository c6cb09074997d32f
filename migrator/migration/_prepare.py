"""Before the first call: the spec's inputs loaded and checked, and what the search needs.

Bad input fails here, with one line naming the file and field; nothing has been called yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from migrator.candidates import DemoPool, PromptCandidate, apply_transforms
from migrator.dataset import Example, Splits, load_examples, split_examples
from migrator.errors import SpecError, TemplateError
from migrator.judge import attach
from migrator.llm import Endpoint
from migrator.metrics import Metric, build_metric
from migrator.models import default_mode, import_litellm, is_local, local_name, model_info
from migrator.prompts import PromptTemplate
from migrator.retirement import missing_key
from migrator.search import SearchSetup
from migrator.spec import Message, MigrationSpec, SearchSpace, TargetSpec, read_yaml

__all__ = ["Prepared", "build_setup", "default_out_paths", "endpoint_for", "load_template", "prepare"]

Mode = Literal["chat", "completion"]


def load_template(spec: MigrationSpec) -> PromptTemplate:
    """The app's legacy prompt, from the spec or its prompt file."""
    if spec.app.messages is not None:
        return PromptTemplate(tuple((m.role, m.content) for m in spec.app.messages), source=f"{spec.source_file} (app.messages)")
    path = spec.resolve(spec.app.prompt_file or "")
    if path.suffix.lower() in (".yaml", ".yml"):
        raw = read_yaml(path, TemplateError)
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list) or not raw["messages"]:
            raise TemplateError("expected a mapping with a non-empty 'messages' list", file=str(path), where="messages")
        messages = []
        for i, item in enumerate(raw["messages"]):
            try:
                msg = Message.model_validate(item)
            except Exception:
                raise TemplateError("expected {role: system|user|assistant, content: text}", file=str(path), where=f"messages[{i}]") from None
            messages.append((msg.role, msg.content))
        return PromptTemplate(tuple(messages), source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TemplateError("not valid UTF-8", file=str(path)) from None
    return PromptTemplate((("user", text),), source=str(path))


def endpoint_for(target: TargetSpec, api_bases: Mapping[str, str], space_mode: Mode | None = None) -> Endpoint:
    """How to call a target: its mode (target, then search space, then model default), address
    and who serves it (a managed local model: its weights' sha256; a self-hosted one: its address).
    """
    mode: Mode = target.mode or space_mode or default_mode(target.model)
    api_base = target.api_base or api_bases.get(target.model)
    litellm_model = None
    served_by = api_base.rstrip("/") if api_base else None
    if is_local(target.model):
        from migrator.local import LOCAL_MODELS

        name = local_name(target.model)
        litellm_model = f"text-completion-openai/{name}" if mode == "completion" else f"openai/{name}"
        served_by = f"sha256:{LOCAL_MODELS[name].sha256}" if name in LOCAL_MODELS else None
    elif api_base and mode == "completion" and not target.model.startswith("text-completion-openai/"):
        litellm_model = "text-completion-openai/" + target.model.partition("/")[2]
    return Endpoint(target.model, mode, api_base, target.api_key_env, litellm_model, served_by)


@dataclass(frozen=True)
class Prepared:
    """Validated inputs: nothing has been called yet."""

    spec: MigrationSpec
    template: PromptTemplate
    metric: Metric
    examples: tuple[Example, ...]
    splits: Splits
    prompts: Mapping[str, PromptCandidate]
    # what is searched: the spec's space, with temperature fixed at 0 where the budget cannot
    # pay for sampled finalists' samples (``offered_space``; ``space_note`` says why)
    space: SearchSpace
    space_note: str = ""


def prepare(spec: MigrationSpec) -> Prepared:
    """Load and check everything before the first call: bad input fails here."""
    metric = build_metric(spec.metric, file=spec.source_file)
    template = load_template(spec)
    examples = load_examples(spec.resolve(spec.dataset.path), spec.dataset, spec_file=spec.source_file)
    input_fields = spec.dataset.input_fields or tuple(examples[0].inputs)
    template.check(input_fields)
    for ex in examples:
        template.render(ex.inputs)
    splits = split_examples(examples, spec.dataset.split, spec.seed, file=str(spec.resolve(spec.dataset.path)))
    candidates = apply_transforms(template, metric, spec.search_space.prompt.transforms, file=spec.source_file)
    for cand in candidates:
        cand.template.check(input_fields, examples[0].inputs)
    _check_keys(spec)
    _check_providers(spec)
    if 0 not in spec.search_space.demos.k and not splits.train:
        raise SpecError("demos need a train split (dataset.split.train > 0)", file=spec.source_file, where="search_space.demos.k")
    prepared = Prepared(spec, template, metric, examples, splits, {c.id: c for c in candidates}, spec.search_space)
    from migrator.migration._plan import offered_space  # it prices the plan, built on this module

    space, note = offered_space(prepared)
    return replace(prepared, space=space, space_note=note)


def _check_keys(spec: MigrationSpec) -> None:
    """Every target's (and the proposer's and the judge's) key variable is set: without it no call can be made.

    The legacy model is left out: it may be unreachable, and the run says so and goes on.
    """

    fields = [(f"targets.{i}.api_key_env", t.api_key_env) for i, t in enumerate(spec.targets)]
    if spec.search_space.prompt.proposer is not None:
        fields.append(("search_space.prompt.proposer.api_key_env", spec.search_space.prompt.proposer.api_key_env))
    if spec.metric.model is not None:
        fields.append(("metric.model.api_key_env", spec.metric.model.api_key_env))
    for where, name in fields:
        if name and not os.environ.get(name):
            raise SpecError(f"the environment variable {name} that should hold the key is not set", file=spec.source_file, where=where)
    judge = spec.metric.model
    lacking = missing_key(judge.model_dump()) if judge is not None and not judge.api_key_env else None
    if judge is not None and lacking:
        # a judge that cannot be called would leave every reply unscored
        raise SpecError(f"the judge {judge.model} needs {lacking}, which is not set", file=spec.source_file, where="metric.model")


def _check_providers(spec: MigrationSpec) -> None:
    """Every hosted model id names a provider litellm knows (checked last: it imports litellm)."""
    fields = [(f"targets.{i}.model", t.model, t.api_base) for i, t in enumerate(spec.targets)]
    fields.append(("app.model", spec.app.model, spec.app.api_base))
    proposer = spec.search_space.prompt.proposer
    if proposer is not None:
        fields.append(("search_space.prompt.proposer", proposer.model, proposer.api_base))
    if spec.metric.model is not None:
        fields.append(("metric.model", spec.metric.model.model, spec.metric.model.api_base))
    # packaged local models and the fake provider (migrator.testing) are no litellm provider
    hosted = [(f, m) for f, m, base in fields if not base and not is_local(m) and not m.startswith("fake/")]
    if not hosted:
        return

    known = {str(p.value if hasattr(p, "value") else p) for p in import_litellm().provider_list}
    for where, model in hosted:
        provider = model.partition("/")[0]
        if provider not in known:
            raise SpecError(
                f"unknown provider {provider!r} in {model!r}; expected a litellm provider such as openai, anthropic, "
                "gemini, bedrock, or an api_base for a self-hosted endpoint",
                file=spec.source_file,
                where=where,
            )


def build_setup(prepared: Prepared, api_bases: Mapping[str, str]) -> SearchSetup:
    """What the search needs: endpoints and accepted params per target, demo pool, prompts."""
    spec = prepared.spec
    overrides = spec.search_space.models
    endpoints = {
        t.model: endpoint_for(t, api_bases, overrides[t.model].mode if t.model in overrides else None)
        for t in spec.targets
    }
    return SearchSetup(
        spec=spec,
        dev=prepared.splits.dev,
        metric=judged(prepared.metric, api_bases),
        prompts=prepared.prompts,
        demo_pool=DemoPool(prepared.splits.train, seed=spec.seed, answer=prepared.metric.answer),
        endpoints=endpoints,
        accepts={m: model_info(m, api_base=e.api_base).accepts for m, e in endpoints.items()},
        space=prepared.space,
    )


def judged(metric: Metric, api_bases: Mapping[str, str]) -> Metric:
    """``metric`` with its LLM judge attached (the judge metric), at the address it is served at this run."""
    judge_spec = metric.spec.model if metric.spec is not None else None
    return attach(metric, endpoint_for(judge_spec, api_bases) if judge_spec is not None else None)


def default_out_paths(out_dir: Path) -> dict[str, str]:
    """Where a run in ``out_dir`` keeps its study, MLflow store and response cache by default."""
    return {
        "storage": f"sqlite:///{(out_dir / 'study.db').resolve()}",
        "tracking": f"sqlite:///{(out_dir / 'mlflow.db').resolve()}",
        "cache": str(out_dir / "cache.db"),
    }
