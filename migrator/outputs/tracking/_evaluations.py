"""The verdict's scored configs as MLflow GenAI evaluation runs: one record, and one trace, per example.

Each config the verdict scored (each target's naive migration and the finalists, the
winner among them) becomes, on dev and on test, a run logged by ``mlflow.genai.evaluate``
under the migration's parent run. Its records are the examples: inputs (with the example
id, so that two runs' records line up), the expected answer, the reply, and the scores
migrator already has (``score``, ``latency_s``, ``cost_usd``) as the scorers' feedback;
nothing is called again. Each record's trace replays what the model was sent (the rendered
prompt, as a chat or completion span) and what it answered, so MLflow's *Evaluation runs*
page compares winner and naive migration example by example, and its *Traces* page shows
the calls.

``mlflow.genai.evaluate`` works on mlflow's process-wide state (tracking URI, active run);
``log_evaluations`` holds a lock while it sets it and puts it back after.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from migrator.outputs.tracking._mlflow import import_mlflow
from migrator.prompts import format_answer
from migrator.redaction import redact

if TYPE_CHECKING:
    from migrator.dataset import Example
    from migrator.evaluate import Config, ExampleResult
    from migrator.migration import MigrationResult
    from migrator.search import SearchSetup

__all__ = ["EVALUATION_ROLE", "Evaluation", "evaluations_of", "log_evaluations"]

# the migrator.role tag of an evaluation run (the ranked view leaves them out)
EVALUATION_ROLE = "evaluation"
# mlflow.genai.evaluate's worker threads each open a connection: a SQLite store's pool runs out past a few
_EVAL_WORKERS = "2"
_FLUENT = threading.Lock()


@dataclass(frozen=True)
class Evaluation:
    """One config's results on one split, as an evaluation run records them."""

    role: str  # winner, finalist or baseline
    config: Config
    split: str
    results: tuple[ExampleResult, ...]
    trial: int | None

    @property
    def run_name(self) -> str:
        return f"{self.role} · {self.split} · {self.config.label()}"


def evaluations_of(result: MigrationResult, dev_results: Mapping[int, Sequence[ExampleResult]]) -> list[Evaluation]:
    """The baselines and finalists of the verdict (the winner marked), each on test and, where its trial's
    per-example results are at hand (``dev_results``, by trial), on dev."""
    verdict = result.verdict
    dev_results = {**dev_results, **{o.number: o.results for o in result.search.trials if o.results}}
    scored = [*((ev, "baseline") for ev in verdict.baselines_by_target.values()), *((ev, "finalist") for ev in verdict.finalists)]
    out: list[Evaluation] = []
    seen: set[tuple[Config, str]] = set()
    for ev, role in scored:
        if verdict.winner is not None and ev.config == verdict.winner.config:
            role = "winner"
        for split, results in (("dev", dev_results.get(ev.trial, ()) if ev.trial is not None else ()), ("test", ev.results)):
            if results and (ev.config, split) not in seen:
                seen.add((ev.config, split))
                out.append(Evaluation(role, ev.config, split, tuple(results), ev.trial))
    return out


def log_evaluations(
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    result: MigrationResult,
    dataset_input: Any,
    evaluations: Sequence[Evaluation],
) -> dict[tuple[str, str], str]:
    """Log each evaluation as a nested run of ``parent_run_id``; their run ids by (config label, split)."""
    from migrator.outputs.tracking._mlflow import mlflow_client

    mlflow = import_mlflow()
    importlib.import_module("mlflow.genai")  # the evaluation harness, loaded on first use

    client = mlflow_client(tracking_uri)
    setup = _setup_of(result)
    examples = {ex.id: ex for ex in (*result.prepared.splits.dev, *result.prepared.splits.test)}
    run_ids: dict[tuple[str, str], str] = {}
    with _fluent_mlflow(mlflow, tracking_uri):
        for evaluation in evaluations:
            run = client.create_run(
                experiment_id,
                run_name=evaluation.run_name,
                tags={
                    "mlflow.parentRunId": parent_run_id,
                    "migrator.role": EVALUATION_ROLE,
                    "migrator.evaluated": evaluation.role,
                    "migrator.split": evaluation.split,
                    "migrator.config": evaluation.config.label(),
                    **({"migrator.trial": str(evaluation.trial)} if evaluation.trial is not None else {}),
                },
            )
            client.log_inputs(run.info.run_id, datasets=[_with_context(mlflow, dataset_input, evaluation.split)])
            with mlflow.start_run(run_id=run.info.run_id), _quiet_evaluate():
                mlflow.genai.evaluate(
                    data=_records(mlflow, setup, evaluation, examples),
                    scorers=_scorers(mlflow, evaluation, result.prepared.metric.name),
                )
            run_ids[(evaluation.config.label(), evaluation.split)] = run.info.run_id
    return run_ids


@contextmanager
def _fluent_mlflow(mlflow: Any, tracking_uri: str) -> Iterator[None]:
    """mlflow's process-wide tracking URI set to ``tracking_uri`` (and its evaluation workers capped) meanwhile."""
    with _FLUENT:
        previous_uri = mlflow.get_tracking_uri()
        previous_workers = os.environ.get("MLFLOW_GENAI_EVAL_MAX_WORKERS")
        os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = previous_workers or _EVAL_WORKERS
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous_uri)
            if previous_workers is None:
                os.environ.pop("MLFLOW_GENAI_EVAL_MAX_WORKERS", None)


@contextmanager
def _quiet_evaluate() -> Iterator[None]:
    """mlflow.genai.evaluate as a record of replies already scored, off the caller's way (MLflow 3.17 names):

    - no autologging: evaluate turns on tracing for every GenAI library it knows (litellm,
      openai, dspy) through import hooks, which would trace migrator's own calls in another
      thread and deadlocked with an import on the main thread; the replay calls no library.
    - no progress bar and no "Evaluation completed" lines on stdout: they would land in the
      middle of migrator's output (this runs on the tracker's thread).
    """
    from unittest import mock

    from mlflow.genai.evaluation import base, harness

    patches = (
        (base, "configure_autologging_for_evaluation", lambda **_k: contextlib.nullcontext()),
        (harness, "tqdm", None),
        (base, "display_evaluation_output", lambda *_a, **_k: None),
    )
    with contextlib.ExitStack() as stack:
        for module, name, stand_in in patches:
            if not hasattr(module, name):
                raise RuntimeError(f"mlflow {import_mlflow().__version__}: {module.__name__}.{name} is gone; migrator needs it quiet")
            stack.enter_context(mock.patch.object(module, name, stand_in))
        yield


def _with_context(mlflow: Any, dataset_input: Any, split: str) -> Any:
    entities = mlflow.entities
    return entities.DatasetInput(dataset_input.dataset, tags=[entities.InputTag("mlflow.data.context", split)])


def _records(mlflow: Any, setup: SearchSetup, evaluation: Evaluation, examples: Mapping[str, Example]) -> list[dict[str, Any]]:
    """One record per scored example: its inputs (with its id), the expected answer, the reply, and its trace."""
    records = []
    for reply in evaluation.results:
        example = examples[reply.example_id]
        inputs = {"example_id": reply.example_id, **example.inputs}
        records.append({
            "inputs": inputs,
            "outputs": reply.output,
            "expectations": {"expected_response": format_answer(example.expected)},
            "trace": _replayed_trace(mlflow, setup, evaluation.config, example, inputs, reply),
        })
    # the traces are exported in the background: once, then each is read back whole
    mlflow.flush_trace_async_logging()
    for record in records:
        record["trace"] = mlflow.get_trace(record["trace"])
    return records


def _replayed_trace(
    mlflow: Any, setup: SearchSetup, config: Config, example: Example, inputs: Mapping[str, Any], reply: ExampleResult
) -> str:
    """The id of a new trace of one call as it was made: the record's inputs, then a span of the request migrator sent (rendered
    from the config, as the search and the verdict rendered it) and the reply it got. No model is called."""
    from migrator.evaluate import build_request

    endpoint = setup.endpoints[config.model]
    with mlflow.start_span(name=config.label(), span_type="CHAIN") as root:
        root.set_inputs(dict(inputs))
        with mlflow.start_span(name=config.model, span_type="CHAT_MODEL" if endpoint.mode == "chat" else "LLM") as call:
            if config.prompt_id in setup.prompts:
                template = setup.prompts[config.prompt_id].template
                request = build_request(config, endpoint, template, example, setup.demos_for(config)(example))
                sent: dict[str, Any] = (
                    {"prompt": request.prompt}
                    if request.prompt is not None
                    else {"messages": [{"role": role, "content": content} for role, content in request.messages]}
                )
                call.set_inputs({**sent, **dict(config.params)})
            call.set_outputs(reply.output)
            call.set_attributes({"latency_s": reply.latency_s, "cost_usd": reply.cost_usd, "cached": reply.cached})
            if reply.error:
                call.set_attribute("error", redact(reply.error))
        root.set_outputs(reply.output)
    return str(root.trace_id)


def _scorers(mlflow: Any, evaluation: Evaluation, metric: str) -> list[Any]:
    """The scores migrator gave each reply, as feedback: the metric's score (with the judge's reason or the
    error), the call's latency and its cost."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    by_id = {r.example_id: r for r in evaluation.results}

    @scorer(name="score")
    def score(inputs: dict[str, Any]) -> Any:
        r = by_id[inputs["example_id"]]
        return Feedback(value=float(r.score), rationale=redact(r.judged or r.error or f"metric {metric}")[:2000])

    @scorer(name="latency_s")
    def latency(inputs: dict[str, Any]) -> float:
        return float(by_id[inputs["example_id"]].latency_s)

    @scorer(name="cost_usd")
    def cost(inputs: dict[str, Any]) -> float:
        return float(by_id[inputs["example_id"]].cost_usd)

    return [score, latency, cost]


def _setup_of(result: MigrationResult) -> SearchSetup:
    """The search's setup, with the prompts it wrote, to render each config's requests as they were sent."""
    from migrator.migration import build_setup

    api_bases = {model: e.api_base for model, e in result.endpoints.items() if e.api_base}
    return replace(build_setup(result.prepared, api_bases), prompts=result.prompts)
