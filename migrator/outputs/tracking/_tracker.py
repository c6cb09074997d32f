"""MLflow tracking: a parent run per migration, a nested run per trial.

The only module that imports mlflow (lazily). It uses ``MlflowClient`` with explicit
run ids rather than mlflow's global active run, so nothing leaks between migrations
in one process. ``NullTracker`` records nothing, for runs without tracking.

``MlflowTracker`` writes from one background thread, so importing mlflow, creating
the store (seconds on a new SQLite file) and a nested run per trial overlap the
search instead of adding to it. A failure there raises ``TrackingError`` from
``finish``, after the caller has written the run's own outputs.

A killed run loses the trials still queued for that thread, and a kill inside a trial's
write leaves its nested run RUNNING. So ``finish`` reconciles the nested runs with every
finished trial of the study: a resumed run writes the missing ones (tagged
``migrator.backfilled``) and replaces the half-written ones, and never logs one twice.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from migrator.candidates import PromptCandidate, Rejection
from migrator.errors import TrackingError
from migrator.redaction import redact
from migrator.search import TrialOutcome

if TYPE_CHECKING:
    from migrator.evaluate import Config
    from migrator.migration import MigrationResult, Prepared

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "TrackingError"]

# MLflow 3 sends usage telemetry to its servers by default; migrator runs offline and
# never phones home. Set MLFLOW_DISABLE_TELEMETRY=false yourself to allow it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
_BACKFILLED_NOTE = (
    "Logged when the migration resumed: the run that finished this trial was killed before it had logged it whole, "
    "and that run's per-example predictions (predictions.json) were not kept."
)


class Tracker(Protocol):
    def start(self, prepared: Prepared, study_name: str, endpoints_mode: Mapping[str, str]) -> None: ...

    def log_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None: ...

    def log_trial(self, outcome: TrialOutcome) -> None: ...

    def finish(self, result: MigrationResult, files: Mapping[str, Path]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class NullTracker:
    """Tracks nothing."""

    def start(self, prepared: Prepared, study_name: str, endpoints_mode: Mapping[str, str]) -> None:
        return None

    def log_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None:
        return None

    def log_trial(self, outcome: TrialOutcome) -> None:
        return None

    def finish(self, result: MigrationResult, files: Mapping[str, Path]) -> dict[str, Any]:
        return {"tracking_uri": None, "experiment_id": None, "parent_run_id": None}

    def close(self) -> None:
        return None


class MlflowTracker:
    """Records a migration in an MLflow tracking store, off the search's critical path.

    One worker thread does all MLflow work, in the order it was asked for. ``start``
    returns at once: the worker imports mlflow, opens (creating and migrating, on a new
    SQLite file) the store and opens the parent run while the search already runs.
    ``log_candidates`` and ``log_trial`` only queue their record. ``finish`` queues the
    trials a killed run left unlogged or half-written (see ``_reconcile_trials``) and the
    final results, waits until everything queued is written, stops the worker and
    returns the run ids.

    If an MLflow call fails, the worker records nothing more (the store may be
    unreachable or inconsistent), calls ``on_failure`` at once and ``finish`` raises a
    ``TrackingError`` naming the first failure. The search itself goes on: a caller
    writes its outputs before calling ``finish``.

    Args:
        tracking_uri: e.g. ``sqlite:///runs/x/mlflow.db`` or ``http://mlflow:5000``.
        experiment: experiment name (default: the migration's name).
        artifact_dir: where a new experiment keeps artifacts (a local store needs one).
        on_failure: called from the worker thread with the error when tracking fails.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str | None = None,
        artifact_dir: Path | None = None,
        on_failure: Callable[[TrackingError], None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_dir = artifact_dir
        self.on_failure = on_failure
        self._client: Any = None
        self._prepared: Prepared | None = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._tasks: queue.SimpleQueue[tuple[str, Callable[[], None]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._opened = threading.Event()
        self._failure: TrackingError | None = None

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id, once the worker has opened the parent run (waits for it)."""
        self._wait_opened()
        return self._experiment_id

    @property
    def parent_run_id(self) -> str | None:
        """The parent run's id, once the worker has opened it (waits for it); None if that failed."""
        self._wait_opened()
        return self._parent_run_id

    def start(self, prepared: Prepared, study_name: str, endpoints_mode: Mapping[str, str]) -> None:
        """Start the worker and have it open (or, on a resumed run, reopen) the parent run."""
        if self._worker is not None:
            raise RuntimeError("MlflowTracker.start was called twice; one tracker records one migration")
        self._worker = threading.Thread(target=self._work, name="migrator-mlflow", daemon=True)
        self._worker.start()
        self._tasks.put(("opening the parent run", lambda: self._open(prepared, study_name)))

    def log_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None:
        """Queue every prompt candidate's text and origin, and the rejected rewrites, as artifacts."""
        self._submit("logging the prompt candidates", lambda: self._write_candidates(candidates, rejected))

    def log_trial(self, outcome: TrialOutcome) -> None:
        """Queue a nested run for one finished trial (this is the search's callback)."""
        self._submit(f"logging trial #{outcome.number}", lambda: self._write_trial(outcome))

    def finish(self, result: MigrationResult, files: Mapping[str, Path]) -> dict[str, Any]:
        """Log the trials no earlier run logged, the final test results and output files; wait, stop the worker.

        Raises:
            TrackingError: an MLflow call failed; what was queued after it was not recorded.
        """
        # after every queued trial, so that what is still missing is what a killed run lost;
        # before the final results, so that a FINISHED parent run has all its trials
        self._submit("logging the trials a killed run left out", lambda: self._reconcile_trials(result))
        self._submit("logging the final results", lambda: self._write_result(result, files))
        self.close()
        if self._failure is not None:
            raise self._failure
        return {"tracking_uri": self.tracking_uri, "experiment_id": self._experiment_id, "parent_run_id": self._parent_run_id}

    def close(self) -> None:
        """Wait for every queued record, then stop the worker (``finish`` does this; for interrupted runs)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._tasks.put(None)
        worker.join()

    def _submit(self, what: str, task: Callable[[], None]) -> None:
        # Before start and after finish there is no parent run to record on.
        if self._worker is not None:
            self._tasks.put((what, task))

    def _wait_opened(self) -> None:
        if self._worker is not None:
            self._opened.wait()

    def _work(self) -> None:
        try:
            while (item := self._tasks.get()) is not None:
                what, task = item
                if self._failure is None:
                    try:
                        task()
                    except Exception as exc:
                        self._fail(what, exc)
                self._opened.set()  # the first task opens the parent run
        finally:
            self._opened.set()

    def _fail(self, what: str, exc: Exception) -> None:
        error = TrackingError(
            f"MLflow tracking at {redact(self.tracking_uri)} failed while {what}, and recorded nothing after that: "
            f"{type(exc).__name__}: {redact(str(exc))[:2000]}"
        )
        error.__cause__ = exc
        self._failure = error
        if self.on_failure is not None:
            self.on_failure(error)

    # -- the worker's MLflow calls -----------------------------------------------------------

    def _open(self, prepared: Prepared, study_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self._client = client = MlflowClient(tracking_uri=self.tracking_uri)
        self._prepared = prepared
        spec = prepared.spec
        name = self.experiment or spec.name
        found = client.get_experiment_by_name(name)
        if found is None:
            location = self.artifact_dir.resolve().as_uri() if self.artifact_dir else None
            self._experiment_id = client.create_experiment(name, artifact_location=location)
        else:
            self._experiment_id = found.experiment_id
        runs = client.search_runs(
            [self._experiment_id], filter_string=f"tags.`migrator.study` = '{study_name}' and tags.`migrator.role` = 'parent'", max_results=1
        )
        if runs:
            self._parent_run_id = runs[0].info.run_id
            client.update_run(self._parent_run_id, status="RUNNING")
            return
        tags = {
            "migrator.study": study_name,
            "migrator.role": "parent",
            "legacy_model": spec.app.model,
            "target_models": ", ".join(t.model for t in spec.targets),
            "spec_hash": spec.spec_hash(),
            "mlflow.note.content": f"Migration of {spec.name} from {spec.app.model} to {', '.join(t.model for t in spec.targets)}.",
        }
        run = client.create_run(self._experiment_id, run_name=spec.name, tags=tags)
        self._parent_run_id = run.info.run_id
        from mlflow.entities import Param

        params = {
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
        client.log_batch(self._parent_run_id, params=[Param(k, str(v)) for k, v in params.items()])
        client.log_text(self._parent_run_id, prepared.template.text(), "prompts/original.txt")

    def _write_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None:
        client, run_id = self._client, self._parent_run_id
        for cand in candidates:
            origin = json.dumps(dict(cand.origin), ensure_ascii=False)
            client.log_text(run_id, f"# origin: {origin}\n\n{cand.template.text()}", f"prompts/candidates/{cand.id}.txt")
        if rejected:
            lines = [f"## {json.dumps(dict(r.origin))}\nreason: {r.reason}\n\n{r.text}\n" for r in rejected]
            client.log_text(run_id, "\n".join(lines), "prompts/rejected.txt")

    def _trial_runs(self) -> list[Any]:
        """Every live nested trial run of the parent run, in pages."""
        found: list[Any] = []
        token: str | None = None
        while True:
            page = self._client.search_runs(
                [self._experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self._parent_run_id}' and tags.`migrator.role` = 'trial'",
                max_results=1000,
                page_token=token,
            )
            found += page
            token = page.token
            if not token:
                return found

    def _reconcile_trials(self, result: MigrationResult) -> None:
        """Leave exactly one whole nested run per finished trial of the study.

        ``log_trial`` only saw this run's trials: the ones a killed run had queued are
        missing, and one it was writing is still RUNNING (``set_terminated`` is the last
        call of ``_write_trial``). A run cut short, or a second run of one trial, is
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
            # the one to keep has its predictions if any does, then is the first written
            whole = sorted(
                (r for r in runs if r.info.status != "RUNNING"),
                key=lambda r: ("migrator.backfilled" in r.data.tags, r.info.start_time),
            )
            for run in runs:
                if not whole or run is not whole[0]:
                    self._client.delete_run(run.info.run_id)
            if not whole:
                render = render or _prompt_renderer(result)
                self._write_trial(replace(outcome, prompt_text=render(outcome.config)), backfilled=True)

    def _write_trial(self, outcome: TrialOutcome, *, backfilled: bool = False) -> None:
        from mlflow.entities import Metric, Param, RunTag

        assert self._prepared is not None and self._parent_run_id is not None, "the parent run is opened first"
        client, prepared, spec = self._client, self._prepared, self._prepared.spec
        config = outcome.config
        tags = {
            "mlflow.parentRunId": self._parent_run_id,
            "migrator.role": "trial",
            "migrator.trial": str(outcome.number),
            "state": outcome.state,
            "legacy_model": spec.app.model,
            "target_model": config.model,
            "warm_start": str(outcome.warm_start).lower(),
        }
        if outcome.note:
            tags["note"] = redact(outcome.note)[:4000]
        if backfilled:
            tags["migrator.backfilled"] = "true"
            tags["mlflow.note.content"] = _BACKFILLED_NOTE
        run = client.create_run(self._experiment_id, run_name=f"#{outcome.number} {config.label()}", tags=tags)
        run_id = run.info.run_id
        params = {
            "model": config.model,
            "prompt_id": config.prompt_id,
            "demos": config.demos,
            "demo_strategy": config.demo_strategy,
            "mode": config.mode,
            **{f"param.{k}": v for k, v in config.params},
        }
        s = outcome.summary
        metrics = {
            "dev_score": s.score,
            "cost_usd_per_example": s.cost_usd_per_example,
            "cost_usd": s.cost_usd,
            "latency_p50_s": s.latency_p50_s,
            "calls": s.calls,
            "n_evaluated": s.n,
            "failed_examples": s.failed,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
        }
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.parentRunId"],
        )
        if outcome.prompt_text:
            client.log_text(run_id, outcome.prompt_text, "prompt.txt")
        if outcome.results:
            by_id = {ex.id: ex for ex in prepared.splits.dev}
            rows = [
                {
                    "example_id": r.example_id,
                    "input": json.dumps(dict(by_id[r.example_id].inputs), ensure_ascii=False)[:2000],
                    "expected": json.dumps(by_id[r.example_id].expected, ensure_ascii=False),
                    "output": r.output[:2000],
                    "score": r.score,
                    "error": r.error or "",
                }
                for r in outcome.results
            ]
            client.log_table(run_id, data={k: [row[k] for row in rows] for k in rows[0]}, artifact_file="predictions.json")
        client.set_terminated(run_id, status=_STATUS.get(outcome.state, "FINISHED"))

    def _write_result(self, result: MigrationResult, files: Mapping[str, Path]) -> None:
        from mlflow.entities import Metric

        client, run_id = self._client, self._parent_run_id
        metrics: dict[str, float] = {}
        for role, ev in (("winner", result.winner), ("baseline", result.baseline), ("legacy", result.legacy)):
            if ev is None:
                continue
            metrics[f"{role}_test_score"] = ev.test.score
            metrics[f"{role}_test_ci_low"] = ev.test_ci[0]
            metrics[f"{role}_test_ci_high"] = ev.test_ci[1]
            metrics[f"{role}_cost_usd_per_example"] = ev.test.cost_usd_per_example
            metrics[f"{role}_latency_p50_s"] = ev.test.latency_p50_s
            if ev.dev is not None:
                metrics[f"{role}_dev_score"] = ev.dev.score
        if result.paired is not None:
            metrics["winner_minus_baseline"] = result.paired.mean_diff
            metrics["paired_p_value"] = result.paired.p_value
        for key in ("made", "cached", "failed", "retried"):
            metrics[f"llm_calls_{key}"] = float(result.stats[key])
        metrics["cost_usd"] = float(result.stats["cost_usd"])
        client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
        if result.winner is not None:
            client.set_tag(run_id, "winner", result.winner.config.label())
        table = _candidate_rows(result)
        if table:
            client.log_table(run_id, data={k: [row[k] for row in table] for k in table[0]}, artifact_file="candidates.json")
        for path in files.values():
            if path.is_file():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED")


def _prompt_renderer(result: MigrationResult) -> Callable[[Config], str]:
    """What a config sent for the first dev example, as the search rendered it ("" for an unknown prompt)."""
    from migrator.migration import build_setup
    from migrator.search import rendered_prompt

    api_bases = {model: e.api_base for model, e in result.endpoints.items() if e.api_base}
    setup = replace(build_setup(result.prepared, api_bases), prompts=result.prompts)
    return lambda config: rendered_prompt(setup, config) if config.prompt_id in setup.prompts else ""


def _candidate_rows(result: MigrationResult) -> list[dict[str, Any]]:
    from migrator.outputs._files import candidate_rows

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


def register_prompt(
    tracking_uri: str, winner: Mapping[str, Any], *, name: str | None = None, alias: str = "production"
) -> tuple[str, int]:
    """Register the winner's prompt (template + model config) in MLflow's prompt registry.

    Returns the prompt's name and the new version, which ``alias`` now points to.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    prompt_name = name or f"{winner['name']}-prompt"
    params = dict(winner.get("params") or {})
    model_config = {k: v for k, v in params.items() if k in ("temperature", "top_p", "max_tokens")}
    model_config["model_name"] = str(winner["model"])
    demos = winner.get("demos") or {}
    version = client.register_prompt(
        prompt_name,
        template=[dict(m) for m in winner["messages"]],
        commit_message=f"migrator winner for {winner['name']}: {winner['model']} · {winner['prompt_id']}",
        tags={
            "migrator.spec_hash": str(winner.get("spec_hash", "")),
            "migrator.prompt_id": str(winner.get("prompt_id", "")),
            "migrator.model": str(winner["model"]),
            "migrator.mode": str((winner.get("endpoint") or {}).get("mode", "chat")),
            "migrator.demos": f"{demos.get('k', 0)} ({demos.get('strategy', 'none')})",
            "migrator.test_score": str((winner.get("scores") or {}).get("test")),
        },
        model_config=model_config,
    )
    client.set_prompt_alias(prompt_name, alias=alias, version=int(version.version))
    return prompt_name, int(version.version)


def download_lockfile(tracking_uri: str, run_id: str, dest: Path) -> Path:
    """The winner.yaml logged on a migration's parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    return Path(client.download_artifacts(run_id, "winner.yaml", str(dest)))


__all__ += ["download_lockfile", "register_prompt"]
