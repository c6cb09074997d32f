"""migrator against DSPy's own optimizer, live: MIPROv2(auto="light") on the same task,
target model, proposer and call budget.

    python benchmarks/vs_miprov2.py            # about 20 minutes on 2 idle cores
                                               # (seed 1: DSPy 712 s, migrator 401 s)

Task: the review-sentiment app (datasets/review-sentiment), migrated to the local
qwen2.5-coder-0.5b-instruct served by llama.cpp, with the same train/dev/test split for
both tools (spec: benchmarks/data/vs_miprov2.yaml). The proposer that writes new
instructions is the same local model for both.

1. **DSPy.** The legacy prompt becomes a ``dspy.Predict`` whose signature has the legacy
   system prompt as its instructions, input ``review`` and output ``label``.
   ``MIPROv2(auto="light")`` compiles it on train with dev as its validation set
   (``prompt_model`` = the proposer, ``task_model`` = the target), and the optimized
   program is scored on test. Every request reaches the model server; DSPy's cache is off.
2. **migrator.** ``migrator run`` on the same spec with ``budget.calls`` set to the number
   of calls DSPy made in total (optimization and its test evaluation). migrator's own
   test verdict (legacy-prompt baseline and finalist) is paid from that budget too.

Both score with migrator's label metric (the reply must contain exactly one of the labels).
Calls are counted at the model server (one llama.cpp server per tool run, each request is
one line of its access log), so both tools are counted the same way. Writes
benchmarks/results/vs_miprov2.json (``--seed N``: vs_miprov2-seedN.json; the seed draws
the split and seeds both optimizers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "data" / "vs_miprov2.yaml"
RESULTS = HERE / "results" / "vs_miprov2.json"
TARGET = "qwen2.5-coder-0.5b-instruct"
_REQUEST = re.compile(rb'"POST /v1/(chat/)?completions HTTP')


def server_calls(log: Path) -> int:
    """Requests the llama.cpp server received: one access-log line each."""
    return len(_REQUEST.findall(log.read_bytes())) if log.exists() else 0


def write_spec(work: Path, seed: int, calls: int | None = None) -> Path:
    """The comparison's spec with this seed (it also draws the split) and, for migrator, the budget."""
    spec = yaml.safe_load(SPEC.read_text())
    spec["seed"] = seed
    if calls is not None:
        spec["budget"]["calls"] = calls
    spec["dataset"]["path"] = str((SPEC.parent / spec["dataset"]["path"]).resolve())
    spec["app"]["prompt_file"] = str((SPEC.parent / spec["app"]["prompt_file"]).resolve())
    path = work / ("spec.yaml" if calls is not None else "spec-dspy.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_dspy(work: Path, seed: int, threads: int) -> dict[str, Any]:
    os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="dspy-cache-"))
    import dspy
    from dspy.teleprompt import MIPROv2

    from migrator.local import LocalServer
    from migrator.migration import prepare
    from migrator.spec import load_spec

    prepared = prepare(load_spec(write_spec(work, seed)))
    metric = prepared.metric
    log_dir = work / "dspy-logs"
    instructions = "\n\n".join(c for r, c in prepared.template.messages if r == "system")

    def to_dspy(examples: Any) -> list[Any]:
        return [dspy.Example(review=ex.inputs["review"], label=ex.expected).with_inputs("review") for ex in examples]

    train, dev, test = (to_dspy(prepared.splits.get(k)) for k in ("train", "dev", "test"))

    def score(example: Any, prediction: Any, trace: Any = None) -> float:
        return metric.score(str(getattr(prediction, "label", "") or ""), example.label)

    started = time.monotonic()
    with LocalServer([TARGET], log_dir=log_dir, n_threads=os.cpu_count() or 1, n_ctx=4096) as server:
        log = log_dir / f"llama-{TARGET}.log"
        common = {"api_base": server.api_base(TARGET), "api_key": "none", "cache": False, "num_retries": 2}
        # the same settings migrator's proposer uses, and the legacy app's task params
        task_lm = dspy.LM(f"openai/{TARGET}", temperature=0.0, max_tokens=100, **common)
        prompt_lm = dspy.LM(f"openai/{TARGET}", temperature=1.0, max_tokens=600, **common)
        program = dspy.Predict(dspy.Signature("review -> label", instructions))
        with dspy.context(lm=task_lm):
            optimizer = MIPROv2(metric=score, prompt_model=prompt_lm, task_model=task_lm, auto="light", num_threads=threads, seed=seed)
            try:
                optimized = optimizer.compile(program, trainset=train, valset=dev)
            except Exception as exc:  # e.g. the proposer's reply has no instruction DSPy can parse
                return {
                    "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                    "calls_before_error": server_calls(log),
                    "total_calls": None,
                    "test_score": None,
                    "wall_s": round(time.monotonic() - started, 1),
                }
            optimization_calls = server_calls(log)
            evaluate = dspy.Evaluate(devset=test, metric=score, num_threads=threads, display_progress=False)
            test_score = float(evaluate(optimized).score) / 100.0
            total_calls = server_calls(log)
            # context only, not part of the budget: the unoptimized program on test
            legacy_score = float(evaluate(program).score) / 100.0
    predictor = optimized.predictors()[0]
    return {
        "optimization_calls": optimization_calls,
        "test_calls": total_calls - optimization_calls,
        "total_calls": total_calls,
        "lm_history": {"task": len(task_lm.history), "proposer": len(prompt_lm.history)},
        "test_score": test_score,
        "unoptimized_program_test_score": legacy_score,
        "instructions": predictor.signature.instructions,
        "demos": len(predictor.demos),
        "wall_s": round(time.monotonic() - started, 1),
    }


def run_migrator(workdir: Path, seed: int, calls: int) -> dict[str, Any]:
    path = write_spec(workdir, seed, calls)
    out = workdir / "out"
    started = time.monotonic()
    cmd = [sys.executable, "-m", "migrator", "run", str(path), "--out", str(out), "--no-tracking"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if not (out / "summary.json").is_file():
        raise SystemExit(f"migrator run failed ({done.returncode}): {done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    winner = summary["winner"] or {}
    baseline = summary["baseline"] or {}
    return {
        "budget_calls": calls,
        "calls_made": summary["llm_calls"]["made"],
        "server_calls": server_calls(out / "logs" / f"llama-{TARGET}.log"),
        "test_score": winner.get("test_score"),
        "dev_score": winner.get("dev_score"),
        "winner": winner.get("label"),
        "baseline_test_score": baseline.get("test_score"),
        "trials": summary["trials"],
        "stopped_by": summary["stopped_by"],
        "candidates": len(summary["candidates"]),
        "rejected_rewrites": len(summary["rejected_candidates"]),
        "winner_vs_baseline": summary["winner_vs_baseline"],
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="draws the split and seeds both optimizers")
    parser.add_argument("--threads", type=int, default=2, help="DSPy threads (llama.cpp answers one at a time)")
    parser.add_argument("--dspy-json", type=Path, help="reuse a finished DSPy half instead of running it again")
    parser.add_argument(
        "--calls-if-dspy-fails",
        type=int,
        default=632,
        help="migrator's call budget when MIPROv2 fails (default: the median of its totals on seeds 0-2)",
    )
    parser.add_argument("--work", type=Path, help="keep migrator's run (summary.json, report.html, logs) here")
    args = parser.parse_args()
    results = RESULTS if args.seed == 0 else RESULTS.with_name(f"vs_miprov2-seed{args.seed}.json")
    with tempfile.TemporaryDirectory(prefix="vs-miprov2-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.dspy_json:
            dspy_side = json.loads(args.dspy_json.read_text())["dspy_miprov2_light"]
        else:
            dspy_side = run_dspy(work, args.seed, args.threads)
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps({"dspy_miprov2_light": dspy_side}, indent=2))
            print(json.dumps(dspy_side, indent=2), flush=True)
        # when MIPROv2 fails there is no budget to match: migrator gets the usual one
        ours = run_migrator(work, args.seed, dspy_side["total_calls"] or args.calls_if_dspy_fails)
    both = ours["test_score"] is not None and dspy_side["test_score"] is not None
    result = {
        "task": "review-sentiment -> local/" + TARGET,
        "seed": args.seed,
        "spec": str(SPEC.relative_to(ROOT)),
        "dspy_miprov2_light": dspy_side,
        "migrator": ours,
        "migrator_minus_dspy_test": ours["test_score"] - dspy_side["test_score"] if both else None,
        "calls_ratio_migrator_over_dspy": ours["server_calls"] / dspy_side["total_calls"] if both else None,
    }
    results.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
