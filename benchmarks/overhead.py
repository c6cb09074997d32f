"""What migrator itself costs around the model calls: tracking, a cached rerun, memory.

One command::

    python benchmarks/overhead.py              # about 5 minutes
    python benchmarks/overhead.py --repeats 1 --skip-memory   # about 1 minute

Every run is the ``migrator run`` CLI in a child process against the loopback
fixed-latency server (``fixed_latency_server.py``), timed from the parent, its peak
memory taken from the child's own resource usage (``os.wait4``). Three measurements:

1. **Tracking.** A small migration (60 reviews, 2 targets, 10 trials, 0.2 s per call)
   with MLflow tracking on and with ``--no-tracking``, alternated, each on a fresh
   output directory; the ratio of the medians of whole-run wall time (target <= 1.10).
   Where the difference goes: ``-X importtime`` of every run and, with ``--profile``,
   one more tracking-on run under cProfile timing migrator.outputs.tracking's calls on the main
   thread. MLflow's own work runs on the tracker's worker thread, which cProfile does
   not see: what is left on the main thread is queueing, waiting for the parent run's id
   and draining the queue in ``finish``.
2. **Cached rerun.** The same command again on a finished output directory: every
   reply comes from the cache (target: 0 calls made, under 10 s wall).
3. **Memory.** 200 trials x 200 dev examples (400 reviews; pruner ``none``) at
   latency 0, tracking on: the child's max RSS (target under 1 GB).

Results go to ``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from fixed_latency_server import start_server  # noqa: E402

from migrator.testing import make_sentiment_rows  # noqa: E402

SMALL = {"rows": 60, "trials": 10, "latency": 0.2}
LARGE = {"rows": 400, "trials": 200, "latency": 0.0}
IMPORTS = ("mlflow", "litellm", "optuna", "dspy", "sklearn", "matplotlib", "sqlalchemy", "aiohttp", "pandas", "scipy")


def write_spec(root: Path, api: str, rows: int, trials: int, **space: Any) -> Path:
    """A migration of reviews whose legacy model and two targets live on the fixed-latency server."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(rows)))
    spec = {
        "name": "overhead",
        "app": {
            "model": "openai/legacy",
            "api_base": api,
            "messages": [
                {"role": "system", "content": "Classify the sentiment of the review."},
                {"role": "user", "content": "Review: {{ review }}"},
            ],
            "params": {"temperature": 0.0, "max_tokens": 5},
        },
        "dataset": {"path": "reviews.jsonl", "id_field": "id", "expected_field": "label", "input_fields": ["review"]},
        "metric": {"name": "label", "labels": ["positive", "negative"]},
        "targets": [{"model": "openai/target-a", "api_base": api}, {"model": "openai/target-b", "api_base": api}],
        "search_space": {"demos": {"k": [0, 2]}, "chunk_size": 10, "concurrency": 8, **space},
        "budget": {"trials": trials},
        "seed": 0,
    }
    path = root / "migration.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_cli(args: list[str], env: dict[str, str], python_flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``migrator`` in a child; its wall time, CPU time, max RSS, exit code and stderr."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *python_flags, "-m", "migrator", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "max_rss_mb": usage.ru_maxrss / 1024, "exit": proc.returncode, "stderr": stderr}


def import_times(stderr: str) -> dict[str, float]:
    """Seconds spent importing each top-level package, from ``-X importtime`` output."""
    out: dict[str, float] = {}
    for match in re.finditer(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", stderr):
        cumulative_us, indent, name = int(match.group(1)), len(match.group(2)), match.group(3).split(".")[0]
        if indent == 1 and name in IMPORTS:
            out[name] = out.get(name, 0.0) + cumulative_us / 1e6
    return out


def summary_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def _profiled() -> dict[tuple[str, int, str], str]:
    """What the profile is read for, keyed as cProfile keys a function: (file, first line, name).

    The keys come from the functions themselves, so they follow the code wherever it moves.
    """
    from migrator import cli
    from migrator.migration import run_migration
    from migrator.outputs.report import write_report
    from migrator.outputs.tracking import MlflowTracker
    from migrator.outputs.tracking._worker import Worker

    labels: dict[Any, str] = {
        MlflowTracker.start: "tracker.start",
        MlflowTracker.log_trial: "tracker.log_trial (all trials)",
        MlflowTracker.log_candidates: "tracker.log_candidates",
        Worker.wait_for_first_task: "waiting for the parent run id",
        MlflowTracker.finish: "tracker.finish (incl. draining the worker)",
        run_migration: "run_migration",
        write_report: "write_report",
        cli.main: "cli.main",
    }
    return {(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name): label for f, label in labels.items()}


def tracking_profile(profile: Path) -> dict[str, float]:
    """Cumulative main-thread seconds of migrator.outputs.tracking's calls and the run's other phases."""
    stats = pstats.Stats(str(profile))
    wanted = _profiled()
    out: dict[str, float] = {}
    for key, row in stats.stats.items():  # type: ignore[attr-defined]
        if key in wanted:
            out[wanted[key]] = round(row[3], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="overhead of tracking, cached reruns and memory of a large search")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each tracking mode")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "overhead.json")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the runs' output directories")
    parser.add_argument("--profile", action="store_true", help="add a tracking-on run under cProfile (about 50 s)")
    args = parser.parse_args()

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="migrator-overhead-"))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONWARNINGS": "ignore"}
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "small": SMALL, "large": LARGE}
    with start_server() as base:
        # 1. tracking on vs off, alternated
        spec = write_spec(work / "small", f"{base}/lat/{SMALL['latency']}/v1", SMALL["rows"], SMALL["trials"])
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for rep in range(args.repeats):
            for mode in ("off", "on"):
                out = work / f"small-{mode}-{rep}"
                flags = ["--no-tracking"] if mode == "off" else []
                run = run_cli(["run", str(spec), "--out", str(out), "--quiet", *flags], env, ("-X", "importtime"))
                if run["exit"] != 0:
                    raise SystemExit(f"migrator run failed ({mode}): {run['stderr'][-2000:]}")
                summary = summary_of(out)
                run.update(
                    imports=import_times(run.pop("stderr")),
                    calls=summary["llm_calls"],
                    reported_wall_s=summary["wall_s"],
                )
                runs[mode].append(run)
                print(f"tracking {mode:>3}: {run['wall_s']:.1f}s wall, {run['cpu_s']:.1f}s CPU, {run['calls']['made']} calls", flush=True)
        on = statistics.median(r["wall_s"] for r in runs["on"])
        off = statistics.median(r["wall_s"] for r in runs["off"])
        cpu_on = statistics.median(r["cpu_s"] for r in runs["on"])
        cpu_off = statistics.median(r["cpu_s"] for r in runs["off"])
        pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["on"], runs["off"], strict=True)]
        result["tracking"] = {
            "on_s": on,
            "off_s": off,
            "ratio": on / off,
            "pair_ratios": pairs,
            "cpu_on_s": cpu_on,
            "cpu_off_s": cpu_off,
            "runs": runs,
        }

        if args.profile:  # where tracking's time goes: one more tracking-on run under cProfile
            profile = work / "tracking.prof"
            out = work / "small-profiled"
            run_cli(["run", str(spec), "--out", str(out), "--quiet"], env, ("-m", "cProfile", "-o", str(profile)))
            result["tracking"]["profile_s"] = tracking_profile(profile) if profile.exists() else {}

        # 2. the same command again on a finished output directory
        out = work / "small-on-0"
        rerun = run_cli(["run", str(spec), "--out", str(out), "--quiet"], env, ("-X", "importtime"))
        rerun["imports"] = import_times(rerun.pop("stderr"))
        rerun["calls"] = summary_of(out)["llm_calls"]
        result["cached_rerun"] = rerun
        print(f"cached rerun: {rerun['wall_s']:.1f}s wall, {rerun['calls']['made']} calls made", flush=True)

        # 3. memory of a large search
        if not args.skip_memory:
            big = write_spec(
                work / "large", f"{base}/lat/0/v1", LARGE["rows"], LARGE["trials"], pruner="none", concurrency=16
            )
            out = work / "large-out"
            memory = run_cli(["run", str(big), "--out", str(out), "--quiet"], env)
            if memory["exit"] != 0:
                raise SystemExit(f"large migrator run failed: {memory.pop('stderr')[-2000:]}")
            memory.pop("stderr")
            summary = summary_of(out)
            memory.update(calls=summary["llm_calls"], trials=summary["trials"], dev=summary["splits"]["dev"])
            result["memory"] = memory
            print(f"memory: {memory['max_rss_mb']:.0f} MB max RSS, {memory['wall_s']:.0f}s", flush=True)

    if args.keep:
        print(f"kept the runs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"\nwrote {args.out} after {result['wall_s']:.0f}s")


def report(result: dict[str, Any]) -> None:
    t = result["tracking"]
    n = len(t["runs"]["on"])
    print(f"\n{'measurement':<44}{'value':>12}{'target':>12}")
    print(f"{'wall, tracking on (median of ' + str(n) + ')':<44}{t['on_s']:>11.1f}s")
    print(f"{'wall, tracking off (median of ' + str(n) + ')':<44}{t['off_s']:>11.1f}s")
    print(f"{'ratio on / off':<44}{t['ratio']:>12.2f}{'<= 1.10':>12}")
    print(f"{'  ratio of each on/off pair':<44}{', '.join(f'{x:.2f}' for x in t['pair_ratios']):>12}")
    print(f"{'  child CPU, tracking on / off (medians)':<44}{t['cpu_on_s']:>6.1f}s /{t['cpu_off_s']:>5.1f}s")
    r = result["cached_rerun"]
    print(f"{'cached rerun: wall':<44}{r['wall_s']:>11.1f}s{'< 10 s':>12}")
    print(f"{'cached rerun: calls made':<44}{r['calls']['made']:>12}{'0':>12}")
    if "memory" in result:
        m = result["memory"]
        print(f"{'200 trials x 200 examples: max RSS':<44}{m['max_rss_mb']:>10.0f}MB{'< 1024 MB':>12}")
        print(f"{'200 trials x 200 examples: wall':<44}{m['wall_s']:>11.0f}s")
    on_imports = t["runs"]["on"][0]["imports"]
    off_imports = t["runs"]["off"][0]["imports"]
    print("\nimport time (s), first run of each mode:  " + ", ".join(f"{k} {v:.1f}/{off_imports.get(k, 0):.1f}" for k, v in sorted(on_imports.items(), key=lambda kv: -kv[1])) + "  (on/off)")
    print("cached rerun imports (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["imports"].items(), key=lambda kv: -kv[1])))
    if t.get("profile_s"):
        print("tracking-on run under cProfile (cumulative s): " + ", ".join(f"{k} {v}" for k, v in t["profile_s"].items()))


if __name__ == "__main__":
    main()
