"""One migration, end to end: validate inputs, search on dev, verdict on test.

Returns data; the CLI writes it (export/report) and shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from migrator.candidates import (
    DemoPool,
    Failure,
    PromptCandidate,
    Rejection,
    Rewrites,
    apply_transforms,
    propose_rewrites,
)
from migrator.dataset import Example, Splits, load_examples, split_examples
from migrator.errors import BudgetExhausted, LLMError, SpecError, TemplateError
from migrator.evaluate import Config, ExampleResult, Summary, build_request, evaluate, seeded, summarize
from migrator.llm import Endpoint, LLMClient, MemoryLedger, Spent, StoredLedger
from migrator.metrics import Metric, build_metric
from migrator.models import default_mode, family, is_local, local_name, model_info
from migrator.prompts import PromptTemplate, format_answer
from migrator.search import SearchResult, SearchSetup, TrialOutcome, best_trials, pareto_front, run_search
from migrator.spec import Message, MigrationSpec, TargetSpec, read_yaml
from migrator.stats import PairedTest, bootstrap_ci, paired_test

__all__ = [
    "Evaluated",
    "MigrationResult",
    "Prepared",
    "build_setup",
    "endpoint_for",
    "load_template",
    "prepare",
    "run_migration",
]

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
    return Prepared(spec, template, metric, examples, splits, {c.id: c for c in candidates})


def _check_keys(spec: MigrationSpec) -> None:
    """Every target's (and the proposer's) key variable is set: without it no call can be made.

    The legacy model is left out: it may be unreachable, and the run says so and goes on.
    """
    import os

    fields = [(f"targets.{i}.api_key_env", t.api_key_env) for i, t in enumerate(spec.targets)]
    if spec.search_space.prompt.proposer is not None:
        fields.append(("search_space.prompt.proposer.api_key_env", spec.search_space.prompt.proposer.api_key_env))
    for where, name in fields:
        if name and not os.environ.get(name):
            raise SpecError(f"the environment variable {name} that should hold the key is not set", file=spec.source_file, where=where)


def _check_providers(spec: MigrationSpec) -> None:
    """Every hosted model id names a provider litellm knows (checked last: it imports litellm)."""
    fields = [(f"targets.{i}.model", t.model, t.api_base) for i, t in enumerate(spec.targets)]
    fields.append(("app.model", spec.app.model, spec.app.api_base))
    proposer = spec.search_space.prompt.proposer
    if proposer is not None:
        fields.append(("search_space.prompt.proposer", proposer.model, proposer.api_base))
    hosted = [(f, m) for f, m, base in fields if not base and not m.startswith(("local/", "fake/"))]
    if not hosted:
        return
    from migrator.llm import import_litellm

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


@dataclass(frozen=True)
class Evaluated:
    """A config scored on the test split."""

    role: str
    config: Config
    dev: Summary | None
    test: Summary
    test_ci: tuple[float, float]
    results: tuple[ExampleResult, ...]
    trial: int | None = None


@dataclass(frozen=True)
class MigrationResult:
    spec: MigrationSpec
    prepared: Prepared
    search: SearchResult
    winner: Evaluated | None
    baseline: Evaluated | None
    legacy: Evaluated | None
    legacy_note: str
    stopped_by: str | None
    finalists: tuple[Evaluated, ...]
    baselines_by_target: Mapping[str, Evaluated]
    paired: PairedTest | None
    paired_same_target: PairedTest | None
    pareto: tuple[TrialOutcome, ...]
    prompts: Mapping[str, PromptCandidate]
    rejected: tuple[Rejection, ...]
    stats: Mapping[str, Any]
    wall_s: float
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    # what the study has spent over every run of it (this one and those it resumed)
    spent: Spent = field(default_factory=Spent)


def _evaluate_test(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, config: Config, endpoint: Endpoint, test: Sequence[Example]
) -> list[ExampleResult]:
    template = setup.prompts[config.prompt_id].template
    return runner.run(evaluate(client, config, endpoint, template, test, setup.metric, setup.demos_for(config)))


def _scored(role: str, config: Config, dev: Summary | None, results: list[ExampleResult], seed: int, trial: int | None) -> Evaluated:
    return Evaluated(role, config, dev, summarize(results), bootstrap_ci([r.score for r in results], seed=seed), tuple(results), trial)


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
        metric=prepared.metric,
        prompts=prepared.prompts,
        demo_pool=DemoPool(prepared.splits.train, seed=spec.seed),
        endpoints=endpoints,
        accepts={m: model_info(m, api_base=e.api_base).accepts for m, e in endpoints.items()},
    )


def run_migration(
    prepared: Prepared,
    client: LLMClient,
    *,
    storage: str,
    study_name: str | None = None,
    api_bases: Mapping[str, str] | None = None,
    callbacks: Sequence[Callable[[TrialOutcome], None]] = (),
    on_progress: Callable[[str, Mapping[str, Any]], None] = lambda *_: None,
    on_candidates: Callable[[list[PromptCandidate], list[Rejection]], None] = lambda *_: None,
) -> MigrationResult:
    """Search on dev, then score baseline, legacy and the best configs on test.

    What the run spends is counted in the study's ledger (see :mod:`migrator.llm._ledger`), so a
    resumed run continues the count of the runs before it, whoever calls this.
    """
    study_name = study_name or f"{prepared.spec.name}-{prepared.spec.spec_hash()}"
    with _ledger_of_the_study(client, storage, study_name):
        return _migrate(prepared, client, storage, study_name, api_bases or {}, callbacks, on_progress, on_candidates)


@contextmanager
def _ledger_of_the_study(client: LLMClient, storage: str, study_name: str) -> Iterator[None]:
    """The client counts in the study's stored ledger while the migration runs (unless it has one)."""
    if storage == "memory" or not isinstance(client.ledger, MemoryLedger):
        yield
        return
    ledger = StoredLedger(storage, study_name)
    previous, client.ledger = client.ledger, ledger
    try:
        yield
    finally:
        client.ledger = previous
        ledger.close()


def _migrate(
    prepared: Prepared,
    client: LLMClient,
    storage: str,
    study_name: str,
    api_bases: Mapping[str, str],
    callbacks: Sequence[Callable[[TrialOutcome], None]],
    on_progress: Callable[[str, Mapping[str, Any]], None],
    on_candidates: Callable[[list[PromptCandidate], list[Rejection]], None],
) -> MigrationResult:
    started = time.monotonic()
    spec = prepared.spec
    base_setup = build_setup(prepared, api_bases)
    endpoints = base_setup.endpoints
    test = prepared.splits.test
    finalists = spec.budget.finalists
    # baselines and finalists on the test split, plus one probe of the legacy model
    reserve = len(test) * (len(endpoints) + finalists) + 1
    with asyncio.Runner() as runner:
        rewrites, rejected = _rewrites(runner, client, base_setup, prepared, api_bases, on_progress)
        prompts = {**prepared.prompts, **{c.id: c for c in rewrites}}
        setup = replace(base_setup, prompts=prompts)
        on_candidates(list(prompts.values()), list(rejected))
        search = run_search(
            setup,
            client,
            runner,
            storage=storage,
            study_name=study_name,
            reserve_calls=reserve,
            callbacks=callbacks,
            on_progress=on_progress,
        )
        on_progress("final", {"what": "scoring baseline and finalists on the test split"})
        baselines: dict[str, Evaluated] = {}
        evaluated: list[Evaluated] = []
        stopped_by = search.stopped_by
        try:
            for outcome in search.trials:
                # A warm start pruned on dev still gets its test verdict (the test calls
                # are reserved for it), so every target shows its naive migration.
                scored = outcome.state == "complete" or (outcome.state == "pruned" and outcome.summary.n > 0)
                if outcome.warm_start and scored and outcome.config.model not in baselines:
                    config = outcome.config
                    results = _evaluate_test(runner, client, setup, config, endpoints[config.model], test)
                    baselines[config.model] = _scored("baseline", config, outcome.summary, results, spec.seed, outcome.number)
            for outcome in best_trials(search, finalists):
                results = _evaluate_test(runner, client, setup, outcome.config, endpoints[outcome.config.model], test)
                evaluated.append(_scored("finalist", outcome.config, outcome.summary, results, spec.seed, outcome.number))
        except BudgetExhausted as exc:
            # Configs scored so far keep their verdict; the rest are reported as not scored.
            stopped_by = exc.which
            on_progress("final", {"what": f"the {exc.which} budget ran out during the test verdict"})
        baseline: Evaluated | None = None
        # The naive migration: the target that does best on dev with the prompt unchanged,
        # among those scored on all of dev (a pruned one's partial score is not comparable).
        full = [e for e in baselines.values() if e.dev is not None and e.dev.n == len(setup.dev)] or list(baselines.values())
        if full:
            baseline = max(full, key=lambda e: (e.dev.score if e.dev else 0.0, -e.test.cost_usd_per_example))
        winner = evaluated[0] if evaluated else None
        legacy, legacy_note = _evaluate_legacy(runner, client, setup, test)
    paired = None
    if winner is not None and baseline is not None:
        paired = paired_test([r.score for r in winner.results], [r.score for r in baseline.results], seed=spec.seed)
    paired_same = None
    same = baselines.get(winner.config.model) if winner is not None else None
    if winner is not None and same is not None:
        paired_same = paired_test([r.score for r in winner.results], [r.score for r in same.results], seed=spec.seed)
    return MigrationResult(
        spec=spec,
        prepared=prepared,
        search=search,
        winner=winner,
        baseline=baseline,
        legacy=legacy,
        legacy_note=legacy_note,
        stopped_by=stopped_by,
        finalists=tuple(evaluated),
        baselines_by_target=baselines,
        paired=paired,
        paired_same_target=paired_same,
        pareto=tuple(pareto_front(search)),
        prompts=prompts,
        rejected=tuple(rejected),
        stats=client.stats.as_dict(),
        wall_s=time.monotonic() - started,
        endpoints=endpoints,
        spent=client.ledger.spent(),
    )


_FAILURE_SAMPLE = 12


def _rewrites(
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
    return accepted, rejected


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
        Failure(by_id[r.example_id].inputs, format_answer(by_id[r.example_id].expected), r.output or f"(error: {r.error})")
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


def _evaluate_legacy(
    runner: asyncio.Runner, client: LLMClient, setup: SearchSetup, test: Sequence[Example]
) -> tuple[Evaluated | None, str]:
    """The app as it runs today, if its model still answers; reported once otherwise."""
    spec = setup.spec
    app = spec.app
    if app.model in setup.endpoints:
        return None, "the legacy model is also a target; see its baseline"
    endpoint = endpoint_for(app, {})
    params = tuple(sorted(seeded(app.params, model_info(app.model, api_base=endpoint.api_base).accepts, spec.seed).items()))
    config = Config(app.model, "original", 0, "none", params, endpoint.mode)
    template = setup.prompts["original"].template
    try:
        probe = runner.run(evaluate(client, config, endpoint, template, test[:1], setup.metric))
        if probe[0].error is not None:
            reason = probe[0].error.removeprefix(f"{app.model}: ").splitlines()[0][:240]
            return None, f"legacy model {app.model} is unreachable, so the app as it runs today has no live score ({reason})"
        results = probe + runner.run(evaluate(client, config, endpoint, template, test[1:], setup.metric))
    except BudgetExhausted as exc:  # the legacy score is for information: the run still reports
        return None, f"legacy model {app.model} was not scored: {exc}"
    except LLMError as exc:  # pragma: no cover - evaluate scores per-example failures
        return None, f"legacy model {app.model} failed: {exc}"
    return _scored("legacy", config, None, results, spec.seed, None), ""


def default_out_paths(out_dir: Path) -> dict[str, str]:
    return {
        "storage": f"sqlite:///{(out_dir / 'study.db').resolve()}",
        "tracking": f"sqlite:///{(out_dir / 'mlflow.db').resolve()}",
        "cache": str(out_dir / "cache.db"),
    }


__all__ += ["default_out_paths"]


@dataclass(frozen=True)
class Lockfile:
    """A winner.yaml, loaded back: enough to re-score it on its dataset."""

    path: Path
    data: Mapping[str, Any]
    target: TargetSpec
    template: PromptTemplate
    metric: Metric
    splits: Splits
    config: Config
    demo_pool: DemoPool
    fixed_demos: tuple[Any, ...]
    # the spec's seed: it drew the split, and the run bootstrapped the test CI with it
    seed: int = 0

    def demos_for(self, example: Example) -> Sequence[Any]:
        """The demos the winner shows for this input: its kNN picks, or its fixed set."""
        if self.config.demos and self.config.demo_strategy == "knn":
            return self.demo_pool.demos("knn", self.config.demos, example)
        return self.fixed_demos

    def prompt_for(self, example: Example) -> list[dict[str, str]] | str:
        """Exactly what the winner sends for this input: chat messages, or one completion prompt."""
        request = build_request(self.config, endpoint_for(self.target, {}), self.template, example, self.demos_for(example))
        return request.prompt if request.prompt is not None else [{"role": r, "content": c} for r, c in request.messages]


def load_lockfile(path: Path, dataset: Path | None = None) -> Lockfile:
    """Read winner.yaml and rebuild its template, demos, metric and dataset split."""
    from migrator.prompts import Demo
    from migrator.spec import DatasetSpec, MetricSpec, _validate

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError("expected a winner lockfile (a mapping)", file=str(path))
    try:
        endpoint = raw.get("endpoint") or {}
        target = TargetSpec(model=raw["model"], **{k: v for k, v in endpoint.items() if k in ("mode", "api_base", "api_key_env")})
        template = PromptTemplate(tuple((m["role"], m["content"]) for m in raw["messages"]), source=str(path))
        # _validate's errors name the field (metric.name), not the pydantic model
        metric = build_metric(_validate(MetricSpec, raw["metric"], path, "metric."), file=str(path))
        ds = raw["dataset"]
        data_path = dataset or (path.parent / ds["path"])
        fields = {
            "path": str(data_path),
            "expected_field": ds["expected_field"],
            "input_fields": tuple(ds["input_fields"]) if ds.get("input_fields") else None,
            "id_field": ds.get("id_field"),
            "split": ds["split"],
        }
        dataset_spec = _validate(DatasetSpec, fields, path, "dataset.")
        demos = raw.get("demos") or {}
        params = tuple(sorted((raw.get("params") or {}).items()))
        seed = int(ds.get("seed", 0))
    except (KeyError, TypeError) as exc:
        raise SpecError(f"missing or malformed field {exc}", file=str(path)) from None
    except Exception as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"malformed lockfile: {str(exc).splitlines()[0]}", file=str(path)) from None
    examples = load_examples(Path(dataset_spec.path), dataset_spec)
    template.check(dataset_spec.input_fields or tuple(examples[0].inputs), examples[0].inputs)
    splits = split_examples(examples, dataset_spec.split, seed, file=dataset_spec.path)
    pool_examples = tuple(
        Example(f"pool{i}", p["inputs"], p["expected"]) for i, p in enumerate(demos.get("pool") or [])
    )
    fixed = tuple(Demo(d["inputs"], str(d["answer"])) for d in demos.get("fixed") or [])
    config = Config(
        target.model,
        str(raw.get("prompt_id", "original")),
        int(demos.get("k", 0)),
        str(demos.get("strategy", "none")),
        params,
        target.mode or "chat",
    )
    return Lockfile(path, raw, target, template, metric, splits, config, DemoPool(pool_examples, seed=seed), fixed, seed)


def evaluate_lockfile(
    lock: Lockfile, client: LLMClient, split: str, api_bases: Mapping[str, str] | None = None
) -> Evaluated:
    """Score a winner lockfile on one split of its dataset."""
    endpoint = endpoint_for(lock.target, api_bases or {})
    examples = lock.splits.get(split)
    config = lock.config
    with asyncio.Runner() as runner:
        results = runner.run(evaluate(client, config, endpoint, lock.template, examples, lock.metric, lock.demos_for))
    return _scored(split, config, None, results, lock.seed, None)


__all__ += ["Lockfile", "evaluate_lockfile", "load_lockfile"]
