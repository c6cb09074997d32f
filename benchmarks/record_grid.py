"""Record, once, every grid config's replies from the local models (real llama.cpp calls).

    python benchmarks/record_grid.py   # ~80 min the first time; a re-run makes only missing calls

Writes benchmarks/data/sentiment_grid_cache.db (migrator's response cache: request key ->
reply, so the shipped search code can replay against it), then derives sentiment_grid.csv
from it (one row per config x example with the score; the same code as the replay's).
Re-running only fills in what is missing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import CACHE, grid_configs, load, seal_cache
from search_efficiency import grid_truth

from migrator.evaluate import evaluate
from migrator.llm import LiteLLMClient, ResponseCache
from migrator.local import LocalServer


async def _record(setup, client, configs, splits):  # type: ignore[no-untyped-def]
    # every config on dev first: an interrupted recording still replays calls-to-target
    for config, examples in ((c, split) for split in splits for c in configs):
        started = time.monotonic()
        template = setup.prompts[config.prompt_id].template
        results = await evaluate(client, config, setup.endpoints[config.model], template, examples, setup.metric, setup.demos_for(config))
        score = sum(r.score for r in results) / len(results)
        print(f"{config.label()} T={dict(config.params).get('temperature')}: {score:.3f} ({time.monotonic() - started:.0f}s)", flush=True)


def main() -> None:
    prepared, _ = load()
    models = [t.model.removeprefix("local/") for t in prepared.spec.targets]
    with LocalServer(models, log_dir=Path("benchmarks/results/logs")) as server:
        prepared, setup = load({f"local/{m}": server.api_base(m) for m in models})
        # one client per model: each llama.cpp server answers one request at a time
        clients = {m: LiteLLMClient(cache=ResponseCache(CACHE), concurrency=1, max_retries=2, timeout_s=120) for m in setup.endpoints}
        configs = grid_configs(setup)
        splits = [list(prepared.splits.dev), list(prepared.splits.test)]
        n_examples = sum(len(split) for split in splits)
        print(f"{len(configs)} configs x {n_examples} examples = {len(configs) * n_examples} calls", flush=True)
        by_model = [[c for c in configs if c.model == m] for m in setup.endpoints]

        async def run_all():  # type: ignore[no-untyped-def]
            await asyncio.gather(*[_record(setup, clients[part[0].model], part, splits) for part in by_model])

        started = time.monotonic()
        asyncio.run(run_all())
    made = sum(c.stats.made for c in clients.values())
    cached = sum(c.stats.cached for c in clients.values())
    print(f"made {made} calls, {cached} cached, in {time.monotonic() - started:.0f}s")
    for client in clients.values():
        if client.cache is not None:
            client.cache.close()
    cache = ResponseCache(CACHE)
    grid_truth(*load(), cache)  # the per-example table, written by the replay's own code
    cache.close()
    seal_cache()


if __name__ == "__main__":
    main()
