"""Speed-up of one study shared by N worker processes, against one process, measured in one run.

One command::

    python benchmarks/workers.py            # about 17 minutes: 1, 2, 4 and 8 workers, 32 trials of ~15 s
    python benchmarks/workers.py --smoke    # under a minute: 1 and 2 workers, 4 short trials; writes nothing

Every run is ``migrator run SPEC --workers N --storage URL --no-tracking --no-cache --quiet``
in a child process, timed from launch to exit: the whole migration, its start-up, the
search, the verdict on test and the output files. All runs share one throwaway PostgreSQL
server (``migrator.testing.PostgresServer``), each with a fresh database, and one loopback
OpenAI-compatible server (``migrator.testing.LoopbackServer``) that answers every request
after a fixed latency (1 s, from the address) with no concurrency limit.

The spec is the same for every N: seed 0, 32 trials, ``pruner: none`` (every trial scores
all of dev, so every trial costs the same), 2 targets x demos (k 0, 2, 4, 8 x 3 strategies)
x temperature (11 steps): 220 configs, far more than 32. A trial is ``--rounds`` chunks of
``--concurrency`` dev examples, ``chunk_size = concurrency``: each chunk is one round of
concurrent calls, so a trial lasts about ``rounds x latency``.

Reported per N:

- ``wall_s``: launch to exit, and ``speedup`` = wall(1) / wall(N) (target: >= 0.8 x N);
- ``search_s``: the search phase, first trial start to last trial end (Optuna's
  ``datetime_start`` / ``datetime_complete``), and its speed-up. The verdict on test runs
  in the run process alone, after the search, so it is not in this figure;
- ``startup``: seconds from launch to each process's registration in the study and to its
  first trial (the spawned workers import migrator, litellm and optuna on their own);
- the checks: trials complete, configs scored twice (must be 0), the processes that ran
  trials, worker exit codes and tracebacks in ``DIR/logs/worker-*.log``.

Results go to ``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from migrator.testing import LoopbackServer, PostgresServer, make_sentiment_rows, run_env, server_spec  # noqa: E402

KEY = "sk-bench-workers-0123456789abcdef"
FULL: dict[str, Any] = {
    "workers": [1, 2, 4, 8],
    "trials": 32,
    "latency": 1.0,
    "rounds": 15,
    "concurrency": 8,
    "train": 32,
    "test": 8,
}
SMOKE: dict[str, Any] = {
    "workers": [1, 2],
    "trials": 4,
    "latency": 0.05,
    "rounds": 3,
    "concurrency": 4,
    "train": 16,
    "test": 4,
}


def write_spec(folder: Path, api_base: str, trials: int, rounds: int, concurrency: int, train: int, test: int) -> Path:
    """The benchmark's migration: ``rounds x concurrency`` dev examples, every trial scored on all of them."""
    folder.mkdir(parents=True, exist_ok=True)
    dev = rounds * concurrency
    rows = train + dev + test
    space = {
        "temperature": {"low": 0.0, "high": 1.0, "step": 0.1},
        "demos": {"k": [0, 2, 4, 8], "strategies": ["random", "stratified", "knn"]},
        "pruner": "none",
        "chunk_size": concurrency,
        "concurrency": concurrency,
        # a slow reply on a busy machine is waited for, not retried: every trial costs the same
        "timeout_s": 60.0,
    }
    data = folder / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(rows)))
    spec = server_spec(
        api_base, str(data), name="workers", search_space=space, budget={"trials": trials, "finalists": 1}
    )
    spec["dataset"]["split"] = {"train": train / rows, "dev": dev / rows, "test": test / rows}
    path = folder / "migration.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_facts(url: str) -> dict[str, Any]:
    """What the study says about the run: trial states, duplicates, who ran what and when."""
    import optuna
    import sqlalchemy as sa

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (summary,) = optuna.study.get_all_study_summaries(url, include_best_trial=False)
    trials = optuna.load_study(study_name=summary.study_name, storage=url).get_trials(deepcopy=False)
    requeued = {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}
    finished = [t for t in trials if t.state.is_finished() and t.number not in requeued]
    scored = [json.dumps(t.params, sort_keys=True) for t in finished]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    by_worker: dict[str, list[Any]] = {}
    for t in finished:
        by_worker.setdefault(t.user_attrs["worker"]["id"], []).append(t)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT worker, role, started FROM migrator_workers")).all()
    engine.dispose()
    spans = [_span(t) for t in finished]
    return {
        "states": states,
        "requeued": len(requeued),
        "duplicates": len(scored) - len(set(scored)),
        "trial_s": [end - start for start, end in spans],
        "first_start": min(start for start, _ in spans),
        "last_end": max(end for _, end in spans),
        "trials_per_worker": sorted((len(ts) for ts in by_worker.values()), reverse=True),
        "processes": [
            {
                "role": r.role,
                "registered": r.started,
                "trials": len(by_worker.get(r.worker, [])),
                "first_trial": min((_span(t)[0] for t in by_worker.get(r.worker, [])), default=None),
            }
            for r in rows
        ],
    }


def _span(trial: Any) -> tuple[float, float]:
    """A finished trial's start and end, in epoch seconds like ``time.time()``."""
    assert trial.datetime_start is not None and trial.datetime_complete is not None
    return trial.datetime_start.timestamp(), trial.datetime_complete.timestamp()


def worker_logs(out: Path) -> list[str]:
    """The worker logs that hold a traceback or an error, with their last lines."""
    bad = []
    for log in sorted((out / "logs").glob("worker-*.log")):
        text = log.read_text(errors="replace")
        if "Traceback" in text or "error" in text.lower():
            bad.append(f"{log.name}: " + " | ".join(text.strip().splitlines()[-3:]))
    return bad


def run_once(spec: Path, out: Path, url: str, workers: int, server: LoopbackServer) -> dict[str, Any]:
    """One ``migrator run --workers N``, timed from launch to exit, and what its study says."""
    cmd = [sys.executable, "-m", "migrator", "run", str(spec), "--out", str(out), "--workers", str(workers)]
    cmd += ["--storage", url, "--no-tracking", "--no-cache", "--quiet"]
    env = {**run_env(KEY), "PYTHONWARNINGS": "ignore"}
    served = server.served
    launched = time.time()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=spec.parent, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"migrator run --workers {workers} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    facts = study_facts(url)
    summary = json.loads((out / "summary.json").read_text())
    processes = facts.pop("processes")
    spawned = [p for p in processes if p["role"] == "worker"]
    run = next(p for p in processes if p["role"] == "run")

    def since(at: float | None) -> float | None:
        return None if at is None else round(at - launched, 2)

    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "search_s": round(facts["last_end"] - facts["first_start"], 2),
        "before_search_s": since(facts["first_start"]),
        "after_search_s": round(launched + wall - facts["last_end"], 2),
        "trials": facts["states"],
        "requeued": facts["requeued"],
        "duplicates": facts["duplicates"],
        "trial_s_median": round(statistics.median(facts["trial_s"]), 2),
        "processes_with_trials": sum(1 for p in processes if p["trials"]),
        "trials_per_process": facts["trials_per_worker"],
        "startup": {
            "run_registered_s": since(run["registered"]),
            "run_first_trial_s": since(run["first_trial"]),
            "workers_registered_s": sorted(since(p["registered"]) for p in spawned),
            "workers_first_trial_s": sorted(s for p in spawned if (s := since(p["first_trial"])) is not None),
        },
        "calls_served": server.served - served,
        # the study's count, every process's calls (summary's llm_calls are the run process's own)
        "calls_spent": summary["budget"]["spent"]["calls"],
        "splits": summary["splits"],
        "warnings": [line for line in proc.stderr.splitlines() if "warning" in line.lower()],
        "worker_log_errors": worker_logs(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="speed-up of N worker processes on one study against one")
    parser.add_argument(
        "--smoke", action="store_true", help="1 and 2 workers, 4 short trials: checks it runs, writes nothing"
    )
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (default 1 2 4 8)")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--latency", type=float, help="seconds per call (default 1)")
    parser.add_argument("--rounds", type=int, help="chunks of concurrent calls per trial (default 15)")
    parser.add_argument("--concurrency", type=int, help="calls per chunk (default 8)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/workers.json; none with --smoke")
    parser.add_argument("--keep", action="store_true", help="keep the runs' output directories")
    args = parser.parse_args()
    setting = dict(SMOKE if args.smoke else FULL)
    for key in ("workers", "trials", "latency", "rounds", "concurrency"):
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    if 1 not in setting["workers"]:
        parser.error("--workers must include 1: the speed-ups are against it")
    out_file = args.out or (None if args.smoke else HERE / "results" / "workers.json")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="migrator-workers-"))
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    runs: list[dict[str, Any]] = []
    try:
        with PostgresServer() as pg, LoopbackServer() as server:
            spec = write_spec(
                work / "project", f"{server.base_url}/lat/{setting['latency']}/v1", setting["trials"],
                setting["rounds"], setting["concurrency"], setting["train"], setting["test"],
            )  # fmt: skip
            for n in setting["workers"]:
                run = run_once(spec, work / f"out-{n}", pg.create_database(f"workers_{n}"), n, server)
                runs.append(run)
                print(
                    f"{n} worker(s): {run['wall_s']:.1f}s wall, search {run['search_s']:.1f}s, "
                    f"{run['processes_with_trials']} processes ran trials {run['trials_per_process']}, "
                    f"trials {run['trials']}, duplicates {run['duplicates']}",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept the runs in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    one = next(r for r in runs if r["workers"] == 1)
    for r in runs:
        r["speedup"] = round(one["wall_s"] / r["wall_s"], 2)
        r["search_speedup"] = round(one["search_s"] / r["search_s"], 2)
        r["target_met"] = r["speedup"] >= 0.8 * r["workers"]
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "setting": setting,
        "wall_s": round(time.monotonic() - started, 1),
        "runs": runs,
    }
    report(result)
    problems = [f"{r['workers']} workers: {what}" for r in runs for what in problems_of(r, setting["trials"])]
    for problem in problems:
        print(f"problem: {problem}")
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {out_file} after {result['wall_s']:.0f}s")
    else:
        print(f"\nsmoke run done after {result['wall_s']:.0f}s (nothing written; pass --out to keep it)")
    if problems:
        raise SystemExit(1)


def problems_of(run: dict[str, Any], trials: int) -> list[str]:
    """What went wrong in one run: lost or duplicated trials, uncounted calls, workers that failed."""
    problems: list[str] = [f"{run['duplicates']} configs scored twice"] if run["duplicates"] else []
    if run["trials"].get("COMPLETE", 0) != trials or run["requeued"]:
        problems.append(f"trials {run['trials']}, {run['requeued']} queued again")
    if run["calls_served"] != run["calls_spent"]:
        problems.append(f"the server answered {run['calls_served']} calls, the study counted {run['calls_spent']}")
    return [*problems, *run["warnings"], *run["worker_log_errors"]]


def report(result: dict[str, Any]) -> None:
    print(
        f"\n{'N':>2} {'wall s':>8} {'speed-up':>9} {'target':>7} {'search s':>9} {'search speed-up':>16} {'ran trials':>11} {'1st trial of workers, s':>24}"
    )
    for r in result["runs"]:
        firsts = r["startup"]["workers_first_trial_s"]
        spread = f"{min(firsts):.1f}-{max(firsts):.1f}" if firsts else "-"
        print(
            f"{r['workers']:>2} {r['wall_s']:>8.1f} {r['speedup']:>8.2f}x {0.8 * r['workers']:>6.1f}x {r['search_s']:>9.1f} "
            f"{r['search_speedup']:>15.2f}x {r['processes_with_trials']:>11} {spread:>24}"
        )


if __name__ == "__main__":
    main()
