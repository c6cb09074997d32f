"""TODO face of migrator.testing."""

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
from migrator.testing._fault_server import (
    FAULTS,
    KEY_ENV,
    RETRYABLE_FAULTS,
    Attempt,
    FaultPlan,
    FaultServer,
    answer,
    server_spec,
)
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
from migrator.testing._specs import base_spec

__all__ = [
    "FAULTS",
    "KEY_ENV",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "PROFILES",
    "RETRYABLE_FAULTS",
    "TEMPLATED",
    "Attempt",
    "FakeProfile",
    "FaultPlan",
    "FaultServer",
    "StudyRow",
    "answer",
    "awkward_rows",
    "base_spec",
    "last_input",
    "make_sentiment_rows",
    "register_fake_provider",
    "run_command",
    "run_env",
    "server_spec",
    "study_rows",
    "true_label",
    "wait_for",
    "write_project",
]
