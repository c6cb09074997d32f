"""Reflections: prompts the proposer writes during the search from the best config's failures on train."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import InputError
from migrator.llm import Limits, LiteLLMClient, ResponseCache
from migrator.migration import MigrationResult, prepare, run_migration
from migrator.outputs import summary_dict
from migrator.outputs.report import render_report
from migrator.search import Planner, Space
from migrator.spec import load_spec
from migrator.testing import base_spec


def _client(tmp: Path | None = None) -> LiteLLMClient:
    cache = ResponseCache(tmp / "cache.db") if tmp else None
    return LiteLLMClient(cache=cache, limits=Limits(), backoff_s=0.001, max_retries=0)


def _spec(write_spec: Callable[..., Path], proposer: str, *, reflections: int = 1, trials: int = 6) -> Path:
    # fake/chatty answers right only when the prompt states the output format: the legacy prompt
    # does not, no transform is searched, so only a reflection can repair it
    return write_spec(
        targets=["fake/chatty"],
        search_space={
            "prompt": {"proposer": proposer, "reflections": reflections, "transforms": []},
            "demos": {"k": [0, 2], "strategies": ["random"]},
            "max_retries": 0,
        },
        budget={"trials": trials},
    )


def _run(spec: Path, client: Any, tmp: Path, **kwargs: Any) -> MigrationResult:
    return run_migration(prepare(load_spec(spec)), client, storage=f"sqlite:///{tmp / 'study.db'}", **kwargs)


def _notices(events: list[tuple[str, Any]]) -> list[str]:
    return [data["what"] for kind, data in events if kind == "notice"]


def test_a_reflection_written_during_the_search_repairs_the_migration(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = _spec(write_spec, "fake/proposer")
    events: list[tuple[str, Any]] = []
    result = _run(spec, _client(tmp_path), tmp_path, on_progress=lambda kind, data: events.append((kind, data)))

    written = result.prompts["reflect-1"]
    assert written.origin["kind"] == "reflection" and written.origin["framing"] == "gepa"
    assert written.origin["parent"].startswith("fake/chatty")  # the best config it reflected on
    assert "exactly one of: positive, negative" in written.template.text()
    assert "{{ review }}" in written.template.text()  # the user turn is kept
    # tried at once, with the rest of the best config; the trials before it could not use it
    trials = sorted(result.search.trials, key=lambda o: o.number)
    first = next(i for i, o in enumerate(trials) if o.config.prompt_id == "reflect-1")
    assert first >= 3 and all(o.summary.score == 0.0 for o in trials[:first])
    assert result.verdict.baseline is not None and result.verdict.baseline.test.score == 0.0
    assert result.verdict.winner is not None and result.verdict.winner.config.prompt_id == "reflect-1"
    assert result.verdict.winner.test.score == 1.0
    assert _notices(events)[-2:] == [
        f"reflect-1: the proposer reflects on how {written.origin['parent']} did on train",
        "reflect-1: accepted: tried next with the rest of that config",
    ]
    page = render_report(result, summary_dict(result, {}, {}))
    assert "reflect-1" in page and "reflection (" in page

    # resumed: the slot is read from the study, not written again; no call is made
    again = _run(spec, _client(tmp_path), tmp_path)
    assert again.stats["made"] == 0
    assert again.prompts["reflect-1"].template.text() == written.template.text()


def test_a_shy_proposer_is_asked_again_in_the_direct_framing(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    result = _run(_spec(write_spec, "fake/proposer-shy"), _client(), tmp_path, on_progress=lambda k, d: events.append((k, d)))
    assert result.prompts["reflect-1"].origin["framing"] == "direct"
    (refused,) = result.rejected
    assert refused.origin["kind"] == "reflection" and refused.origin["framing"] == "gepa"
    assert refused.reason == "apologises or refuses instead of giving an instruction; asked again in another framing"
    assert _notices(events)[-1] == (
        "reflect-1: accepted: tried next with the rest of that config "
        "(after 1 rejected: apologises or refuses instead of giving an instruction)"
    )
    assert result.verdict.winner is not None and result.verdict.winner.config.prompt_id == "reflect-1"


def test_a_slot_no_proposal_fills_is_never_tried(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    result = _run(_spec(write_spec, "fake/proposer-refuse"), _client(), tmp_path, on_progress=lambda k, d: events.append((k, d)))
    assert "reflect-1" not in result.prompts
    assert all(o.config.prompt_id == "original" for o in result.search.trials)
    assert [r.origin["framing"] for r in result.rejected] == ["gepa", "direct"]
    assert _notices(events)[-1].startswith("reflect-1: no instruction accepted (apologises or refuses")


def test_a_second_reflection_reads_another_slice_and_builds_on_the_first(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    result = _run(_spec(write_spec, "fake/proposer", reflections=2, trials=10), _client(), tmp_path)
    first, second = result.prompts["reflect-1"], result.prompts["reflect-2"]
    # by the second checkpoint the first reflection's config is the best: the second reflects on it
    assert "reflect-1" in second.origin["parent"]
    # the first read the legacy prompt's mistakes; the second, its own config answering every
    # example of another slice right
    assert "(from 0 mistakes)" not in first.template.text() and "(from 0 mistakes)" in second.template.text()
    assert second.origin["framing"] == "gepa" and not result.rejected
    assert sum(o.config.prompt_id == "reflect-2" for o in result.search.trials) >= 1


def test_under_a_calls_budget_the_reflection_comes_before_the_calls_run_out(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # 200 trials would never reach their checkpoint: the calls budget ends the search first
    spec = write_spec(
        targets=["fake/chatty"],
        search_space={
            "prompt": {"proposer": "fake/proposer", "reflections": 1, "transforms": []},
            "demos": {"k": [0, 2, 4], "strategies": ["random", "stratified"]},
            "max_retries": 0,
        },
        budget={"trials": 200, "calls": 450, "finalists": 1},
    )
    result = _run(spec, _client(), tmp_path)
    assert result.search.stopped_by == "calls"
    assert any(o.config.prompt_id == "reflect-1" for o in result.search.trials)
    assert result.verdict.winner is not None and result.verdict.winner.config.prompt_id == "reflect-1"
    assert result.spent.calls <= 450


@pytest.mark.parametrize(
    "prompt, extra",
    [
        ({"reflections": 1}, {}),  # no proposer
        ({"reflections": 1, "proposer": "fake/proposer"}, {"sampler": "tpe"}),
    ],
)
def test_reflections_the_search_cannot_offer_are_refused(
    write_spec: Callable[..., Path], prompt: dict[str, Any], extra: dict[str, Any]
) -> None:
    spec = write_spec(search_space={"prompt": {**prompt, "transforms": []}, **extra})
    with pytest.raises(InputError, match=r"search_space\.prompt\.reflections: needs search_space\.prompt\.proposer"):
        load_spec(spec)


def test_no_reflections_keeps_the_spec_hash(write_spec: Callable[..., Path]) -> None:
    plain = load_spec(write_spec()).spec_hash()
    space = base_spec()["search_space"]
    assert load_spec(write_spec(search_space={**space, "prompt": {"transforms": [], "reflections": 0}})).spec_hash() == plain
    with_one = {**space, "prompt": {"transforms": [], "reflections": 1, "proposer": "fake/proposer"}}
    assert load_spec(write_spec(search_space=with_one)).spec_hash() != plain


def test_the_planner_never_offers_an_unwritten_slot() -> None:
    space = Space(["m"], ["original", "reflect-1"], [0, 2], ["random"], {}, {})
    planner = Planner(space.points())
    observed: list[tuple[dict[str, Any], float, int, bool]] = []
    for seed in range(4):
        choice = planner.propose(observed, seed=seed, unavailable={"reflect-1"})
        if choice is None:
            break
        assert choice["prompt"] == "original"
        observed.append((choice, 0.5, 10, True))
    assert planner.propose(observed, seed=9, unavailable={"reflect-1"}) is None
    written = planner.propose(observed, seed=9)
    assert written is not None and written["prompt"] == "reflect-1"
