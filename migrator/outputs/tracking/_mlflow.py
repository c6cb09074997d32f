"""What a migration becomes in MLflow: a parent run per migration, a nested run per trial.

``import_mlflow`` is the one place migrator loads mlflow. ``MlflowRecorder`` makes the
MLflow calls of one migration (the tracker runs them on its worker thread); the functions
below it say what a spec, a trial and a result become as MLflow tags, params, metrics
and artifacts. ``MlflowClient`` is used with explicit run ids rather than mlflow's global
active run, so nothing leaks between migrations in one process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from migrator.candidates import PromptCandidate, Rejection
from migrator.redaction import redact
from migrator.search import TrialOutcome

if TYPE_CHECKING:
    from migrator.dataset import Example
    from migrator.evaluate import Config, Summary
    from migrator.migration import MigrationResult, Prepared
    from migrator.spec import MigrationSpec

__all__ = [
    "MLFLOW_ENVIRONMENT",
    "RANKED_VIEW",
    "MlflowRecorder",
    "import_mlflow",
    "landing_page",
    "landing_pages",
    "mlflow_client",
]

# Settings mlflow reads from the environment, as migrator runs it (in process, and the
# dashboard `migrator ui` starts) unless the user set them.
MLFLOW_ENVIRONMENT: Mapping[str, str] = MappingProxyType({
    # MLflow 3 sends usage telemetry to its servers by default; migrator runs offline and
    # never phones home. Set MLFLOW_DISABLE_TELEMETRY=false yourself to allow it.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # The tracker's thread writes while the caller prints: mlflow's INFO lines (a new
    # store's tables created, a remote run's link) and its download bars would land in
    # the middle of the caller's output. Its warnings and errors still show.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
})

_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}

# The experiment's runs ranked by dev score with the columns a reviewer compares, kept as a
# view MLflow's runs page opens by key (an experiment tag ``mlflow.sharedViewState.<key>``,
# what its "Share" button writes); ``landing_page`` is the page that opens it.
RANKED_VIEW = "migrator-ranked"
_RANKED_COLUMNS = ("dev_score", "test_score", "cost_usd_per_1k_examples", "latency_p50_s", "calls")
_RANKED_STATE = MappingProxyType({
    # the trials and their parent; the evaluation runs have a page of their own
    "searchFilter": "tags.`migrator.role` != 'evaluation'",
    "orderByKey": "metrics.`dev_score`",
    "orderByAsc": False,
    "startTime": "ALL",
    "lifecycleFilter": "Active",
    "modelVersionFilter": "All Runs",
    "datasetsFilter": [],
    "selectedColumns": [*(f"metrics.`{m}`" for m in _RANKED_COLUMNS), "tags.`state`", "attributes.`Dataset`"],
    # without it MLflow orders the metric columns by name
    "columnOrder": [*(f"metrics.`{m}`" for m in _RANKED_COLUMNS), "tags.`state`", "attributes.`Dataset`"],
})
# a nested trial run's metrics: MLflow's name for each field of the trial's dev Summary
_TRIAL_METRICS = {
    "dev_score": "score",
    "cost_usd_per_example": "cost_usd_per_example",
    "cost_usd": "cost_usd",
    "latency_p50_s": "latency_p50_s",
    "calls": "calls",
    "n_evaluated": "n",
    "failed_examples": "failed",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
}
_BACKFILLED_NOTE = (
    "Logged when the migration resumed: the run that finished this trial was killed before it had logged it whole, "
    "and that run's per-example predictions (predictions.json) were not kept."
)


def import_mlflow() -> Any:
    """mlflow, loaded with migrator's defaults for the settings it reads from the environment.

    The defaults are set here, before mlflow first loads, because mlflow reads its
    logging level when it loads; importing :mod:`migrator` changes nothing.
    """
    for name, value in MLFLOW_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import mlflow

    return mlflow


def landing_page(experiment_id: str) -> str:
    """The MLflow UI's page (after its base URL) that answers what won and why: the runs, ranked.

    ``workflowType`` decides the landing page (the experiment's kind does not: MLflow 3.17
    opens its GenAI overview either way), so it is named.
    """
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={RANKED_VIEW}&workflowType=machine_learning"


def compare_page(experiment_id: str, winner_run: str, baseline_run: str) -> str:
    """The MLflow UI's page comparing two evaluation runs (winner and naive migration on test) example by example."""
    return f"#/experiments/{experiment_id}/evaluation-runs?selectedRunUuid={winner_run}&compareToRunUuid={baseline_run}"


def landing_pages(tracking_uri: str) -> list[tuple[str, str, list[str]]]:
    """(experiment name, ``landing_page``, each migration's ``compare_page``, newest first) for each experiment a
    migration recorded at ``tracking_uri``."""
    client = mlflow_client(tracking_uri)
    key = f"mlflow.sharedViewState.{RANKED_VIEW}"
    pages = []
    for experiment in client.search_experiments():
        if key not in experiment.tags:
            continue
        parents = client.search_runs(
            [experiment.experiment_id], filter_string="tags.`migrator.role` = 'parent'", order_by=["attributes.start_time DESC"]
        )
        compares = [p.data.tags["migrator.compare_page"] for p in parents if "migrator.compare_page" in p.data.tags]
        pages.append((experiment.name, landing_page(experiment.experiment_id), compares))
    return pages


def mlflow_client(tracking_uri: str, registry_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (and ``registry_uri``, for the prompt registry)."""
    return import_mlflow().tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


class MlflowRecorder:
    """The MLflow calls of one migration: its parent run, trials, candidates and results.

    ``open`` comes first; it creates the experiment and the parent run, or reopens the
    parent run of an earlier run of the same study. Not thread-safe: one thread calls it.

    Args:
        tracking_uri: e.g. ``sqlite:///runs/x/mlflow.db`` or ``http://mlflow:5000``.
        experiment: experiment name (default: the migration's name).
        artifact_dir: where a new experiment keeps artifacts (a local store needs one).
    """

    def __init__(
        self, tracking_uri: str, experiment: str | None, artifact_dir: Path | None, tags: Mapping[str, str] | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.tags = dict(tags or {})
        self.experiment = experiment
        self.artifact_dir = artifact_dir
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._client: Any = None
        self._prepared: Prepared | None = None
        self._dataset: Any = None
        # each trial's per-example dev results as the search gave them (the verdict's dev evaluations)
        self._dev_results: dict[int, tuple[Any, ...]] = {}

    def open(self, prepared: Prepared, study_name: str) -> None:
        """Open the study's parent run: reopened if an earlier run made it, else created."""
        self._client = mlflow_client(self.tracking_uri)
        self._prepared = prepared
        self._dataset = dataset_entity(prepared)
        _import_what_tracing_imports()
        self.experiment_id = self._experiment_id(self.experiment or prepared.spec.name)
        self._client.set_experiment_tag(self.experiment_id, f"mlflow.sharedViewState.{RANKED_VIEW}", json.dumps(dict(_RANKED_STATE)))
        found = self._client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`migrator.study` = '{study_name}' and tags.`migrator.role` = 'parent'",
            max_results=1,
        )
        if found:
            self.parent_run_id = found[0].info.run_id
            self._client.update_run(self.parent_run_id, status="RUNNING")
        else:
            self._create_parent_run(prepared, study_name)

    def join(self, prepared: Prepared, study_name: str, parent_run_id: str) -> None:
        """Log trials under another process's parent run (a worker's), leaving that run as it is."""
        self._client = mlflow_client(self.tracking_uri)
        self._prepared = prepared
        self._dataset = dataset_entity(prepared)
        parent = self._client.get_run(parent_run_id)
        if parent.data.tags.get("migrator.study") != study_name:
            raise ValueError(f"MLflow run {parent_run_id} is not the parent run of study {study_name!r}")
        self.experiment_id, self.parent_run_id = parent.info.experiment_id, parent_run_id

    def write_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None:
        """Every prompt candidate's text and origin, and the rejected rewrites, as artifacts."""
        for cand in candidates:
            origin = json.dumps(dict(cand.origin), ensure_ascii=False)
            self._client.log_text(
                self.parent_run_id, f"# origin: {origin}\n\n{cand.template.text()}", f"prompts/candidates/{cand.id}.txt"
            )
        if rejected:
            lines = [f"## {json.dumps(dict(r.origin))}\nreason: {r.reason}\n\n{r.text}\n" for r in rejected]
            self._client.log_text(self.parent_run_id, "\n".join(lines), "prompts/rejected.txt")

    def write_trial(self, outcome: TrialOutcome, *, backfilled: bool = False) -> None:
        """One trial as a nested run, terminated last (a run still RUNNING was cut short)."""
        assert self._prepared is not None and self.parent_run_id is not None, "the parent run is opened first"
        tags = trial_tags(outcome, self._prepared.spec.app.model, self.parent_run_id, backfilled=backfilled)
        run = self._client.create_run(
            self.experiment_id, run_name=f"#{outcome.number} {outcome.config.label()}", tags=tags
        )
        run_id = run.info.run_id
        self._client.log_batch(
            run_id,
            metrics=_metrics(trial_metrics(outcome.summary)),
            params=_params(trial_params(outcome.config)),
            tags=_tags({k: v for k, v in tags.items() if k != "mlflow.parentRunId"}),
        )
        self._client.log_inputs(run_id, datasets=[dataset_input(self._dataset, "dev")])
        if outcome.prompt_text:
            self._client.log_text(run_id, outcome.prompt_text, "prompt.txt")
        if outcome.results:
            self._dev_results[outcome.number] = tuple(outcome.results)
            rows = prediction_rows(outcome, self._prepared.splits.dev)
            self._client.log_table(run_id, data=_columns(rows), artifact_file="predictions.json")
        self._client.set_terminated(run_id, status=_STATUS.get(outcome.state, "FINISHED"))

    def reconcile_trials(self, result: MigrationResult) -> None:
        """Leave exactly one whole nested run per finished trial of the study.

        The tracker only saw this run's trials: the ones a killed run had queued are
        missing, and one it was writing is still RUNNING (``set_terminated`` is the last
        call of ``write_trial``). A run cut short, or a second run of one trial, is
        deleted (MLflow keeps it, as deleted); a trial left with no whole run is written
        from the study's record, its prompt rendered again, but without the per-example
        predictions, which only the killed run had.
        """
        by_trial: dict[str, list[Any]] = {}
        for run in self._trial_runs():
            by_trial.setdefault(run.data.tags["migrator.trial"], []).append(run)
        render: Callable[[Config], str] | None = None
        for outcome in result.search.trials:
            runs = by_trial.get(str(outcome.number), [])
            keep = _run_to_keep(runs)
            for run in runs:
                if run is not keep:
                    self._client.delete_run(run.info.run_id)
            if keep is None:
                render = render or _prompt_renderer(result)
                self.write_trial(replace(outcome, prompt_text=render(outcome.config)), backfilled=True)

    def write_result(self, result: MigrationResult, files: Mapping[str, Path]) -> None:
        """The final test results, the candidates table and the output files; then the parent run is FINISHED."""
        run_id = self.parent_run_id
        self._client.log_batch(run_id, metrics=_metrics(result_metrics(result)))
        self._log_test_scores(result)
        prompt_uri = self._register_winner(result, files)
        compare = self._client.get_run(run_id).data.tags.get("migrator.compare_page")
        if result.verdict.winner is not None:
            self._client.set_tag(run_id, "winner", result.verdict.winner.config.label())
        self._client.set_tag(
            run_id, "mlflow.note.content", verdict_note(result, self.experiment_id or "", run_id or "", prompt_uri, compare)
        )
        from migrator.migration import judge_report

        judge = judge_report(result.prepared, result.verdict)
        if judge is not None:
            self._client.log_text(run_id, judge["prompt"], "judge/prompt.txt")
        table = candidate_table(result)
        if table:
            self._client.log_table(run_id, data=_columns(table), artifact_file="candidates.json")
        for path in files.values():
            if path.is_file():
                self._client.log_artifact(run_id, str(path))
        self._client.set_terminated(run_id, status="FINISHED")

    def _log_test_scores(self, result: MigrationResult) -> None:
        """Each trial the verdict scored on test (the baselines and finalists) gets its test score beside its dev one."""
        scored = [*result.verdict.baselines_by_target.values(), *result.verdict.finalists]
        by_trial = {ev.trial: ev for ev in scored if ev.trial is not None}
        if not by_trial:
            return
        for run in self._trial_runs():
            ev = by_trial.get(int(run.data.tags["migrator.trial"]))
            if ev is not None:
                metrics = {"test_score": ev.test.score, "test_ci_low": ev.test_ci[0], "test_ci_high": ev.test_ci[1]}
                self._client.log_batch(run.info.run_id, metrics=_metrics(metrics))

    def write_evaluations(self, result: MigrationResult) -> None:
        """The verdict's configs on dev and test as GenAI evaluation runs (``_evaluations``), once per verdict:
        a resumed run whose verdict is unchanged keeps them; one whose verdict changed replaces them, traces too."""
        from migrator.outputs.tracking._evaluations import EVALUATION_ROLE, evaluations_of, log_evaluations

        wanted = evaluations_of(result, self._dev_results)
        logged = self._child_runs(EVALUATION_ROLE)
        if sorted(r.info.run_name for r in logged) == sorted(e.run_name for e in wanted):
            return
        for run in logged:
            traces = self._client.search_traces(locations=[self.experiment_id], run_id=run.info.run_id, max_results=1000)
            if traces:
                self._client.delete_traces(self.experiment_id, trace_ids=[t.info.trace_id for t in traces])
            self._client.delete_run(run.info.run_id)
        assert self.experiment_id is not None and self.parent_run_id is not None
        run_ids = log_evaluations(
            self.tracking_uri, self.experiment_id, self.parent_run_id, result, dataset_input(self._dataset, "test"), wanted
        )
        verdict = result.verdict
        if verdict.winner is not None and verdict.baseline is not None:
            winner = run_ids.get((verdict.winner.config.label(), "test"))
            baseline = run_ids.get((verdict.baseline.config.label(), "test"))
            if winner and baseline:
                self._client.set_tag(self.parent_run_id, "migrator.compare_page", compare_page(self.experiment_id, winner, baseline))

    def _register_winner(self, result: MigrationResult, files: Mapping[str, Path]) -> str | None:
        """The winner's prompt as a new version in MLflow's prompt registry, with the spec's alias, linked from the
        parent run; its ``prompts:/`` URI. Once per migration: a resumed run finds the version it registered."""
        lock_path = files.get("winner")
        if lock_path is None or not lock_path.is_file():
            return None
        parent = self._client.get_run(self.parent_run_id)
        registered = parent.data.tags.get("migrator.prompt")
        if registered:
            return str(registered)
        from migrator.outputs._lockfile import read_lockfile
        from migrator.outputs.tracking._registry import register_prompt

        tracking = result.spec.tracking
        name, version = register_prompt(self.tracking_uri, read_lockfile(lock_path), name=tracking.prompt, alias=tracking.prompt_alias)
        uri = f"prompts:/{name}/{version}"
        # MlflowClient.link_prompt_version_to_run looks the run up in mlflow's global tracking
        # store, not this client's (MLflow 3.17): its tag is written here, in its format
        from mlflow.tracing.utils.prompt import update_linked_prompts_tag

        registry = mlflow_client(self.tracking_uri, registry_uri=self.tracking_uri)
        linked = update_linked_prompts_tag(parent.data.tags.get("mlflow.linkedPrompts"), [registry.get_prompt_version(name, version)])
        self._client.set_tag(self.parent_run_id, "mlflow.linkedPrompts", linked)
        self._client.set_tag(self.parent_run_id, "migrator.prompt", uri)
        self._client.set_tag(self.parent_run_id, "migrator.prompt_alias", f"prompts:/{name}@{tracking.prompt_alias}")
        return uri

    def _experiment_id(self, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_dir.resolve().as_uri() if self.artifact_dir else None
        return str(self._client.create_experiment(name, artifact_location=location))

    def _create_parent_run(self, prepared: Prepared, study_name: str) -> None:
        spec = prepared.spec
        run = self._client.create_run(self.experiment_id, run_name=spec.name, tags={**parent_tags(spec, study_name), **self.tags})
        self.parent_run_id = run.info.run_id
        self._client.log_batch(self.parent_run_id, params=_params(parent_params(prepared)))
        self._client.log_inputs(self.parent_run_id, datasets=[dataset_input(self._dataset, "train, dev, test")])
        self._client.log_text(self.parent_run_id, prepared.template.text(), "prompts/original.txt")

    def _trial_runs(self) -> list[Any]:
        """Every live nested trial run of the parent run, in pages."""
        return self._child_runs("trial")

    def _child_runs(self, role: str) -> list[Any]:
        """Every live nested run of the parent run with this ``migrator.role``, in pages."""
        found: list[Any] = []
        token: str | None = None
        while True:
            page = self._client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.`migrator.role` = '{role}'",
                max_results=1000,
                page_token=token,
            )
            found += page
            token = page.token
            if not token:
                return found


def _import_what_tracing_imports() -> None:
    """Import, while the search runs, what mlflow's tracer imports on its first trace (IPython, to ask whether it
    runs in a notebook): done later on this thread, it raced the report's charts on the main thread, where
    matplotlib reads a half-imported IPython (AttributeError: partially initialized module 'IPython')."""
    import importlib.util

    if importlib.util.find_spec("IPython") is not None:
        importlib.import_module("IPython")


def _run_to_keep(runs: Sequence[Any]) -> Any | None:
    """Of one trial's nested runs, the whole one with its predictions if any has them, else the first written."""
    whole = sorted(
        (r for r in runs if r.info.status != "RUNNING"),
        key=lambda r: ("migrator.backfilled" in r.data.tags, r.info.start_time),
    )
    return whole[0] if whole else None


def _prompt_renderer(result: MigrationResult) -> Callable[[Config], str]:
    """What a config sent for the first dev example, as the search rendered it ("" for an unknown prompt)."""
    from migrator.migration import build_setup
    from migrator.search import rendered_prompt

    api_bases = {model: e.api_base for model, e in result.endpoints.items() if e.api_base}
    setup = replace(build_setup(result.prepared, api_bases), prompts=result.prompts)
    return lambda config: rendered_prompt(setup, config) if config.prompt_id in setup.prompts else ""


# -- what each record becomes in MLflow -------------------------------------------------------


def parent_tags(spec: MigrationSpec, study_name: str) -> dict[str, str]:
    """The parent run's tags: which study it records (a resumed run finds it by them), and the migration."""
    targets = [t.model for t in spec.targets]
    return {
        "migrator.study": study_name,
        "migrator.role": "parent",
        "legacy_model": spec.app.model,
        "target_models": ", ".join(targets),
        "spec_hash": spec.spec_hash(),
        "mlflow.note.content": f"Migration of {spec.name} from {spec.app.model} to {', '.join(targets)}.",
    }


def parent_params(prepared: Prepared) -> dict[str, Any]:
    """The parent run's params: the spec's choices and the split sizes."""
    spec = prepared.spec
    return {
        "legacy_model": spec.app.model,
        "targets": ",".join(t.model for t in spec.targets),
        "metric": spec.metric.name,
        "objective": ",".join(spec.objective),
        "budget_trials": spec.budget.trials,
        "budget_usd": spec.budget.usd,
        "budget_calls": spec.budget.calls,
        "budget_minutes": spec.budget.minutes,
        "sampler": spec.search_space.sampler,
        "pruner": spec.search_space.pruner,
        "seed": spec.seed,
        "n_train": len(prepared.splits.train),
        "n_dev": len(prepared.splits.dev),
        "n_test": len(prepared.splits.test),
        "prompt_candidates": ",".join(prepared.prompts),
    }


def trial_tags(outcome: TrialOutcome, legacy_model: str, parent_run_id: str, *, backfilled: bool) -> dict[str, str]:
    """A nested trial run's tags; ``mlflow.parentRunId`` nests it under the parent run."""
    tags = {
        "mlflow.parentRunId": parent_run_id,
        "migrator.role": "trial",
        "migrator.trial": str(outcome.number),
        "state": outcome.state,
        "legacy_model": legacy_model,
        "target_model": outcome.config.model,
        "warm_start": str(outcome.warm_start).lower(),
    }
    if outcome.note:
        tags["note"] = redact(outcome.note)[:4000]
    if backfilled:
        tags["migrator.backfilled"] = "true"
        tags["mlflow.note.content"] = _BACKFILLED_NOTE
    return tags


def trial_params(config: Config) -> dict[str, Any]:
    """A trial's config as params; each call param as ``param.<name>``."""
    return {
        "model": config.model,
        "prompt_id": config.prompt_id,
        "demos": config.demos,
        "demo_strategy": config.demo_strategy,
        "mode": config.mode,
        **{f"param.{k}": v for k, v in config.params},
    }


def trial_metrics(summary: Summary) -> dict[str, float]:
    """A trial's dev-split summary as metrics."""
    metrics = {name: getattr(summary, field) for name, field in _TRIAL_METRICS.items()}
    metrics["cost_usd_per_1k_examples"] = summary.cost_usd_per_example * 1000
    return metrics


def dataset_entity(prepared: Prepared) -> Any:
    """The golden dataset as an MLflow dataset: its file, a digest of its bytes, and its rows per split."""
    path = prepared.spec.resolve(prepared.spec.dataset.path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "unknown"
    profile = {"num_rows": len(prepared.examples), **{k: len(prepared.splits.get(k)) for k in ("train", "dev", "test")}}
    return import_mlflow().entities.Dataset(
        name=path.name,
        digest=digest,
        source_type="local",
        source=json.dumps({"uri": path.resolve().as_uri()}),
        profile=json.dumps(profile),
    )


def dataset_input(dataset: Any, split: str) -> Any:
    """``dataset`` as one run's input: the split it used is its context (MLflow's Dataset column shows both)."""
    entities = import_mlflow().entities
    return entities.DatasetInput(dataset, tags=[entities.InputTag("mlflow.data.context", split)])


def prediction_rows(outcome: TrialOutcome, dev: Sequence[Example]) -> list[dict[str, Any]]:
    """One row per scored dev example (predictions.json), long texts cut at 2,000 characters."""
    by_id = {ex.id: ex for ex in dev}
    # the judge metric's reasons, in a column of their own
    judged = any(r.judged for r in outcome.results)
    return [
        {
            "example_id": r.example_id,
            "input": json.dumps(dict(by_id[r.example_id].inputs), ensure_ascii=False)[:2000],
            "expected": json.dumps(by_id[r.example_id].expected, ensure_ascii=False),
            "output": r.output[:2000],
            "score": r.score,
            "error": r.error or "",
            **({"judged": r.judged[:2000]} if judged else {}),
        }
        for r in outcome.results
    ]


def result_metrics(result: MigrationResult) -> dict[str, float]:
    """The parent run's final metrics: test scores of winner, baseline and legacy, the paired test, the calls,
    and the judge's agreement with exact labels (the judge metric)."""
    from migrator.migration import judge_report

    metrics: dict[str, float] = {}
    for role, ev in (("winner", result.verdict.winner), ("baseline", result.verdict.baseline), ("legacy", result.verdict.legacy)):
        if ev is None:
            continue
        metrics[f"{role}_test_score"] = ev.test.score
        metrics[f"{role}_test_ci_low"] = ev.test_ci[0]
        metrics[f"{role}_test_ci_high"] = ev.test_ci[1]
        metrics[f"{role}_cost_usd_per_example"] = ev.test.cost_usd_per_example
        metrics[f"{role}_latency_p50_s"] = ev.test.latency_p50_s
        if ev.dev is not None:
            metrics[f"{role}_dev_score"] = ev.dev.score
    if result.verdict.paired is not None:
        metrics["winner_minus_baseline"] = result.verdict.paired.mean_diff
        metrics["paired_p_value"] = result.verdict.paired.p_value
    for key in ("made", "cached", "failed", "retried"):
        metrics[f"llm_calls_{key}"] = float(result.stats[key])
    metrics["cost_usd"] = float(result.stats["cost_usd"])
    agree = ((judge_report(result.prepared, result.verdict) or {}).get("agreement_with_exact")) or {}
    if agree:
        metrics["judge_agreement_with_exact"] = agree["agreement"]
        if agree["kappa"] is not None:
            metrics["judge_kappa"] = agree["kappa"]
    return metrics


def verdict_note(
    result: MigrationResult, experiment_id: str, run_id: str, prompt_uri: str | None, compare: str | None = None
) -> str:
    """The parent run's description (Markdown, on its page): the verdict, and links to the report and the prompt."""
    spec, verdict = result.spec, result.verdict
    lines = [f"**Migration of {spec.name}** from `{spec.app.model}` to {', '.join(f'`{t.model}`' for t in spec.targets)}.", ""]
    links = [
        f"[report.html](#/experiments/{experiment_id}/runs/{run_id}/artifacts/report.html)",
        f"[the trials ranked by dev score]({landing_page(experiment_id)})",
    ]
    if compare:
        links.append(f"[winner vs naive migration, example by example]({compare})")
    if prompt_uri:
        links.append(f"the winner's prompt: `{prompt_uri}` (alias `{spec.tracking.prompt_alias}`)")
    lines += [" · ".join(links), ""]
    winner, baseline = verdict.winner, verdict.baseline
    if winner is None:
        lines.append("No config completed a trial: there is no winner (see summary.json).")
    else:
        lines.append(
            f"**Winner:** {winner.config.label()}: test {winner.test.score:.3f} "
            f"(95% CI {winner.test_ci[0]:.3f} to {winner.test_ci[1]:.3f}) on {winner.test.n} examples."
        )
        if baseline is not None:
            lines.append(f"**Naive migration** (the legacy prompt on {baseline.config.model}): test {baseline.test.score:.3f}.")
        paired = verdict.paired
        if paired is not None:
            lines.append(
                f"Winner minus naive migration: {paired.mean_diff:+.3f} (paired test p = {paired.p_value:.3g}; "
                f"{paired.better} examples improved, {paired.worse} regressed)."
            )
    if verdict.legacy is not None:
        lines.append(f"The app today ({spec.app.model}): test {verdict.legacy.test.score:.3f}.")
    for note in (verdict.legacy_note, result.prepared.space_note, verdict.sampling_note):
        if note:
            lines.append(f"Note: {note}.")
    return redact("\n".join(lines))


def candidate_table(result: MigrationResult) -> list[dict[str, Any]]:
    """One row per prompt candidate (candidates.json); a candidate never scored has a NaN score."""
    from migrator.outputs import candidate_rows

    return [
        {
            "prompt_id": row["prompt_id"],
            "origin": json.dumps(row["origin"]),
            "trials": row["trials"],
            "best_dev_score": row["best_dev_score"] if row["best_dev_score"] is not None else float("nan"),
            "text": row["text"],
        }
        for row in candidate_rows(result)
    ]


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows as the columns ``log_table`` takes."""
    return {k: [row[k] for row in rows] for k in rows[0]}


def _params(values: Mapping[str, Any]) -> list[Any]:
    param = import_mlflow().entities.Param
    return [param(k, str(v)) for k, v in values.items()]


def _metrics(values: Mapping[str, float]) -> list[Any]:
    metric = import_mlflow().entities.Metric
    return [metric(k, float(v), 0, 0) for k, v in values.items()]


def _tags(values: Mapping[str, str]) -> list[Any]:
    tag = import_mlflow().entities.RunTag
    return [tag(k, v) for k, v in values.items()]
