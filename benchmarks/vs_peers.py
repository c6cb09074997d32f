"""migrator against DSPy's optimizers MIPROv2(auto="light") and GEPA(auto="light"), live, over several seeds.

Same task, same train/dev/test split, same target model, same proposer (reflection) model,
same metric and a matched call budget for the three systems; it generalizes
benchmarks/vs_miprov2.py (whose call counting it reuses) to more datasets, seeds and GEPA.

    python benchmarks/vs_peers.py                      # 2 datasets x 5 seeds x 3 systems (~9 h on 2 cores)
    python benchmarks/vs_peers.py --curve              # also the anytime curve at 200 / 400 / 800 calls (~12-13 h)
    python benchmarks/vs_peers.py --datasets review-sentiment --seeds 1 2 --systems miprov2 gepa
    python benchmarks/vs_peers.py --summary            # the tables, from what is stored (seconds)
    python benchmarks/vs_peers.py --smoke              # the whole pipeline on the fake provider (~30 s)
    python benchmarks/vs_peers.py --systems migrator --results DIR --set search_space.prompt.reflections=0
                                                       # an ablation (DIR holds a copy of the peers' records)

**Tasks** (specs ``benchmarks/data/vs_peers-<dataset>.yaml``, split 30/40/30 drawn by the seed):
``ticket-routing`` (subject + body -> BIL/TEC/ACC/SHP; 48/64/48) and ``review-sentiment`` (review ->
positive/negative; 54/72/54), each moved to the local ``qwen2.5-coder-0.5b-instruct`` (llama.cpp, chat).
That same local model writes new instructions for every system (temperature 1.0, up to 600 tokens).
All three score with migrator's label metric (the reply must contain exactly one of the labels).

1. **MIPROv2** and **GEPA** (DSPy): the legacy prompt becomes a ``dspy.Predict`` whose signature takes
   the dataset's input fields to ``label``, with the legacy system prompt as its instructions.
   ``MIPROv2(auto="light")`` compiles it on train with dev as its validation set;
   ``GEPA(auto="light")`` does too (train for its reflective minibatches, dev as its Pareto valset),
   with a metric that returns a score and a feedback text. The optimized program is scored on test.
   DSPy's cache is off.
2. **migrator**: ``migrator run`` on the same spec (built-in search space but for the settings a
   local model needs, 3 rewrites and 2 reflections) with ``budget.calls`` = the smaller of the two
   peers' totals (optimization + test), so it never uses more than either; its own test verdict
   (baseline and finalist) is paid from that budget.

**Calls** are counted at the model server: one llama.cpp server per system run, one access-log line
per request (``vs_miprov2.server_calls``). ``--smoke`` has no server: it counts the requests in
process (the DSPy LMs' own counter, and migrator's ``summary.json`` ``llm_calls.sent``) and says so.

**Anytime curve** (``--curve``, points ``--curve-points``, default 200 400 800): the best test score
each system reached within that many calls, test evaluation included.
- migrator: a separate ``migrator run`` with ``budget.calls`` = the point (own work dir, own cache).
- GEPA: the program its auto=light run would have returned had it stopped once (point - test size)
  calls were spent: the best dev score among the candidates whose dev evaluation had finished by then
  (GEPA's own pick, ties to the earlier), read off that run's trajectory and scored on test (those
  test calls are extra, outside the run's total). GEPA's budget only decides when it stops, so this is
  a run bounded at that point, on the same trajectory. Its final result where its whole run fitted.
- MIPROv2: auto=light has a fixed size and returns nothing before it ends: its test score where its
  whole run fitted in the point, else null.

**Wall time** on this 2-core machine (estimates from vs_miprov2.py's runs: MIPROv2 ~12 min and
migrator ~7 min per seed on review-sentiment): per seed, review-sentiment ~45 min (MIPROv2 ~14,
GEPA ~22, migrator ~8) and ticket-routing, whose legacy prompt is twice as long, ~65 min: about
9 h for 5 seeds x 2 datasets, and 3-4 h more with ``--curve`` (3 more migrator runs per seed).

**Results**: one JSON per (dataset, seed, system) in ``benchmarks/results/vs_peers/``, written as
soon as that run is done; a rerun skips those already there (``--force`` redoes them; ``--curve``
adds a missing curve to a stored run), so the hours can be spread over several sessions.
``--summary`` writes ``benchmarks/results/vs_peers.json`` (``--results DIR``: DIR/ and DIR.json):
per dataset and system the mean test score with a 95% t-interval over seeds, mean calls, a paired
t-test and a Wilcoxon signed-rank test of migrator against each peer over the seeds, the curve means,
and a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from vs_miprov2 import ROOT, TARGET, server_calls

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results" / "vs_peers"
SMOKE_RESULTS = HERE / "results" / "vs_peers-smoke"
DATASETS = ("ticket-routing", "review-sentiment")
SYSTEMS = ("migrator", "miprov2", "gepa")
PEERS = ("miprov2", "gepa")
NAMES = {"migrator": "migrator", "miprov2": 'DSPy MIPROv2(auto="light")', "gepa": 'DSPy GEPA(auto="light")'}
CURVE_POINTS = (200, 400, 800)
LOCAL = f"local/{TARGET}"
# what the fake provider reads (migrator.testing): a sentiment task, a few-shot learner, a proposer
SMOKE_DATASET = "review-sentiment"
SMOKE_TARGET, SMOKE_PROPOSER = "fake/fewshot", "fake/proposer"
SMOKE_ROWS_PER_LABEL = 20
LLAMA_COUNT = "llama.cpp server access log (one line per request)"
SMOKE_COUNT = (
    "in process (smoke: fake provider, no server log): the DSPy LMs' request counter; "
    "migrator's summary.json llm_calls.sent"
)
CURVE_MEANING = {
    "migrator": "a separate migrator run with budget.calls = the point (its test verdict included)",
    "gepa": (
        "the candidate GEPA's auto=light run would have returned had it stopped once (point - test size) calls "
        "were spent (best dev score among candidates whose dev evaluation had finished), scored on test; "
        "its final result where the whole run fitted"
    ),
    "miprov2": (
        "its final test score where its whole auto=light run (optimization + test) fitted in the point, else null "
        "(auto=light has a fixed size and returns nothing before it ends)"
    ),
}

# -- the comparison's spec and task ----------------------------------------------------------------


def spec_file(dataset: str) -> Path:
    return DATA / f"vs_peers-{dataset}.yaml"


def parse_override(text: str) -> tuple[str, Any]:
    """``dotted.key=yaml value`` (``--set``): a change to migrator's spec, for an ablation."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected dotted.key=value, got {text!r}")
    return key, yaml.safe_load(value)


def apply_overrides(spec: dict[str, Any], overrides: Sequence[tuple[str, Any]]) -> None:
    for key, value in overrides:
        *parents, leaf = key.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value


def write_spec(
    dataset: str,
    seed: int,
    work: Path,
    *,
    calls: int | None = None,
    smoke: bool = False,
    overrides: Sequence[tuple[str, Any]] = (),
) -> Path:
    """The dataset's comparison spec with this seed (it draws the split), absolute paths and, for migrator,
    the call budget and the ``--set`` overrides; in smoke mode the fake models on a small slice of the data."""
    source = spec_file(dataset)
    spec = yaml.safe_load(source.read_text())
    spec["seed"] = seed
    if calls is not None:
        apply_overrides(spec, overrides)
    if calls is not None:
        spec["budget"]["calls"] = calls
    spec["app"]["prompt_file"] = str((source.parent / spec["app"]["prompt_file"]).resolve())
    data = (source.parent / spec["dataset"]["path"]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if smoke:
        data = _smoke_rows(data, spec["dataset"]["expected_field"], work / f"smoke-{data.name}")
        spec["targets"] = [SMOKE_TARGET]
        space = spec["search_space"]
        space["prompt"]["proposer"] = SMOKE_PROPOSER
        space["models"] = {SMOKE_TARGET: {"mode": "chat"}}
        space["timeout_s"] = 30
    spec["dataset"]["path"] = str(data)
    path = work / ("spec.yaml" if calls is not None else "spec-peers.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _smoke_rows(data: Path, label_field: str, out: Path) -> Path:
    """The first rows of each label: a dataset small enough for a smoke test."""
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    kept: list[dict[str, Any]] = []
    for label in dict.fromkeys(r[label_field] for r in rows):
        kept += [r for r in rows if r[label_field] == label][:SMOKE_ROWS_PER_LABEL]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return out


@dataclass(frozen=True)
class Task:
    """The prepared spec as DSPy sees it: a program over the input fields, the splits and the metric."""

    dataset: str
    fields: tuple[str, ...]
    instructions: str
    labels: tuple[str, ...]
    metric: Any  # migrator.metrics.Metric
    train: list[Any]
    dev: list[Any]
    test: list[Any]

    def program(self, instructions: str | None = None) -> Any:
        import dspy

        signature = dspy.Signature(", ".join(self.fields) + " -> label", instructions or self.instructions)
        return dspy.Predict(signature)

    def score(self, example: Any, prediction: Any, trace: Any = None) -> float:
        return float(self.metric.score(str(getattr(prediction, "label", "") or ""), example.label))

    def feedback(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        """GEPA's metric: the score and what was wrong with the reply."""
        import dspy

        reply = str(getattr(pred, "label", "") or "")
        score = float(self.metric.score(reply, gold.label))
        if score >= 1.0:
            text = f"Correct: the expected answer is {gold.label!r} and the reply gave it."
        else:
            text = f"Wrong: the expected answer is {gold.label!r}, but the reply was {reply!r}."
            if self.labels:
                text += f" The reply must be exactly one of: {', '.join(self.labels)}."
        return dspy.Prediction(score=score, feedback=text)


def dspy_cache_off() -> None:
    """DSPy's disk cache in a fresh folder (the LMs run with cache=False anyway)."""
    os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="dspy-cache-"))


def load_task(dataset: str, path: Path) -> Task:
    """The spec at ``path`` prepared by migrator (same split, metric and legacy prompt) as DSPy examples."""
    dspy_cache_off()
    import dspy

    from migrator.migration import prepare
    from migrator.spec import load_spec

    prepared = prepare(load_spec(path))
    spec = prepared.spec
    fields = tuple(spec.dataset.input_fields or prepared.examples[0].inputs)
    if "label" in fields:
        raise SystemExit(f"{path}: an input field is called 'label', the DSPy program's output")
    system = "\n\n".join(c for r, c in prepared.template.messages if r == "system")
    instructions = system or prepared.template.messages[0][1]

    def to_dspy(examples: Sequence[Any]) -> list[Any]:
        return [
            dspy.Example(**{f: ex.inputs[f] for f in fields}, label=ex.expected).with_inputs(*fields) for ex in examples
        ]

    train, dev, test = (to_dspy(prepared.splits.get(k)) for k in ("train", "dev", "test"))
    labels = tuple(spec.metric.labels or ()) if spec.metric.name == "label" else ()
    return Task(dataset, fields, instructions, labels, prepared.metric, train, dev, test)


def score_on_test(task: Task, program: Any, threads: int) -> float:
    """The program's mean metric score on the test split."""
    import dspy

    result = dspy.Evaluate(devset=task.test, metric=task.score, num_threads=threads, display_progress=False)(program)
    rows = getattr(result, "results", None)
    if rows:
        return sum(float(score) for *_, score in rows) / len(task.test)
    return float(result.score) / 100.0


# -- where the DSPy systems' calls go, and how they are counted ----------------------------------


@dataclass
class Backend:
    """Makes the DSPy LMs (task: temperature 0, 100 tokens; proposer: 1.0, 600) and counts their requests."""

    counted_by: str
    make_lm: Callable[[float, int], Any]
    calls: Callable[[], int]

    def task_lm(self) -> Any:
        return self.make_lm(0.0, 100)

    def proposer_lm(self) -> Any:
        # the same settings migrator's proposer uses
        return self.make_lm(1.0, 600)


@contextmanager
def llama_backend(log_dir: Path) -> Iterator[Backend]:
    """A llama.cpp server of its own for one system run: its access log counts every request."""
    dspy_cache_off()
    import dspy

    from migrator.local import LocalServer

    with LocalServer([TARGET], log_dir=log_dir, n_threads=os.cpu_count() or 1, n_ctx=4096) as server:
        log = log_dir / f"llama-{TARGET}.log"
        common = {"api_base": server.api_base(TARGET), "api_key": "none", "cache": False, "num_retries": 2}

        def make_lm(temperature: float, max_tokens: int) -> Any:
            return dspy.LM(f"openai/{TARGET}", temperature=temperature, max_tokens=max_tokens, **common)

        yield Backend(LLAMA_COUNT, make_lm, lambda: server_calls(log))


_FIELDS_ASKED = re.compile(r"Respond with the corresponding output fields(.*)", re.DOTALL)
_JSON_ASKED = re.compile(r"Respond with a JSON object in the following order of fields: (.*)")
_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def as_dspy_reply(text: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """A fake model's reply in the fields a DSPy adapter asked for: ChatAdapter's ``[[ ## field ## ]]``
    sections or JSONAdapter's object (dspy's GEPA proposes through a JSONAdapter). The fakes answer a bare
    label, or an instruction under another field's header. A request that asks for no fields gets ``text``."""
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    last = users[-1] if users else ""
    body = _HEADER.sub("", text).strip()
    as_json = _JSON_ASKED.search(last)
    if as_json is not None:
        fields = re.findall(r"`(\w+)`", as_json.group(1))
        try:
            given = json.loads(text)
        except ValueError:
            given = None
        if isinstance(given, dict) and all(f in given for f in fields):
            return text
        return json.dumps(dict.fromkeys(fields, body))
    asked = _FIELDS_ASKED.search(last)
    if asked is None:
        return text
    fields = [f for f in dict.fromkeys(_HEADER.findall(asked.group(1))) if f != "completed"]
    if not fields or all(f"[[ ## {f} ## ]]" in text for f in fields):
        return text
    return "".join(f"[[ ## {f} ## ]]\n{body}\n\n" for f in fields) + "[[ ## completed ## ]]"


@contextmanager
def smoke_backend() -> Iterator[Backend]:
    """The fake provider (migrator.testing) behind DSPy LMs; requests counted in process."""
    dspy_cache_off()
    import dspy

    from migrator.models import import_litellm
    from migrator.testing import register_fake_provider

    register_fake_provider()
    litellm = import_litellm()
    lock, sent = threading.Lock(), [0]

    class FakeLM(dspy.BaseLM):  # type: ignore[misc]
        """fake/fewshot as the task model, fake/proposer as the proposer; one count per request."""

        def forward(
            self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
        ) -> Any:
            with lock:
                sent[0] += 1
            turns = messages or [{"role": "user", "content": prompt or ""}]
            wanted = {**self.kwargs, **kwargs}
            reply = litellm.completion(
                model=self.model,
                messages=turns,
                temperature=wanted.get("temperature"),
                max_tokens=wanted.get("max_tokens"),
            )
            reply.choices[0].message.content = as_dspy_reply(str(reply.choices[0].message.content or ""), turns)
            return reply

    def make_lm(temperature: float, max_tokens: int) -> Any:
        model = SMOKE_PROPOSER if temperature > 0 else SMOKE_TARGET
        return FakeLM(model=model, temperature=temperature, max_tokens=max_tokens, cache=False, num_retries=0)

    def calls() -> int:
        with lock:
            return sent[0]

    yield Backend(SMOKE_COUNT, make_lm, calls)


# -- the peers -------------------------------------------------------------------------------------


def _failure(exc: Exception, backend: Backend, started: float) -> dict[str, Any]:
    lines = str(exc).strip().splitlines()
    return {
        "error": f"{type(exc).__name__}: {lines[0] if lines else ''}",
        "calls_before_error": backend.calls(),
        "total_calls": None,
        "test_score": None,
        "wall_s": round(time.monotonic() - started, 1),
    }


def run_miprov2(task: Task, backend: Backend, seed: int, threads: int) -> dict[str, Any]:
    import dspy
    from dspy.teleprompt import MIPROv2

    started = time.monotonic()
    task_lm, prompt_lm = backend.task_lm(), backend.proposer_lm()
    program = task.program()
    with dspy.context(lm=task_lm):
        optimizer = MIPROv2(
            metric=task.score, prompt_model=prompt_lm, task_model=task_lm, auto="light", num_threads=threads, seed=seed
        )
        try:
            # 35 is MIPROv2's own minibatch; only a smoke-sized dev set is smaller
            optimized = optimizer.compile(
                program, trainset=task.train, valset=task.dev, minibatch_size=min(35, len(task.dev))
            )
        except Exception as exc:  # e.g. the proposer's reply has no instruction DSPy can parse
            return _failure(exc, backend, started)
        optimization_calls = backend.calls()
        score = score_on_test(task, optimized, threads)
        total_calls = backend.calls()
    predictor = optimized.predictors()[0]
    return {
        "optimization_calls": optimization_calls,
        "test_calls": total_calls - optimization_calls,
        "total_calls": total_calls,
        "lm_history": {"task": len(task_lm.history), "proposer": len(prompt_lm.history)},
        "test_score": score,
        "instructions": predictor.signature.instructions,
        "demos": len(predictor.demos),
        "wall_s": round(time.monotonic() - started, 1),
    }


class Trajectory:
    """A GEPA callback: each candidate once its dev (valset) evaluation is done, with the calls spent by then."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.events: list[dict[str, Any]] = []

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        texts = list(dict(event["candidate"]).values())
        self.events.append(
            {
                "candidate": int(event["candidate_idx"]),
                "calls": self.backend.calls(),
                "dev_score": float(event["average_score"]),
                "dev_n": int(event["num_examples_evaluated"]),
                "instructions": texts[0] if len(texts) == 1 else texts,
            }
        )


def run_gepa(task: Task, backend: Backend, seed: int, threads: int) -> dict[str, Any]:
    import dspy

    started = time.monotonic()
    task_lm, reflection_lm = backend.task_lm(), backend.proposer_lm()
    program = task.program()
    trajectory = Trajectory(backend)
    with dspy.context(lm=task_lm):
        optimizer = dspy.GEPA(
            metric=task.feedback,
            auto="light",
            reflection_lm=reflection_lm,
            num_threads=threads,
            seed=seed,
            track_stats=True,
            gepa_kwargs={"callbacks": [trajectory]},
        )
        try:
            optimized = optimizer.compile(program, trainset=task.train, valset=task.dev)
        except Exception as exc:
            return {**_failure(exc, backend, started), "trajectory": trajectory.events}
        optimization_calls = backend.calls()
        score = score_on_test(task, optimized, threads)
        total_calls = backend.calls()
    predictor = optimized.predictors()[0]
    details = getattr(optimized, "detailed_results", None)
    return {
        "optimization_calls": optimization_calls,
        "test_calls": total_calls - optimization_calls,
        "total_calls": total_calls,
        "lm_history": {"task": len(task_lm.history), "reflection": len(reflection_lm.history)},
        "metric_calls_budget": optimizer.max_metric_calls,
        "metric_calls_used": getattr(details, "total_metric_calls", None),
        "candidates": len(trajectory.events),
        "test_score": score,
        "instructions": predictor.signature.instructions,
        "wall_s": round(time.monotonic() - started, 1),
        "trajectory": trajectory.events,
    }


def gepa_curve(
    task: Task, backend: Backend, record: Mapping[str, Any], points: Sequence[int], threads: int
) -> dict[str, Any]:
    """GEPA's anytime points, read off its run's trajectory (see CURVE_MEANING); scores the picks on test."""
    n_test = len(task.test)
    scored: dict[str, float] = {}
    if record.get("test_score") is not None:
        scored[json.dumps(record["instructions"])] = record["test_score"]
    before = backend.calls()
    out: dict[str, Any] = {}
    for point in points:
        if record.get("total_calls") is not None and record["total_calls"] <= point:
            out[str(point)] = {"test_score": record["test_score"], "calls": record["total_calls"], "candidate": "final"}
            continue
        fitted = [e for e in record.get("trajectory") or [] if e["calls"] + n_test <= point]
        if not fitted:
            out[str(point)] = {"test_score": None, "calls": None, "candidate": None}
            continue
        best = max(fitted, key=lambda e: e["dev_score"])  # the first of equals, as GEPA picks
        key = json.dumps(best["instructions"])
        if key not in scored:
            text = best["instructions"] if isinstance(best["instructions"], str) else best["instructions"][0]
            scored[key] = score_on_test(task, task.program(text), threads)
        out[str(point)] = {"test_score": scored[key], "calls": best["calls"] + n_test, "candidate": best["candidate"]}
    events = record.get("trajectory") or []
    final_pick = max(events, key=lambda e: e["dev_score"]) if events else None
    return {
        "meaning": CURVE_MEANING["gepa"],
        "points": out,
        "extra_test_calls": backend.calls() - before,
        "trajectory_pick_is_final": final_pick is not None and final_pick["instructions"] == record.get("instructions"),
    }


def peer_curve(record: Mapping[str, Any], points: Sequence[int]) -> dict[str, Any]:
    """MIPROv2's points: its single result, where its whole run fitted."""
    total = record.get("total_calls")
    fits = {str(p): total is not None and total <= p for p in points}
    return {
        "meaning": CURVE_MEANING["miprov2"],
        "points": {
            p: {"test_score": record["test_score"] if ok else None, "calls": total if ok else None}
            for p, ok in fits.items()
        },
    }


# -- migrator --------------------------------------------------------------------------------------


def run_migrator(
    dataset: str, seed: int, calls: int, work: Path, *, smoke: bool, overrides: Sequence[tuple[str, Any]] = ()
) -> dict[str, Any]:
    """One ``migrator run`` with ``budget.calls`` = ``calls`` in a fresh work dir (no shared cache or study)."""
    shutil.rmtree(work, ignore_errors=True)
    path = write_spec(dataset, seed, work, calls=calls, smoke=smoke, overrides=overrides)
    out = work / "out"
    argv = ["run", str(path), "--out", str(out), "--no-tracking", "--quiet"]
    started = time.monotonic()
    if smoke:  # in process: the fake provider needs no server, and the imports are paid once
        from migrator.cli import main as migrator_main

        returncode = migrator_main(argv)
        tail = ""
    else:
        # a study, cache or MLflow store named in the environment would be shared: each run gets its own
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MIGRATOR_STORAGE", "MIGRATOR_CACHE", "MIGRATOR_TRACKING_URI")
        }
        log = work / "migrator.log"
        with log.open("w") as sink:
            returncode = subprocess.run(
                [sys.executable, "-m", "migrator", *argv], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            ).returncode
        tail = log.read_text()[-3000:]
    wall = round(time.monotonic() - started, 1)
    if not (out / "summary.json").is_file():
        return {
            "error": f"migrator run exited {returncode} without summary.json: {tail}",
            "budget_calls": calls,
            "total_calls": None,
            "test_score": None,
            "wall_s": wall,
        }
    summary = json.loads((out / "summary.json").read_text())
    winner = summary.get("winner") or {}
    baseline = summary.get("baseline") or {}
    sent = summary["llm_calls"]["sent"]
    counted = sent if smoke else server_calls(out / "logs" / f"llama-{TARGET}.log")
    reflections = [c for c in summary.get("candidates", []) if (c.get("origin") or {}).get("kind") == "reflection"]
    return {
        "exit_code": returncode,
        "budget_calls": calls,
        "total_calls": counted,
        "calls_sent": sent,
        "calls_made": summary["llm_calls"]["made"],
        "study_spent_calls": summary["budget"]["spent"]["calls"],
        "test_score": winner.get("test_score"),
        "dev_score": winner.get("dev_score"),
        "winner": winner.get("label"),
        "baseline_test_score": baseline.get("test_score"),
        "trials": summary["trials"],
        "stopped_by": summary["stopped_by"],
        "candidates": len(summary["candidates"]),
        "reflections_accepted": len(reflections),
        "rejected_proposals": len(summary["rejected_candidates"]),
        "winner_vs_baseline": summary["winner_vs_baseline"],
        "sampling_note": summary.get("sampling_note"),
        "space_note": summary.get("space_note"),
        "wall_s": wall,
    }


def migrator_curve(dataset: str, seed: int, points: Sequence[int], work: Path, *, smoke: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for point in points:
        run = run_migrator(dataset, seed, point, work / f"curve-{point}", smoke=smoke)
        out[str(point)] = {
            k: run.get(k) for k in ("test_score", "total_calls", "stopped_by", "trials", "error", "wall_s")
        }
        out[str(point)]["calls"] = out[str(point)].pop("total_calls")
    return {"meaning": CURVE_MEANING["migrator"], "points": out}


def matched_budget(results: Path, dataset: str, seed: int, fallback: int) -> tuple[int, str]:
    """The smaller of the finished peers' totals (optimization + test), and where it came from."""
    totals = {}
    for peer in PEERS:
        record = read_record(result_path(results, dataset, seed, peer))
        if record and record.get("test_score") is not None and record.get("total_calls"):
            totals[peer] = int(record["total_calls"])
    if not totals:
        return fallback, f"--calls-if-no-peer {fallback} (no peer finished this seed)"
    peer = min(totals, key=lambda p: totals[p])
    return totals[peer], f"min of the peers' totals {totals}: {peer}"


# -- one (dataset, seed, system) result at a time ----------------------------------------------------


def result_path(results: Path, dataset: str, seed: int, system: str) -> Path:
    return results / f"{dataset}-seed{seed}-{system}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps(record, indent=2, default=str) + "\n")
    part.replace(path)


@dataclass(frozen=True)
class Options:
    results: Path
    work: Path
    smoke: bool
    curve: tuple[int, ...]
    threads: int
    force: bool
    calls_if_no_peer: int
    overrides: tuple[tuple[str, Any], ...] = ()


@contextmanager
def backend_for(opts: Options, log_dir: Path) -> Iterator[Backend]:
    if opts.smoke:
        with smoke_backend() as backend:
            yield backend
    else:
        with llama_backend(log_dir) as backend:
            yield backend


def header(dataset: str, seed: int, system: str, opts: Options, task: Task | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "benchmark": "vs_peers",
        "dataset": dataset,
        "seed": seed,
        "system": system,
        "name": NAMES[system],
        "smoke": opts.smoke,
        "target": SMOKE_TARGET if opts.smoke else LOCAL,
        "proposer": SMOKE_PROPOSER if opts.smoke else LOCAL,
        "spec": str(spec_file(dataset).relative_to(ROOT)),
        "calls_counted_by": SMOKE_COUNT if opts.smoke else LLAMA_COUNT,
    }
    if task is not None:
        record["splits"] = {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)}
    return record


def missing_points(record: Mapping[str, Any] | None, points: Sequence[int]) -> tuple[int, ...]:
    """The curve points asked for that ``record`` has no value for."""
    have = ((record or {}).get("curve") or {}).get("points") or {}
    return tuple(p for p in points if str(p) not in have)


def merge_curve(record: dict[str, Any], curve: Mapping[str, Any]) -> None:
    """Adds ``curve``'s points to those ``record`` has."""
    old = record.get("curve") or {}
    points = {**(old.get("points") or {}), **curve["points"]}
    merged = {**old, **curve, "points": dict(sorted(points.items(), key=lambda kv: int(kv[0])))}
    if "extra_test_calls" in old and "extra_test_calls" in curve:
        merged["extra_test_calls"] = old["extra_test_calls"] + curve["extra_test_calls"]
    record["curve"] = merged


def run_peer(dataset: str, seed: int, system: str, opts: Options, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Runs the peer (or, when ``previous`` is given, only adds the curve points it misses)."""
    work = opts.work / f"{dataset}-seed{seed}-{system}"
    shutil.rmtree(work, ignore_errors=True)
    task = load_task(dataset, write_spec(dataset, seed, work, smoke=opts.smoke))
    record = previous or header(dataset, seed, system, opts, task)
    todo = missing_points(record, opts.curve)
    if system == "miprov2":
        if previous is None:
            with backend_for(opts, work / "logs") as backend:
                record.update(run_miprov2(task, backend, seed, opts.threads))
        if todo:
            merge_curve(record, peer_curve(record, todo))
        return record
    if previous is not None and not (todo and record.get("trajectory")):
        return record
    with backend_for(opts, work / "logs") as backend:
        if previous is None:
            record.update(run_gepa(task, backend, seed, opts.threads))
        if todo:
            merge_curve(record, gepa_curve(task, backend, record, todo, opts.threads))
    return record


def run_ours(dataset: str, seed: int, opts: Options, previous: dict[str, Any] | None) -> dict[str, Any]:
    work = opts.work / f"{dataset}-seed{seed}-migrator"
    record = previous or header(dataset, seed, "migrator", opts)
    if previous is None:
        calls, source = matched_budget(opts.results, dataset, seed, opts.calls_if_no_peer)
        print(f"[vs_peers] {dataset} seed {seed} migrator: budget.calls {calls} ({source})", flush=True)
        run = run_migrator(dataset, seed, calls, work / "matched", smoke=opts.smoke, overrides=opts.overrides)
        record.update(run, budget_source=source)
        if opts.overrides:
            record["overrides"] = dict(opts.overrides)
    todo = missing_points(record, opts.curve)
    if todo:
        merge_curve(record, migrator_curve(dataset, seed, todo, work, smoke=opts.smoke))
    return record


def ensure(dataset: str, seed: int, system: str, opts: Options) -> dict[str, Any]:
    """The stored result, or a new one (written as soon as it is done); missing curve points are added."""
    path = result_path(opts.results, dataset, seed, system)
    previous = None if opts.force else read_record(path)
    if previous is not None and bool(previous.get("smoke")) != opts.smoke:
        raise SystemExit(f"{path}: a {'smoke' if previous.get('smoke') else 'real'} result; use another --results")
    if previous is not None and not missing_points(previous, opts.curve):
        print(f"[vs_peers] {path.name}: stored, skipped (--force redoes it)", flush=True)
        return previous
    what = "adding curve points" if previous is not None else "running"
    print(f"[vs_peers] {dataset} seed {seed} {NAMES[system]}: {what}", flush=True)
    started = time.monotonic()
    if system == "migrator":
        record = run_ours(dataset, seed, opts, previous)
    else:
        record = run_peer(dataset, seed, system, opts, previous)
    record.setdefault("session_wall_s", {})[time.strftime("%Y-%m-%dT%H:%M:%S")] = round(time.monotonic() - started, 1)
    write_record(path, record)
    shown = {
        k: record.get(k)
        for k in ("test_score", "total_calls", "budget_calls", "error", "wall_s")
        if record.get(k) is not None
    }
    print(f"[vs_peers] {path.name}: {json.dumps(shown)}", flush=True)
    return record


def run_all(datasets: Sequence[str], seeds: Sequence[int], systems: Sequence[str], opts: Options) -> None:
    # the peers first: migrator's budget is the smaller of their totals
    order = [s for s in (*PEERS, "migrator") if s in systems]
    for dataset in datasets:
        for seed in seeds:
            for system in order:
                ensure(dataset, seed, system, opts)


# -- the summary -------------------------------------------------------------------------------------


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """Mean with a Student-t interval (None where there are too few values)."""
    if not values:
        return None, None, None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    from scipy import stats  # scipy comes with scikit-learn, a dependency of migrator

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired(ours: Mapping[int, float], theirs: Mapping[int, float]) -> dict[str, Any]:
    """migrator minus a peer over the seeds both finished: t-interval, paired t-test, Wilcoxon signed-rank."""
    from scipy import stats

    seeds = sorted(set(ours) & set(theirs))
    diffs = [ours[s] - theirs[s] for s in seeds]
    mean, low, high = t_interval(diffs)
    t_p: float | None = None
    w_p: float | None = None
    if len(diffs) >= 2:
        if any(abs(d) > 1e-12 for d in diffs):
            t = stats.ttest_rel([ours[s] for s in seeds], [theirs[s] for s in seeds])
            t_p = float(t.pvalue) if not math.isnan(float(t.pvalue)) else 1.0  # nan: all differences equal
            try:
                w_p = float(stats.wilcoxon(diffs).pvalue)
            except ValueError:  # too few non-zero differences
                w_p = 1.0
        else:
            t_p = w_p = 1.0
    return {
        "seeds": seeds,
        "mean_diff": mean,
        "ci95": [low, high] if low is not None else None,
        "t_test_p": t_p,
        "wilcoxon_p": w_p,
        "wins": sum(d > 1e-12 for d in diffs),
        "losses": sum(d < -1e-12 for d in diffs),
        "ties": sum(abs(d) <= 1e-12 for d in diffs),
    }


def curve_means(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per curve point, the mean test score over the seeds that have one, and how many do."""
    values: dict[str, list[float | None]] = {}
    for r in runs:
        for point, value in ((r.get("curve") or {}).get("points") or {}).items():
            values.setdefault(point, []).append(value.get("test_score"))
    out: dict[str, Any] = {}
    for point in sorted(values, key=int):
        scored = [v for v in values[point] if v is not None]
        out[point] = {
            "mean": sum(scored) / len(scored) if scored else None,
            "finished": len(scored),
            "seeds": len(values[point]),
        }
    return out


def over_budget(by_system: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> list[str]:
    """Seeds where migrator used more calls than a peer that finished (should never happen)."""
    found = []
    for seed, ours in sorted(by_system.get("migrator", {}).items()):
        for peer in PEERS:
            theirs = by_system.get(peer, {}).get(seed)
            if (
                not theirs
                or theirs.get("test_score") is None
                or None in (ours.get("total_calls"), theirs.get("total_calls"))
            ):
                continue
            if ours["total_calls"] > theirs["total_calls"]:
                found.append(f"seed {seed}: migrator {ours['total_calls']} calls > {peer} {theirs['total_calls']}")
    return found


def summarize(results: Path) -> dict[str, Any]:
    """Per dataset and system: test score over seeds, calls, curve means; migrator against each peer."""
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*-seed*-*.json"))]
    records = [r for r in records if r.get("benchmark") == "vs_peers"]
    out: dict[str, Any] = {
        "results": str(results),
        "smoke": any(r.get("smoke") for r in records),
        "calls_counted_by": sorted({r["calls_counted_by"] for r in records}),
        "curve_meaning": CURVE_MEANING,
        "datasets": {},
    }
    for dataset in sorted({r["dataset"] for r in records}):
        by_system: dict[str, dict[int, dict[str, Any]]] = {}
        for r in records:
            if r["dataset"] == dataset:
                by_system.setdefault(r["system"], {})[int(r["seed"])] = r
        systems: dict[str, Any] = {}
        for system in [s for s in SYSTEMS if s in by_system]:
            runs = by_system[system]
            scores = {s: float(r["test_score"]) for s, r in sorted(runs.items()) if r.get("test_score") is not None}
            calls = [float(r["total_calls"]) for r in runs.values() if r.get("total_calls") is not None]
            mean, low, high = t_interval(list(scores.values()))
            systems[system] = {
                "name": NAMES[system],
                "seeds": sorted(runs),
                "finished": sorted(scores),
                "failed": {s: r["error"] for s, r in sorted(runs.items()) if r.get("error")},
                "test_scores": scores,
                "mean_test": mean,
                "ci95": [low, high] if low is not None else None,
                "mean_calls": sum(calls) / len(calls) if calls else None,
                "curve": curve_means(list(runs.values())),
            }
        ours = systems.get("migrator", {}).get("test_scores", {})
        vs = {peer: paired(ours, systems[peer]["test_scores"]) for peer in PEERS if peer in systems and ours}
        out["datasets"][dataset] = {
            "systems": systems,
            "migrator_vs": vs,
            "migrator_over_a_peers_calls": over_budget(by_system),
        }
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(s: Mapping[str, Any]) -> str:
    ci = s.get("ci95")
    return f"{_f(s['mean_test'])} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(s["mean_test"])


def _vs(summary: Mapping[str, Any], system: str) -> tuple[str, str, str, str]:
    if system == "migrator" or system not in summary["migrator_vs"]:
        return "", "", "", ""
    v = summary["migrator_vs"][system]
    ci = v["ci95"]
    diff = (
        (f"{v['mean_diff']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
        if v["mean_diff"] is not None
        else "—"
    )
    return diff, f"{v['wins']}/{v['losses']}/{v['ties']}", _f(v["t_test_p"]), _f(v["wilcoxon_p"])


def tables(summary: Mapping[str, Any]) -> tuple[str, str]:
    """The console tables and the Markdown for the README."""
    text: list[str] = []
    md: list[str] = []
    for dataset, ds in summary["datasets"].items():
        points = sorted({p for s in ds["systems"].values() for p in s["curve"]}, key=int)
        cols = [
            "system",
            "seeds",
            "test mean [95% CI]",
            "calls",
            "migrator - it [95% CI]",
            "W/L/T",
            "t-test p",
            "Wilcoxon p",
        ]
        cols += [f"@{p}" for p in points]
        rows = []
        for system, s in ds["systems"].items():
            seeds = f"{len(s['finished'])}/{len(s['seeds'])}"
            row = [s["name"], seeds, _ci(s), _f(s["mean_calls"], 0), *_vs(ds, system)]
            row += [
                _f(s["curve"].get(p, {}).get("mean")) + (f" ({s['curve'][p]['finished']})" if p in s["curve"] else "")
                for p in points
            ]
            rows.append(row)
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        text.append(
            f"\n{dataset}: test score over seeds; calls = optimization + test, mean; "
            "@N = anytime curve: mean test score within N calls (seeds with a result)"
        )
        text.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        text += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        for s in ds["systems"].values():
            for seed, error in s["failed"].items():
                text.append(f"  {s['name']} seed {seed} failed: {error}")
        text += [f"  over budget: {o}" for o in ds["migrator_over_a_peers_calls"]]
        md.append(f"\n**{dataset}**\n")
        md.append("| " + " | ".join(cols) + " |")
        md.append("|" + "---|" * len(cols))
        md += ["| " + " | ".join(("**migrator**" if v == "migrator" else v) for v in r) + " |" for r in rows]
    notes = [f"calls counted by: {'; '.join(summary['calls_counted_by'])}"]
    notes += [f"@N for {NAMES[s]}: {m}" for s, m in CURVE_MEANING.items()]
    notes.append("W/L/T: seeds where migrator scored higher / lower / the same on test; p: paired over those seeds")
    notes.append("Wilcoxon signed-rank (exact) cannot go below p = 2 / 2^n on n seeds: 0.0625 on 5")
    if summary["smoke"]:
        notes.append("SMOKE RUN: fake provider, tiny data; the numbers check the plumbing, not the systems")
    return "\n".join([*text, "", *notes]), "\n".join(md)


def show_summary(results: Path) -> dict[str, Any]:
    summary = summarize(results)
    if not summary["datasets"]:
        raise SystemExit(f"no vs_peers results in {results}")
    text, md = tables(summary)
    summary["markdown"] = md
    target = results.parent / f"{results.name}.json"
    target.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(text)
    print("\nMarkdown (README):")
    print(md)
    print(f"\nwrote {target}")
    return summary


# -- command line ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="each draws the split and seeds every optimizer"
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--curve", action="store_true", help="also the anytime curve (about triples migrator's cost)")
    parser.add_argument("--curve-points", type=int, nargs="+", default=list(CURVE_POINTS), metavar="CALLS")
    parser.add_argument("--threads", type=int, default=2, help="DSPy threads (llama.cpp answers one request at a time)")
    parser.add_argument("--force", action="store_true", help="redo results already stored")
    parser.add_argument(
        "--calls-if-no-peer", type=int, default=700, help="migrator's budget when no peer finished that seed"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help=f"one JSON per run here (default {RESULTS.relative_to(ROOT)}; smoke: {SMOKE_RESULTS.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--work", type=Path, help="keep every run's files (spec, llama.cpp logs, migrator's outputs) here"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change migrator's spec (dotted key, YAML value), for an ablation: use its own --results",
    )
    parser.add_argument("--summary", action="store_true", help="only the tables, from the stored results")
    parser.add_argument("--smoke", action="store_true", help=f"one seed of {SMOKE_DATASET}, tiny, on the fake provider")
    args = parser.parse_args(argv)
    results: Path = args.results or (SMOKE_RESULTS if args.smoke else RESULTS)
    if args.overrides and args.results is None:
        parser.error("--set is an ablation: give it its own --results DIR (copy the peers' records there)")
    if args.summary:
        show_summary(results)
        return
    datasets, seeds = list(args.datasets), list(dict.fromkeys(args.seeds))
    if args.smoke:
        datasets, seeds = [SMOKE_DATASET], seeds[:1]
        print(
            f"[vs_peers] smoke: {SMOKE_DATASET} seed {seeds[0]}, {SMOKE_ROWS_PER_LABEL} rows per label, "
            f"{SMOKE_TARGET} / {SMOKE_PROPOSER}; calls counted {SMOKE_COUNT}",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="vs-peers-") as tmp:
        opts = Options(
            results=results.resolve(),
            work=(args.work or Path(tmp)).resolve(),
            smoke=args.smoke,
            curve=tuple(args.curve_points) if args.curve else (),
            threads=args.threads,
            force=args.force,
            calls_if_no_peer=args.calls_if_no_peer,
            overrides=tuple(args.overrides),
        )
        run_all(datasets, seeds, args.systems, opts)
    if args.smoke:
        show_summary(results)


if __name__ == "__main__":
    main()
