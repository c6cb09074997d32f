"""Search efficiency on real model outputs: migrator's search vs random, full grid, TPE alone.

    python benchmarks/search_efficiency.py [--seeds 50] [--trials 60]   # about 5 minutes

Replays strategies against the grid recorded by record_grid.py (real replies of the
two local models). Each strategy runs the shipped search code (migrator.search.run_search)
with a client that answers from the recording and counts *distinct* requests: the calls
a live run would have paid for (the response cache makes repeats free for every strategy).

Reports LLM calls needed to reach 98% of the grid's best dev score (median and spread
over seeds) and the test score of the winner each strategy would pick at fixed call
budgets. Writes benchmarks/results/search_efficiency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import CACHE, TABLE, grid_configs, load, seal_cache

from migrator.evaluate import Config, evaluate, request_seed, summarize
from migrator.llm import CallStats, LLMRequest, LLMResponse, MemoryLedger, ResponseCache
from migrator.search import run_search

TARGET = 0.98
BUDGETS = (250, 500, 1000, 2000)


RECORDED_SEED = request_seed(0)


def _as_recorded(params: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, RECORDED_SEED if k == "seed" else v) for k, v in params)


class GridMiss(RuntimeError):
    pass


class ReplayClient:
    """Answers from the recorded cache; a first-seen request counts as one paid call."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.stats = CallStats()
        self.ledger = MemoryLedger()
        self.seen: set[str] = set()

    async def complete(self, request: LLMRequest) -> LLMResponse:
        # A replay varies the spec's seed to vary the search; the replies are those recorded
        # with seed 0's request seed, as a rerun of each search without its cache would not be.
        key = replace(request, params=_as_recorded(request.params)).cache_key()
        hit = self.cache.get(key)
        if hit is None:
            raise GridMiss(f"not in the recorded grid: {request.endpoint.model} {dict(request.params)}")
        if key in self.seen:
            self.stats.cached += 1
            return LLMResponse(**{**hit, "cached": True})
        self.seen.add(key)
        self.ledger.reserve_call(None, None)
        self.stats.made += 1
        return LLMResponse(**{**hit, "cached": False})


def _scores(setup: Any, config: Config, examples: Any, client: ReplayClient, rows: list[list[Any]], split: str) -> float:
    template = setup.prompts[config.prompt_id].template
    results = asyncio.run(evaluate(client, config, setup.endpoints[config.model], template, examples, setup.metric, setup.demos_for(config)))
    rows += [[config.label(), split, r.example_id, r.score, r.output.strip()[:80]] for r in results]
    return summarize(results).score


def grid_truth(prepared: Any, setup: Any, cache: ResponseCache) -> dict[Config, dict[str, float]]:
    """Every grid config's dev and test score; also writes the per-example table (CSV)."""
    truth = {}
    rows: list[list[Any]] = []
    for config in grid_configs(setup):
        client = ReplayClient(cache)
        truth[config] = {
            "dev": _scores(setup, config, prepared.splits.dev, client, rows, "dev"),
            "test": _scores(setup, config, prepared.splits.test, client, rows, "test"),
        }
    with TABLE.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["config", "split", "example_id", "score", "output"])
        writer.writerows(rows)
    return truth


def replay(setup: Any, cache: ResponseCache, *, sampler: str, pruner: str, seed: int, trials: int) -> list[tuple[int, Config, float, str]]:
    """(cumulative paid calls, config, dev score, state) after each trial."""
    space = setup.space.model_copy(update={"sampler": sampler, "pruner": pruner})
    spec = setup.spec.model_copy(update={"seed": seed, "search_space": space, "budget": setup.spec.budget.model_copy(update={"trials": trials})})
    run_setup = replace(setup, spec=spec)
    client = ReplayClient(cache)
    trace: list[tuple[int, Config, float, str]] = []
    with asyncio.Runner() as runner:
        run_search(
            run_setup,
            client,
            runner,
            storage="memory",
            study_name=f"replay-{sampler}-{pruner}-{seed}",
            callbacks=[lambda o: trace.append((client.stats.made, o.config, o.summary.score, o.state))],
        )
    return trace


def calls_to_target(trace: list[tuple[int, Config, float, str]], target: float) -> int | None:
    for calls, _, score, state in trace:
        if state == "complete" and score >= target - 1e-9:
            return calls
    return None


def pick_at_budget(trace: list[tuple[int, Config, float, str]], budget: int) -> Config | None:
    done = [(score, -calls, config) for calls, config, score, state in trace if state == "complete" and calls <= budget]
    return max(done, key=lambda d: (d[0], d[1]))[2] if done else None


def uniform_random_calls(truth: dict[Config, dict[str, float]], target: float, n_dev: int, seed: int) -> int:
    """Textbook random search: configs in a random order, no warm start, each scored on all of dev."""
    import random

    order = list(truth)
    random.Random(seed).shuffle(order)
    for i, config in enumerate(order, 1):
        if truth[config]["dev"] >= target - 1e-9:
            return i * n_dev
    return len(order) * n_dev


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    if not CACHE.is_file():
        sys.exit("no recorded grid: run python benchmarks/record_grid.py first")
    prepared, setup = load()
    cache = ResponseCache(CACHE)
    truth = grid_truth(prepared, setup, cache)
    best_dev = max(t["dev"] for t in truth.values())
    target = TARGET * best_dev
    n_dev = len(prepared.splits.dev)
    grid_calls = len(truth) * n_dev
    print(f"grid: {len(truth)} configs, best dev {best_dev:.3f} (target {target:.3f}); full grid costs {grid_calls} dev calls")
    shipped = (setup.space.sampler, setup.space.pruner)  # the spec leaves both at their defaults
    strategies = {
        f"migrator as shipped ({shipped[0]} planner + {shipped[1]} pruning)": shipped,
        "linear planner, no pruning": ("linear", "none"),
        "TPE + improvement pruning": ("tpe", "improvement"),
        "TPE + Wilcoxon pruning (the default before 2026-12-01)": ("tpe", "wilcoxon"),
        "TPE + successive halving": ("tpe", "halving"),
        "TPE, no pruning": ("tpe", "none"),
        "random search": ("random", "none"),
    }
    migrator_row = next(iter(strategies))
    report: dict[str, Any] = {"grid": {"configs": len(truth), "best_dev": best_dev, "target_dev": target, "calls": grid_calls}, "strategies": {}}
    def best(configs: list[Config]) -> dict[str, Any]:
        top = max(configs, key=lambda c: (truth[c]["dev"], -configs.index(c)))
        return {"config": f"{top.label()} T={dict(top.params).get('temperature')}", **truth[top]}

    original_only = [c for c in truth if c.prompt_id == "original" and c.demos == 0]
    report["candidates"] = {"original prompt only": best(original_only), "all candidates": best(list(truth))}
    for name, row in report["candidates"].items():
        print(f"{name}: best dev {row['dev']:.3f}, its test {row['test']:.3f} ({row['config']})")
    warm_calls: dict[str, int] = {}
    for name, (sampler, pruner) in strategies.items():
        started = time.monotonic()
        needed, at_budget = [], {b: [] for b in BUDGETS}
        for seed in range(args.seeds):
            trace = replay(setup, cache, sampler=sampler, pruner=pruner, seed=seed, trials=args.trials)
            n = calls_to_target(trace, target)
            needed.append(n if n is not None else float("inf"))
            for b in BUDGETS:
                config = pick_at_budget(trace, b)
                recorded = replace(config, params=_as_recorded(config.params)) if config is not None else None
                at_budget[b].append(truth[recorded]["test"] if recorded is not None else 0.0)
        warm_calls.setdefault(name, trace[len(setup.endpoints) - 1][0])
        finite = [n for n in needed if n != float("inf")]
        row = {
            "calls_to_target_median": statistics.median(needed) if finite else None,
            "calls_to_target_min": min(finite) if finite else None,
            "calls_to_target_max": max(needed) if finite else None,
            "reached": f"{len(finite)}/{len(needed)}",
            "test_at_budget_mean": {b: statistics.mean(v) for b, v in at_budget.items()},
            "seconds": round(time.monotonic() - started, 1),
        }
        report["strategies"][name] = row
        print(name, json.dumps(row))
    uniform = [uniform_random_calls(truth, target, n_dev, seed) for seed in range(1000)]
    report["strategies"]["random order over the grid, no warm start (1000 shuffles)"] = {
        "calls_to_target_median": statistics.median(uniform),
        "calls_to_target_min": min(uniform),
        "calls_to_target_max": max(uniform),
        "reached": "1000/1000",
    }
    # What a strategy told the answer would pay: its warm start, then a qualifying config.
    report["lower_bound"] = {name: warm_calls[name] + n_dev for name in (migrator_row, "random search")}
    ref = report["strategies"][migrator_row]["calls_to_target_median"]
    rnd = report["strategies"]["random search"]["calls_to_target_median"]
    if ref and rnd and rnd != float("inf"):
        report["ratio_vs_random"] = ref / rnd
        report["lower_bound_ratio_vs_random"] = report["lower_bound"][migrator_row] / rnd
        # the share of the gap between random search (1) and a search told the answer that migrator closes
        report["gap_closed"] = (1 - report["ratio_vs_random"]) / (1 - report["lower_bound_ratio_vs_random"])
    if ref:
        report["ratio_vs_grid"] = ref / grid_calls
    keys = ("ratio_vs_random", "ratio_vs_grid", "lower_bound", "lower_bound_ratio_vs_random", "gap_closed")
    print(json.dumps({k: report.get(k) for k in keys}))
    out = Path(__file__).resolve().parent / "results" / "search_efficiency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    cache.close()
    seal_cache()


if __name__ == "__main__":
    main()
