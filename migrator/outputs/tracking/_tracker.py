"""Trackers: what the search reports its trials to. ``NullTracker`` records nothing.

``MlflowTracker`` is a :class:`Worker` (a background thread) running an
:class:`MlflowRecorder` (the MLflow calls): importing mlflow, creating the store (seconds
on a new SQLite file) and a nested run per trial overlap the search instead of adding to
it. A failure there raises ``TrackingError`` from ``finish``, after the caller has written
the run's own outputs.

A killed run loses the trials still queued for that thread, and a kill inside a trial's
write leaves its nested run RUNNING. So ``finish`` reconciles the nested runs with every
finished trial of the study: a resumed run writes the missing ones (tagged
``migrator.backfilled``) and replaces the half-written ones, and never logs one twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from migrator.candidates import PromptCandidate, Rejection
from migrator.errors import TrackingError
from migrator.outputs.tracking._mlflow import MlflowRecorder
from migrator.outputs.tracking._worker import Worker
from migrator.redaction import redact
from migrator.search import TrialOutcome

if TYPE_CHECKING:
    from migrator.migration import MigrationResult, Prepared

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "TrackingError"]


class Tracker(Protocol):
    def start(self, prepared: Prepared, study_name: str, endpoints_mode: Mapping[str, str]) -> None: ...

    def log_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None: ...

    def log_trial(self, outcome: TrialOutcome) -> None: ...

    def log_verdict(self, result: MigrationResult) -> None: ...

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

    def log_verdict(self, result: MigrationResult) -> None:
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
    trials a killed run left unlogged or half-written (see
    ``MlflowRecorder.reconcile_trials``) and the final results, waits until everything
    queued is written, stops the worker and returns the run ids.

    If an MLflow call fails, the worker records nothing more (the store may be
    unreachable or inconsistent), calls ``on_failure`` at once and ``finish`` raises a
    ``TrackingError`` naming the first failure. The search itself goes on: a caller
    writes its outputs before calling ``finish``.

    Args:
        tracking_uri: e.g. ``sqlite:///runs/x/mlflow.db`` or ``http://mlflow:5000``.
        experiment: experiment name (default: the migration's name).
        artifact_dir: where a new experiment keeps artifacts (a local store needs one).
        on_failure: called from the worker thread with the error when tracking fails.
        tags: more tags on the parent run (a fleet's ``migrator.app``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str | None = None,
        artifact_dir: Path | None = None,
        on_failure: Callable[[TrackingError], None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.on_failure = on_failure
        self._recorder = MlflowRecorder(tracking_uri, experiment, artifact_dir, tags)
        self._worker = Worker("migrator-mlflow", self._fail)
        self._failure: TrackingError | None = None

    @property
    def tracking_uri(self) -> str:
        """The store the migration is recorded in (the recorder's; set once, read from any thread)."""
        return self._recorder.tracking_uri

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id, once the worker has opened the parent run (waits for it)."""
        self._worker.wait_for_first_task()
        return self._recorder.experiment_id

    @property
    def parent_run_id(self) -> str | None:
        """The parent run's id, once the worker has opened it (waits for it); None if that failed."""
        self._worker.wait_for_first_task()
        return self._recorder.parent_run_id

    def start(self, prepared: Prepared, study_name: str, endpoints_mode: Mapping[str, str]) -> None:
        """Start the worker and have it open (or, on a resumed run, reopen) the parent run."""
        if self._worker.running:
            raise RuntimeError("MlflowTracker.start was called twice; one tracker records one migration")
        self._worker.start()
        self._worker.submit("opening the parent run", lambda: self._recorder.open(prepared, study_name))

    def join(self, prepared: Prepared, study_name: str, parent_run_id: str) -> None:
        """Start the worker on another process's parent run (``migrator worker``): only trials are logged."""
        if self._worker.running:
            raise RuntimeError("MlflowTracker.join was called on a started tracker")
        self._worker.start()
        self._worker.submit("joining the parent run", lambda: self._recorder.join(prepared, study_name, parent_run_id))

    def log_candidates(self, candidates: Sequence[PromptCandidate], rejected: Sequence[Rejection]) -> None:
        """Queue every prompt candidate's text and origin, and the rejected rewrites, as artifacts."""
        self._worker.submit("logging the prompt candidates", lambda: self._recorder.write_candidates(candidates, rejected))

    def log_trial(self, outcome: TrialOutcome) -> None:
        """Queue a nested run for one finished trial (this is the search's callback)."""
        self._worker.submit(f"logging trial #{outcome.number}", lambda: self._recorder.write_trial(outcome))

    def log_verdict(self, result: MigrationResult) -> None:
        """Queue the verdict's configs on dev and test as GenAI evaluation runs, as soon as the verdict is in
        (they are logged while the report is drawn)."""
        self._worker.submit("logging the verdict's evaluation runs", lambda: self._recorder.write_evaluations(result))

    def finish(self, result: MigrationResult, files: Mapping[str, Path]) -> dict[str, Any]:
        """Log the trials no earlier run logged, the final test results and output files; wait, stop the worker.

        Raises:
            TrackingError: an MLflow call failed; what was queued after it was not recorded.
        """
        # after every queued trial, so that what is still missing is what a killed run lost;
        # before the final results, so that a FINISHED parent run has all its trials
        self._worker.submit("logging the trials a killed run left out", lambda: self._recorder.reconcile_trials(result))
        # the prompts the search wrote as it went (reflections), and every rejected proposal
        reflected = [c for c in result.prompts.values() if c.origin.get("kind") == "reflection"]
        if reflected or any(r.origin.get("kind") == "reflection" for r in result.rejected):
            self.log_candidates(reflected, result.rejected)
        self._worker.submit("logging the final results", lambda: self._recorder.write_result(result, files))
        self.close()
        if self._failure is not None:
            raise self._failure
        recorder = self._recorder
        return {"tracking_uri": self.tracking_uri, "experiment_id": recorder.experiment_id, "parent_run_id": recorder.parent_run_id}

    def close(self) -> None:
        """Wait for every queued record, then stop the worker (``finish`` does this; for interrupted runs)."""
        self._worker.close()

    def _fail(self, what: str, exc: Exception) -> None:
        error = TrackingError(
            f"MLflow tracking at {redact(self.tracking_uri)} failed while {what}, and recorded nothing after that: "
            f"{type(exc).__name__}: {redact(str(exc))[:2000]}"
        )
        error.__cause__ = exc
        self._failure = error
        if self.on_failure is not None:
            self.on_failure(error)
