"""Throughput against the physical limit: calls/s achieved divided by concurrency / latency.

One command::

    python benchmarks/throughput.py              # about 5 minutes: 3 interleaved repetitions
    python benchmarks/throughput.py --repeats 1  # about 2 minutes

A loopback OpenAI-compatible server (``fixed_latency_server.py``, its own process)
answers every request after a fixed latency, with no concurrency limit. Each client
runs in its own worker process, idle while another is measured; every cell (client x
latency x concurrency) is measured once per repetition and the repetitions are
interleaved, so a change in the machine's load hits all clients alike.

A cell sends ``(waves + 2) x concurrency`` calls in one go and stamps each completion.
The first wave (connections opening, caches filling, every slot starting at once) and
the last (the stragglers of the final wave) are left out: the rate is measured between
the ``concurrency``-th and the ``(n - concurrency)``-th completion, which is what a long
search sustains. Reported, as the median over the repetitions:

    ratio = (calls / s between those completions) / (concurrency / latency)

and, in brackets, the client process's CPU milliseconds per call over the same window.
The latency-0 column is the most a client can do at all (calls/s at concurrency 32).

Clients:

- ``aiohttp``: a raw aiohttp session; it shows the server is not the bottleneck.
- ``httpx``: a raw ``httpx.AsyncClient`` (latency-0 column only).
- ``litellm``: a bare ``litellm.acompletion`` loop (asyncio.gather with a semaphore).
- ``dspy``: ``dspy.Evaluate(num_threads=concurrency)`` of a ``dspy.Predict`` program,
  ``dspy.LM`` pointed at the server (cache off).
- ``migrator``: ``migrator.evaluate.evaluate`` with ``LiteLLMClient(concurrency=...)``,
  as a search runs it, on a self-hosted OpenAI-compatible endpoint (the direct road).
- ``migrator-via-litellm``: the same with ``LiteLLMClient(direct=False)``, the road every
  other provider takes (1 s and latency-0 columns only).

Results go to ``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fixed_latency_server import start_server  # noqa: E402

CLIENTS = ("aiohttp", "litellm", "dspy", "migrator", "migrator-via-litellm")
SHORT = ("aiohttp", "litellm", "dspy", "migrator")
ZERO_ONLY = ("httpx",)
LATENCIES = (1.0, 0.2)
CONCURRENCIES = (8, 32, 128)
MAX_RATE_CONCURRENCY = 32
REVIEW = "The delivery was great, honestly wonderful (visit {i})."

Marks = list[tuple[float, float]]  # (wall clock, process CPU) at each completion
Measure = Callable[[float, int, int, int], Marks]  # (latency, concurrency, calls, offset) -> marks


# --------------------------------------------------------------------------- workers


def _mark(marks: Marks) -> None:
    marks.append((time.perf_counter(), time.process_time()))


def _check(text: Any) -> None:
    if text != "positive":
        raise RuntimeError(f"unexpected reply {text!r}")


def _body(i: int) -> dict[str, Any]:
    return {"model": "fixed", "messages": [{"role": "user", "content": REVIEW.format(i=i)}], "max_tokens": 5}


def _gathered(one: Callable[[int], Any], concurrency: int, n: int, offset: int) -> Any:
    """n calls of ``one`` at most ``concurrency`` at a time: the bare asyncio loop."""
    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await one(i)

    return asyncio.gather(*(bounded(offset + i) for i in range(n)))


def _runner(kind: str, base: str) -> Measure:
    """The measurement function of one kind of client."""
    if kind == "aiohttp":
        import aiohttp

        async def measure_aiohttp(latency: float, concurrency: int, n: int, offset: int) -> Marks:
            url, marks = f"{base}/lat/{latency}/v1/chat/completions", []
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def one(i: int) -> None:
                    async with session.post(url, json=_body(i)) as r:
                        _check(json.loads(await r.read())["choices"][0]["message"]["content"])
                    _mark(marks)

                await _gathered(one, concurrency, n, offset)
            return marks

        return lambda *a: asyncio.run(measure_aiohttp(*a))

    if kind == "httpx":
        import httpx

        async def measure_httpx(latency: float, concurrency: int, n: int, offset: int) -> Marks:
            url, marks = f"{base}/lat/{latency}/v1/chat/completions", []
            async with httpx.AsyncClient(timeout=60) as client:

                async def one(i: int) -> None:
                    _check((await client.post(url, json=_body(i))).json()["choices"][0]["message"]["content"])
                    _mark(marks)

                await _gathered(one, concurrency, n, offset)
            return marks

        return lambda *a: asyncio.run(measure_httpx(*a))

    if kind == "litellm":
        from migrator.models import import_litellm

        litellm = import_litellm()

        async def measure_litellm(latency: float, concurrency: int, n: int, offset: int) -> Marks:
            api_base, marks = f"{base}/lat/{latency}/v1", []

            async def one(i: int) -> None:
                messages = _body(i)["messages"]
                reply = await litellm.acompletion(
                    model="openai/fixed", api_base=api_base, api_key="none", messages=messages, max_tokens=5
                )
                _check(reply.choices[0].message.content)
                _mark(marks)

            await _gathered(one, concurrency, n, offset)
            return marks

        return lambda *a: asyncio.run(measure_litellm(*a))

    if kind == "dspy":
        import dspy

        program = dspy.Predict("review -> label")

        def measure_dspy(latency: float, concurrency: int, n: int, offset: int) -> Marks:
            lm = dspy.LM("openai/fixed", api_base=f"{base}/dspy/lat/{latency}/v1", api_key="none", cache=False, num_retries=0)
            devset = [dspy.Example(review=REVIEW.format(i=offset + i), label="positive").with_inputs("review") for i in range(n)]
            marks: Marks = []

            def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
                _mark(marks)  # list.append is atomic under the GIL
                return bool(example.label == prediction.label)

            evaluator = dspy.Evaluate(
                devset=devset, metric=metric, num_threads=concurrency, display_progress=False, display_table=False
            )
            with dspy.context(lm=lm):
                result = evaluator(program)
            score = float(getattr(result, "score", result))
            if score < 99.0:
                raise RuntimeError(f"DSPy scored {score}: the replies were not parsed")
            return sorted(marks)

        return measure_dspy

    if kind in ("migrator", "migrator-via-litellm"):
        from migrator.dataset import Example
        from migrator.evaluate import Config, evaluate
        from migrator.llm import Endpoint, LiteLLMClient, LLMRequest, LLMResponse
        from migrator.metrics import build_metric
        from migrator.prompts import PromptTemplate
        from migrator.spec import MetricSpec

        template = PromptTemplate((("user", "Review: {{ review }}"),))
        metric = build_metric(MetricSpec(name="label", labels=("positive", "negative")))
        config = Config("local/fixed", params=(("max_tokens", 5),))

        class Stamped:
            """The client, stamping each completion (evaluate takes any LLMClient)."""

            def __init__(self, inner: LiteLLMClient, marks: Marks) -> None:
                self.inner, self.marks, self.stats, self.ledger = inner, marks, inner.stats, inner.ledger

            async def complete(self, request: LLMRequest) -> LLMResponse:
                response = await self.inner.complete(request)
                _mark(self.marks)
                return response

        async def measure_migrator(latency: float, concurrency: int, n: int, offset: int) -> Marks:
            endpoint = Endpoint("local/fixed", api_base=f"{base}/lat/{latency}/v1", litellm_model="openai/fixed")
            examples = [Example(f"e{offset + i}", {"review": REVIEW.format(i=offset + i)}, "positive") for i in range(n)]
            marks: Marks = []
            async with LiteLLMClient(concurrency=concurrency, max_retries=0, direct=kind == "migrator") as client:
                results = await evaluate(Stamped(client, marks), config, endpoint, template, examples, metric)
            failed = [r.error for r in results if r.error]
            if failed:
                raise RuntimeError(f"{len(failed)} calls failed: {failed[0]}")
            return marks

        return lambda *a: asyncio.run(measure_migrator(*a))

    raise ValueError(f"unknown client kind {kind!r}")


def steady_state(marks: Marks, concurrency: int) -> tuple[float, float]:
    """(calls/s, CPU s per call) between the ``concurrency``-th and ``(n - concurrency)``-th completion."""
    first, last = marks[concurrency - 1], marks[len(marks) - concurrency - 1]
    calls = len(marks) - 2 * concurrency
    return calls / (last[0] - first[0]), (last[1] - first[1]) / calls


def worker(kind: str, base: str) -> None:
    """Serve measurement requests on stdin, one JSON line each, until EOF."""
    measure = _runner(kind, base)
    print(json.dumps({"ready": kind}), flush=True)
    offset = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            marks = measure(cmd["latency"], cmd["concurrency"], cmd["calls"], offset)
            rate, cpu = steady_state(marks, cmd["concurrency"])
            print(json.dumps({"calls_per_s": rate, "cpu_s_per_call": cpu}), flush=True)
        except Exception as exc:  # reported in the table; the benchmark goes on
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
        offset += cmd["calls"]


# --------------------------------------------------------------------------- parent


class Worker:
    """One client kind in its own process, driven over stdin/stdout."""

    def __init__(self, kind: str, base: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--base", base],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            raise RuntimeError(f"the {self.kind} worker did not start")

    def measure(self, latency: float, concurrency: int, calls: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"latency": latency, "concurrency": concurrency, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"the {self.kind} worker died"}
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _server(base: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/{path}", method="POST" if path == "reset" else "GET")
    with urllib.request.urlopen(request, timeout=10) as reply:
        data: dict[str, Any] = json.loads(reply.read())
        return data


def _median(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description="throughput vs the physical limit (concurrency / latency)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--waves", type=int, default=1, help="measured waves per cell (plus one before, one after)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="start no new repetition after this many seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.base)
        return

    started = time.monotonic()
    dspy_cache = tempfile.mkdtemp(prefix="dspy-cache-")
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DSPY_CACHEDIR": dspy_cache,
        "PYTHONWARNINGS": "ignore",
    }
    per_cell = args.waves + 2
    # The litellm road of migrator is bare litellm plus migrator's bookkeeping; it is
    # measured at 1 s and flat out only, to keep the run within about five minutes.
    cells = [(lat, c, per_cell * c, CLIENTS if lat == 1.0 else SHORT) for lat in LATENCIES for c in CONCURRENCIES]
    cells.append((0.0, MAX_RATE_CONCURRENCY, 6 * MAX_RATE_CONCURRENCY, ZERO_ONLY + CLIENTS))
    samples: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    server_max_in_flight: dict[str, list[int]] = {}
    done = 0
    with start_server() as base:
        workers = {kind: Worker(kind, base, env) for kind in ZERO_ONLY + CLIENTS}
        try:
            for w in workers.values():
                w.wait_ready()
            print(f"workers ready after {time.monotonic() - started:.0f}s; server {base}", flush=True)
            for rep in range(args.repeats):
                if rep and time.monotonic() - started > args.budget_s:
                    print(f"stopping after {rep} repetition(s): --budget-s {args.budget_s:g} reached", flush=True)
                    break
                for latency, concurrency, calls, kinds in cells:
                    for kind in kinds:
                        _server(base, "reset")
                        result = workers[kind].measure(latency, concurrency, calls)
                        peak = _server(base, "stats")["max_in_flight"]
                        server_max_in_flight.setdefault(f"{kind} {latency:g}s x{concurrency}", []).append(peak)
                        samples.setdefault((kind, latency, concurrency), []).append(result)
                done = rep + 1
                print(f"repetition {done} done at {time.monotonic() - started:.0f}s", flush=True)
        finally:
            for w in workers.values():
                w.close()
            shutil.rmtree(dspy_cache, ignore_errors=True)

    rows = []
    for (kind, latency, concurrency), runs in samples.items():
        ok = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {
            "client": kind,
            "latency_s": latency,
            "concurrency": concurrency,
            "calls_per_s": [round(r["calls_per_s"], 2) for r in ok],
            "cpu_ms_per_call": [round(1000 * r["cpu_s_per_call"], 3) for r in ok],
            "errors": [r["error"] for r in runs if "error" in r],
        }
        if latency > 0:
            row["ratio"] = [round(r["calls_per_s"] / (concurrency / latency), 4) for r in ok]
        rows.append(row)

    by_key = {(r["client"], r["latency_s"], r["concurrency"]): r for r in rows}
    print(f"\nratio of the limit (concurrency / latency), median of {done} repetition(s); [client CPU ms per call]")
    print(f"{'client':<22}" + "".join(f"{f'{lat:g}s x{c}':>15}" for lat in LATENCIES for c in CONCURRENCIES) + f"{'calls/s, 0s x32':>19}")
    for kind in ZERO_ONLY + CLIENTS:
        line = f"{kind:<22}"
        for lat in LATENCIES:
            for c in CONCURRENCIES:
                r = by_key.get((kind, lat, c))
                cell = f"{_median(r['ratio'], 2)} [{_median(r['cpu_ms_per_call'], 1)}]" if r and r["ratio"] else "-"
                line += f"{cell:>15}"
        r = by_key.get((kind, 0.0, MAX_RATE_CONCURRENCY))
        cell = f"{_median(r['calls_per_s'], 0)} [{_median(r['cpu_ms_per_call'], 1)}]" if r and r["calls_per_s"] else "-"
        print(line + f"{cell:>19}")
    for r in rows:
        if r["errors"]:
            print(f"errors: {r['client']} at {r['latency_s']:g}s x{r['concurrency']}: {r['errors'][0]}")

    summary = {
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "repetitions": done,
        "waves": args.waves,
        "wall_s": round(time.monotonic() - started, 1),
        "server_max_in_flight": server_max_in_flight,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.out} after {summary['wall_s']:.0f}s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
