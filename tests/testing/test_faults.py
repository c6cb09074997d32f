"""The fault draws of the loopback server: seeded, bounded per request body, and cheap without faults."""

from __future__ import annotations

from migrator.testing import FaultPlan
from migrator.testing._faults import FaultDraws


def _never_read() -> str:
    raise AssertionError("a plan without faults has no reason to read the request")


def test_a_plan_without_faults_answers_every_request_and_keeps_nothing() -> None:
    draws = FaultDraws(FaultPlan(rates={"rate_limit": 0.0}, latency_s=0.1, hold_after=3))
    assert [draws.decide(f"body {i}".encode(), "fault-oracle", _never_read) for i in range(100)] == [None] * 100
    assert not draws._streak  # nothing kept per body


def test_a_marker_or_a_model_alone_still_fails_its_requests() -> None:
    marked = FaultDraws(FaultPlan(broken_marker="BROKEN", broken_kind="auth"))
    assert marked.decide(b"a", "m", lambda: "a BROKEN review") == "auth"
    assert marked.decide(b"b", "m", lambda: "a fine review") is None
    model = FaultDraws(FaultPlan(model_faults={"fault-weak": "unavailable"}))
    assert model.decide(b"a", "fault-weak", _never_read) == "unavailable"
    assert model.decide(b"a", "fault-oracle", lambda: "a fine review") is None


def test_a_streak_of_faults_is_bounded_and_forgotten_once_answered() -> None:
    draws = FaultDraws(FaultPlan(rates={"rate_limit": 1.0}, max_consecutive=2))
    kinds = [draws.decide(b"same body", "m", lambda: "x") for _ in range(6)]
    assert kinds == ["rate_limit", "rate_limit", None, "rate_limit", "rate_limit", None]
    assert not draws._streak  # an answered body leaves no entry behind


def test_the_draws_are_seeded() -> None:
    def kinds(seed: int) -> list[str | None]:
        draws = FaultDraws(FaultPlan(rates={"server_error": 0.3, "empty": 0.2}, seed=seed))
        return [draws.decide(f"body {i}".encode(), "m", lambda: "x") for i in range(50)]

    assert kinds(1) == kinds(1) != kinds(2)
    assert {"server_error", "empty", None} == set(kinds(1))
