"""Provider faults: retries, failed examples and exact budgets, against a flaky server.

The server (``migrator.testing.LoopbackServer``) speaks OpenAI's API on loopback and breaks on
purpose: 429s with Retry-After, 5xx, resets, hangs, malformed and empty replies.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator import cli
from migrator.dataset import Example, split_examples
from migrator.errors import LLMBadRequestError, LLMError, LLMProviderError, LLMRateLimitError, LLMTimeoutError
from migrator.llm import Endpoint, LiteLLMClient, LLMRequest
from migrator.spec import SplitSpec
from migrator.testing import KEY_ENV, RETRYABLE_FAULTS, FaultPlan, LoopbackServer, make_sentiment_rows, server_spec

KEY = "sk-test-fault-0123456789abcdef"
REVIEW = "Review: The staff was great, honestly wonderful."


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def _ask(server: LoopbackServer, client: LiteLLMClient) -> Any:
    endpoint = Endpoint("openai/fault-oracle", api_base=server.api_base, api_key_env=KEY_ENV)
    return asyncio.run(client.complete(LLMRequest(endpoint, messages=(("user", REVIEW),))))


def _client(**kwargs: Any) -> LiteLLMClient:
    return LiteLLMClient(**{"timeout_s": 1.0, "max_retries": 2, "backoff_s": 0.001, **kwargs})


@pytest.mark.parametrize("kind", RETRYABLE_FAULTS)
def test_a_fault_that_clears_is_retried_and_the_reply_used(kind: str) -> None:
    with LoopbackServer(FaultPlan(rates={kind: 1.0}, max_consecutive=1, hang_s=2.0)) as server:
        client = _client()
        response = _ask(server, client)
    assert response.text == "positive"
    assert [a.fault for a in server.attempts] == [kind, None]
    assert (client.stats.made, client.stats.retried, client.stats.failed) == (1, 1, 0)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("rate_limit", LLMRateLimitError),
        ("server_error", LLMProviderError),
        ("unavailable", LLMProviderError),
        ("reset", LLMProviderError),
        ("hang", LLMTimeoutError),
        ("malformed", LLMProviderError),
        ("empty", LLMProviderError),
    ],
)
def test_a_fault_that_stays_fails_the_call_after_the_retries(kind: str, error: type[LLMError]) -> None:
    with LoopbackServer(FaultPlan(rates={kind: 1.0}, max_consecutive=None, hang_s=2.0)) as server:
        client = _client()
        with pytest.raises(error):
            _ask(server, client)
    assert len(server.attempts) == 3
    assert (client.stats.made, client.stats.retried, client.stats.failed) == (0, 2, 1)


def test_a_refused_request_is_not_retried() -> None:
    with LoopbackServer(FaultPlan(rates={"auth": 1.0})) as server:
        client = _client()
        with pytest.raises(LLMBadRequestError):
            _ask(server, client)
    assert len(server.attempts) == 1
    assert (client.stats.retried, client.stats.failed) == (0, 1)


def test_retry_after_sets_the_wait_before_the_retry() -> None:
    with LoopbackServer(FaultPlan(rates={"rate_limit": 1.0}, max_consecutive=1, retry_after="0.6")) as server:
        client = _client(backoff_s=30.0)  # were Retry-After ignored, this backoff would show
        started = time.monotonic()
        assert _ask(server, client).text == "positive"
        waited = time.monotonic() - started
    assert 0.6 <= waited < 5


def test_a_truncated_reply_is_kept_with_its_finish_reason() -> None:
    with LoopbackServer(FaultPlan(rates={"truncated": 1.0})) as server:
        client = _client()
        response = _ask(server, client)
    assert response.finish_reason == "length"
    assert response.text.startswith("positive\n")
    assert client.stats.retried == 0 and len(server.attempts) == 1


def test_the_target_key_is_sent_as_the_bearer_token() -> None:
    with LoopbackServer() as server:
        _ask(server, _client())
    assert [a.authorization for a in server.attempts] == [f"Bearer {KEY}"]


# A migration against the flaky server. Most faults are 429s with "Retry-After: 0"; the
# others back off for about a second each (the CLI's backoff). Seed 60 draws every kind
# of fault within the first 50 attempts.
THIRTY_PERCENT = {
    "rate_limit": 0.16,
    **dict.fromkeys(("server_error", "unavailable", "reset", "hang", "malformed", "empty", "truncated"), 0.02),
}


def _run(tmp_path: Path, name: str, plan: FaultPlan, **overrides: Any) -> tuple[dict[str, Any], LoopbackServer, Path]:
    root = tmp_path / name
    root.mkdir()
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(30)))
    with LoopbackServer(plan) as server:
        spec = root / "migration.yaml"
        spec.write_text(yaml.safe_dump(server_spec(server.api_base, str(data), **overrides)))
        out = root / "out"
        code = cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"])
    assert code == 0
    return json.loads((out / "summary.json").read_text()), server, out


def _trials(out: Path) -> list[tuple[Any, ...]]:
    """Every trial in the study: number, state, value, failed examples, params."""
    db = sqlite3.connect(out / "study.db")
    rows = db.execute(
        "SELECT t.trial_id, t.number, t.state, v.value, json_extract(a.value_json, '$.failed_examples') FROM trials t "
        "LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
        "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'summary' ORDER BY t.number"
    ).fetchall()
    params: dict[int, list[tuple[str, float]]] = {}
    for trial_id, name, value in db.execute(
        "SELECT trial_id, param_name, param_value FROM trial_params ORDER BY param_name"
    ):
        params.setdefault(trial_id, []).append((name, value))
    db.close()
    return [(number, state, value, failed, params.get(trial_id)) for trial_id, number, state, value, failed in rows]


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "model",
        "prompt_id",
        "params",
        "demos",
        "demo_strategy",
        "dev_score",
        "test_score",
        "test_ci",
        "test_n",
        "test_failed",
    )
    return {role: {k: summary[role][k] for k in keys} for role in ("winner", "baseline")}


@pytest.mark.parametrize(
    "sampling",
    [
        pytest.param({}, id="greedy"),
        # replies above temperature 0 are samples: only the request seed makes them the same
        pytest.param(
            {"app": {"params": {"temperature": 0.3}}, "search_space": {"temperature": {"low": 0.0, "high": 0.6, "step": 0.3}}},
            id="sampled",
        ),
    ],
)
def test_with_30_percent_faults_the_migration_finds_the_fault_free_winner(tmp_path: Path, sampling: dict[str, Any]) -> None:
    clean, clean_server, clean_out = _run(tmp_path, "clean", FaultPlan(), **sampling)
    flaky, flaky_server, flaky_out = _run(tmp_path, "flaky", FaultPlan(rates=THIRTY_PERCENT, seed=60, hang_s=2.5), **sampling)

    faults = flaky_server.faults()
    assert sum(faults.values()) >= 0.2 * len(flaky_server.attempts)
    assert set(faults) == set(THIRTY_PERCENT)
    calls = flaky["llm_calls"]
    # every attempt the server saw is accounted for: answered, retried, or failed (on a busy
    # machine the client may also give up on an attempt before the server has read it)
    assert len(flaky_server.attempts) <= calls["sent"] == calls["made"] + calls["retried"] + calls["failed"]
    assert calls["retried"] >= sum(n for kind, n in faults.items() if kind in RETRYABLE_FAULTS) > 0
    assert calls["failed"] == 0 and calls["made"] == clean["llm_calls"]["made"]
    # every example scored, and the same search, winner and scores as without faults
    assert flaky["winner"]["test_failed"] == 0 and flaky["winner"]["test_n"] == clean["splits"]["test"]
    assert _verdict(flaky) == _verdict(clean)
    assert _trials(flaky_out) == _trials(clean_out)
    assert all(failed == 0 for *_, failed, _ in _trials(flaky_out))
    assert flaky["winner"]["dev_score"] == max(
        value for _, state, value, *_ in _trials(flaky_out) if state == "COMPLETE"
    )
    assert len(clean_server.faults()) == 0


def test_an_example_that_stays_broken_is_scored_wrong_and_counted(tmp_path: Path) -> None:
    rows = make_sentiment_rows(30)
    examples = [Example(r["id"], {"review": r["review"]}, r["label"]) for r in rows]
    victim = split_examples(examples, SplitSpec(), seed=0).test[0]
    marker = str(victim.inputs["review"])  # the server fails this review every time, retries or not
    plan = FaultPlan(broken_marker=marker, broken_kind="unavailable")
    summary, server, out = _run(tmp_path, "broken", plan, search_space={"max_retries": 1}, budget={"trials": 3})

    calls = summary["llm_calls"]
    assert calls["failed"] > 0
    assert sum(a.fault == "unavailable" for a in server.attempts) == 2 * calls["failed"]  # a try and a retry each
    # the trials (on dev) never saw it; each test verdict lost exactly that example
    assert summary["trials"]["failed"] == 0 and summary["trials"]["complete"] == summary["trials"]["total"]
    assert all(failed == 0 for *_, failed, _ in _trials(out))
    for role in ("winner", "baseline"):
        verdict = summary[role]
        assert verdict["test_failed"] == 1 and verdict["test_n"] == summary["splits"]["test"]
    n = summary["splits"]["test"]
    assert summary["winner"]["test_score"] <= (n - 1) / n


def _budget_run(write_spec: Callable[..., Path], tmp_path: Path, usd: float) -> tuple[int, dict[str, Any], list[float]]:
    space = {"pruner": "none", "concurrency": 4, "demos": {"k": [0, 2, 4]}}
    spec = write_spec(rows=60, budget={"trials": 30, "usd": usd}, search_space=space)
    out = tmp_path / "out"
    code = cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"])
    summary = json.loads((out / "summary.json").read_text())
    with sqlite3.connect(out / "cache.db") as db:
        costs = [json.loads(value)["cost_usd"] for (value,) in db.execute("SELECT value FROM responses")]
    # cost is exact: every paid call once, at the fake's prices (1e-6 per input token, 2e-6 per output token)
    tokens = summary["tokens"]
    assert summary["cost_usd"] == pytest.approx(tokens["prompt"] * 1e-6 + tokens["completion"] * 2e-6, rel=1e-9)
    assert summary["cost_usd"] == pytest.approx(sum(costs), rel=1e-9)
    assert summary["budget"]["usd"] == usd and summary["stopped_by"] == "usd"
    return code, summary, costs


def test_a_usd_budget_stops_the_search_with_enough_left_for_the_verdict(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    code, summary, _ = _budget_run(write_spec, tmp_path, usd=0.004)
    assert code == 0 and summary["winner"] is not None
    assert summary["trials"]["total"] < 30
    assert summary["cost_usd"] <= 0.004


def test_a_usd_budget_is_never_exceeded_by_more_than_the_calls_in_flight(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # less than one chunk of dev calls: the client's own check stops the calls mid-chunk
    code, summary, costs = _budget_run(write_spec, tmp_path, usd=0.0001)
    assert code == 3 and summary["winner"] is None
    assert 0.0001 <= summary["cost_usd"] <= 0.0001 + 4 * max(costs)


def test_a_budget_spent_during_the_test_verdict_is_still_reported(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # the two warm-start trials take 60 calls; scoring their configs on 18 test examples takes 36 more
    spec = write_spec(rows=60, budget={"trials": 30, "calls": 80}, search_space={"pruner": "none"})
    out = tmp_path / "out"
    code = cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"])
    assert (out / "summary.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert code in (0, 3) and summary["stopped_by"] == "calls"
    assert summary["llm_calls"]["made"] <= 80


def test_a_self_hosted_proposer_is_called_through_the_client_retried_counted_and_cached(tmp_path: Path) -> None:
    # DSPy's proposer calls go through migrator's client: the 429s it gets are retried,
    # every attempt counts in the run's calls, and a rerun asks the proposer nothing.
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(30)))
    spec, out = tmp_path / "migration.yaml", tmp_path / "out"
    with LoopbackServer(FaultPlan(rates={"rate_limit": 0.3}, seed=5)) as server:
        proposer = {"model": "openai/fault-echo", "api_base": server.api_base, "api_key_env": KEY_ENV}
        space = {"prompt": {"proposer": proposer, "rewrites": 2}, "demos": {"k": [0]}}
        spec.write_text(yaml.safe_dump(server_spec(server.api_base, str(data), search_space=space, budget={"trials": 2})))
        seen = []
        for _ in ("first", "rerun"):
            before = len(server.attempts)
            assert cli.main(["run", str(spec), "--out", str(out), "--quiet", "--no-tracking"]) == 0
            seen.append(server.attempts[before:])
    summary = json.loads((out / "summary.json").read_text())
    asked = [a for a in seen[0] if a.body and a.body.get("model") == "fault-echo"]
    assert asked and any(a.fault == "rate_limit" for a in asked), "the proposer was asked, and refused at times"
    assert not [a for a in seen[1] if a.body and a.body.get("model") == "fault-echo"]  # its replies are cached
    assert summary["llm_calls"]["sent"] == len(seen[1]) == 0
    # two rewrites for each of the two target families: none lost, each accepted or rejected with a
    # reason (a failed proposal is asked again in the other framing: that attempt is listed too)
    rewrites = [c for c in summary["candidates"] if c["origin"].get("kind") == "rewrite"]
    retried = [r for r in summary["rejected_candidates"] if r["reason"].endswith("; asked again in another framing")]
    assert len(summary["rejected_candidates"]) - len(retried) + len(rewrites) == 2 * 2
    assert all(r["origin"]["framing"] == "rewrite" for r in retried)


def test_every_attempt_sent_to_the_provider_is_counted(tmp_path: Path) -> None:
    summary, server, _ = _run(tmp_path, "flaky", FaultPlan(rates={"rate_limit": 0.2, "server_error": 0.1}, seed=2))
    calls = summary["llm_calls"]
    assert calls["retried"] > 0
    assert calls["sent"] == len(server.attempts) == calls["made"] + calls["retried"] + calls["failed"]
    assert summary["budget"]["spent"]["calls"] == len(server.attempts)
