"""The recorded grid behind benchmarks/search_efficiency.py still matches the shipped code.

A change to how prompts are rendered or requests are keyed would silently turn the
recording into misses; these tests replay it (on a copy, so the committed file is not
touched) and fail if any grid request is not in the recording.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from grid import CACHE, grid_configs, load  # noqa: E402
from search_efficiency import ReplayClient, calls_to_target, replay  # noqa: E402

from migrator.evaluate import evaluate, summarize  # noqa: E402
from migrator.llm import ResponseCache  # noqa: E402


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> ResponseCache:
    copy = tmp_path_factory.mktemp("grid") / CACHE.name
    shutil.copyfile(CACHE, copy)
    return ResponseCache(copy)


def test_every_grid_config_is_in_the_recording(recording: ResponseCache) -> None:
    prepared, setup = load()
    configs = grid_configs(setup)
    assert len(configs) == 112
    examples = list(prepared.splits.dev) + list(prepared.splits.test)
    client = ReplayClient(recording)
    scores = {}
    for config in configs:
        template = setup.prompts[config.prompt_id].template
        results = asyncio.run(evaluate(client, config, setup.endpoints[config.model], template, examples, setup.metric, setup.demos_for(config)))
        assert not [r.error for r in results if r.error], config.label()
        scores[config] = summarize(results).score
    assert client.stats.made == len(configs) * len(examples)  # each request recorded once
    # the recording is of real models: scores differ across configs (0 for gemma's legacy prompt)
    assert min(scores.values()) < 0.1 < 0.85 < max(scores.values())


def test_a_replayed_search_pays_only_for_new_requests(recording: ResponseCache) -> None:
    _, setup = load()
    trace = replay(setup, recording, sampler=setup.space.sampler, pruner=setup.space.pruner, seed=0, trials=8)
    calls = [c for c, *_ in trace]
    assert calls == sorted(calls)
    # the legacy prompt on qwen is scored on all of dev; on gemma it scores 0 of the first
    # chunk where qwen scored 8 of 8, so that hopeless warm start stops there
    assert calls[0] == len(setup.dev) and trace[0][3] == "complete"
    assert calls[1] == len(setup.dev) + setup.space.chunk_size and trace[1][3] == "pruned"
    configs = [config for _, config, *_ in trace]
    assert len(set(configs)) == len(configs)  # the planner never proposes a config twice
    assert calls[-1] <= 8 * len(setup.dev)
    assert calls_to_target(trace, 0.0) == calls[0]
