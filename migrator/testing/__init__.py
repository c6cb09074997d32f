"""Fakes shipped with migrator, so tests, benchmarks, the notebook and users' own CI run offline.

Inside:

- ``_fake_provider``: ``fake/<profile>`` model ids answered through litellm's
  custom-provider hook (``register_fake_provider``), the sentiment task they read
  (``true_label``, ``PROFILES``) and rows for it (``make_sentiment_rows``).
- ``_loopback``: ``LoopbackServer``, the one loopback OpenAI-compatible server, with
  latency, faults, scripted replies (``Reply``) and a record of every request
  (``Attempt``); ``_http`` is the bare HTTP/1.1 it speaks.
- ``_replies``: what the server answers (``answer``, ``sentiment_reply``, ``Completion``).
- ``_faults``: what goes wrong (``FaultPlan``, ``FAULTS``, ``RETRYABLE_FAULTS``).
- ``_sleep``: ``RecordingSleep``, a backoff that records its waits and takes no time.
- ``_specs``: specs of a small sentiment migration, on the fake provider (``base_spec``)
  or with its models on the server (``server_spec``, whose key is read from ``KEY_ENV``).
- ``_postgres``: real servers for integration tests and benchmarks: ``PostgresServer``, a
  throwaway PostgreSQL cluster (run as the ``postgres`` user under root), ``MlflowServer``,
  an ``mlflow server`` process with its runs in it, and ``postgres_available`` (why not, if not).
- ``_runs``: scaffolding for tests that run ``migrator run`` (projects, child processes,
  reading a study).

Used by the tests (``tests/``), the benchmarks (``benchmarks/``) and the walkthrough notebook.
"""

from __future__ import annotations

from migrator.testing._fake_provider import (
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    PROFILES,
    FakeProfile,
    last_input,
    make_sentiment_rows,
    register_fake_provider,
    true_label,
)
from migrator.testing._faults import FAULTS, RETRYABLE_FAULTS, FaultPlan
from migrator.testing._loopback import LoopbackServer, Reply
from migrator.testing._postgres import MlflowServer, PostgresServer, postgres_available
from migrator.testing._replies import Attempt, Completion, Responder, answer, sentiment_reply
from migrator.testing._runs import (
    TEMPLATED,
    StudyRow,
    awkward_rows,
    run_command,
    run_env,
    study_rows,
    wait_for,
    write_project,
)
from migrator.testing._sleep import RecordingSleep
from migrator.testing._specs import KEY_ENV, base_spec, server_spec

__all__ = [
    "FAULTS",
    "KEY_ENV",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "PROFILES",
    "RETRYABLE_FAULTS",
    "TEMPLATED",
    "Attempt",
    "Completion",
    "FakeProfile",
    "FaultPlan",
    "LoopbackServer",
    "MlflowServer",
    "PostgresServer",
    "RecordingSleep",
    "Reply",
    "Responder",
    "StudyRow",
    "answer",
    "awkward_rows",
    "base_spec",
    "last_input",
    "make_sentiment_rows",
    "postgres_available",
    "register_fake_provider",
    "run_command",
    "run_env",
    "sentiment_reply",
    "server_spec",
    "study_rows",
    "true_label",
    "wait_for",
    "write_project",
]
