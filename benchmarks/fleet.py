"""A fleet of 100 small apps x 6 models in one ``migrator fleet run``: wall time against the ideal,
peak memory, and a SIGKILL + rerun that must pay for nothing twice, measured in one run.

One command::

    python benchmarks/fleet.py           # about 13 minutes on 2 cores -> benchmarks/results/fleet.json
    python benchmarks/fleet.py --smoke   # under a minute: 5 apps, short latency; writes nothing

The fleet is generated in a temporary folder: ``--apps`` apps, each a folder with its own
``migration.yaml`` and its own small dataset (distinct rows and seed, so no two apps send
the same request), one ``fleet.yaml`` with the shared budget and search space. Each app
migrates a legacy model to 6 targets on one loopback OpenAI-compatible server
(``migrator.testing.LoopbackServer``), which answers every request after a fixed latency
with no concurrency limit. ``pruner: none`` and ``chunk_size = concurrency = C`` make
every trial score all of dev in full chunks of C concurrent calls, so the work is
predictable. Each app's endpoints carry its name in the address (``.../app-017/v1``), so the
server knows which app sent each request and when.

Three fleet runs, each ``migrator fleet run ROOT --out DIR --no-tracking --quiet`` in a
child process (one process for the whole fleet, one response cache ``DIR/cache.db``):

1. **Timed**: launch to exit. The ideal is every request the server received x latency / C
   (an app's calls go out C at a time; apps run one after another). Peak memory is the
   child's max RSS (``os.wait4``, which includes any processes it waited for).
2. **Killed**: the first ``--kill-apps`` of those apps (the same spec files, with the same
   fleet.yaml) into a new folder, SIGKILLed inside an app's search: once ``--kill-at`` of its
   apps have a summary.json, the next app has started and ``kill_delay`` seconds have passed,
   at a moment when requests are in flight (the worst moment).
3. **Rerun**: the same command again, to the end.

Re-paid calls are counted by request: a request body the server received in the killed
run and again in the rerun was paid twice (the target is 0). Those of the chunk the kill
interrupted are reported apart: their replies were paid (the server answers them anyway)
and never all reached the client. Any other re-paid call is a problem: a reply the client
had, lost. The killed and resumed runs together must send exactly the requests of the
timed run, plus those re-paid.

The killed run and its rerun use a quarter of the apps and ``--kill-latency`` (a quarter
of the timed run's), so they add about 1.5 minutes, not 15. The server's latency is changed
between runs (``FaultPlan.latency_s``), so every run uses the same spec files. Which
requests a run sends does not depend on the latency: every timeout is far above it.

Where the time beyond the ideal goes is read off the server and the output files: before
the first request (imports, the plan of every app), each app's span at the server against
its own ideal, its last reply to its summary.json, summary.json to report.html (the
charts), report.html to the next app's first request (its study, planner, first ask), and
the last report to exit.

Results go to ``benchmarks/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from migrator.testing import (  # noqa: E402
    Attempt,
    Completion,
    FaultPlan,
    LoopbackServer,
    make_sentiment_rows,
    run_env,
    sentiment_reply,
    server_spec,
)

KEY = "sk-bench-fleet-0123456789abcdef"
# the six profiles of migrator.testing.PROFILES: each answers differently (any other name answers as oracle)
TARGETS = ("fault-oracle", "fault-fewshot", "fault-chatty", "fault-hot", "fault-weak", "fault-shaky")
LEGACY = "fault-legacy"  # not a target, so each app's verdict also scores the app as it runs today
FULL: dict[str, Any] = {
    "apps": 100,
    "trials": 8,
    "concurrency": 8,
    "train": 6,
    "dev": 16,
    "test": 8,
    "latency": 0.2,
    "kill_apps": 25,
    "kill_latency": 0.05,
    "kill_at": 0.4,
    "kill_delay": 0.4,
    "tracking": False,
}
SMOKE: dict[str, Any] = {
    "apps": 5,
    "trials": 7,
    "concurrency": 4,
    "train": 4,
    "dev": 8,
    "test": 4,
    "latency": 0.02,
    "kill_apps": 5,
    "kill_latency": 0.02,
    "kill_at": 0.4,
    "kill_delay": 0.05,
    "tracking": False,
}


class RequestLog:
    """The server's responder, wrapped: every request's arrival (epoch s), app (from its address) and body hash."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, attempt: Attempt) -> Completion:
        key = hashlib.sha256(json.dumps(attempt.body, sort_keys=True).encode()).hexdigest()
        app = attempt.path.strip("/").split("/")[0]
        with self._lock:
            self.entries.append((time.time(), app, key))
        return sentiment_reply(attempt)

    def since(self, start: int) -> list[tuple[float, str, str]]:
        with self._lock:
            return self.entries[start:]

    def __len__(self) -> int:
        with self._lock:
            return len(self.entries)


def write_fleet(root: Path, base_url: str, setting: dict[str, Any]) -> list[str]:
    """``apps`` app folders under ``root``, each its own dataset and spec, and the shared fleet.yaml."""
    rows = setting["train"] + setting["dev"] + setting["test"]
    c = setting["concurrency"]
    shared = {
        "budget": {"trials": setting["trials"], "finalists": 1},
        "search_space": {
            "temperature": None,
            "demos": {"k": [0, 2], "strategies": ["random"]},
            "pruner": "none",
            "chunk_size": c,
            "concurrency": c,
            # a slow reply on a busy machine is waited for, not retried: every run sends the same requests
            "timeout_s": 60.0,
        },
    }
    root.mkdir(parents=True)
    (root / "fleet.yaml").write_text(yaml.safe_dump(shared, sort_keys=False))
    names = []
    for i in range(setting["apps"]):
        name = f"app-{i:03d}"
        folder = root / name
        folder.mkdir()
        data = folder / "reviews.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_sentiment_rows(rows, seed=i)))
        api_base = f"{base_url}/{name}/v1"
        spec = server_spec(api_base, str(data), name=name, seed=i)
        del spec["budget"], spec["search_space"]  # from fleet.yaml
        at = {"api_base": api_base, "api_key_env": spec["app"]["api_key_env"]}
        spec["app"]["model"] = f"openai/{LEGACY}"
        spec["targets"] = [{"model": f"openai/{t}", **at} for t in TARGETS]
        spec["dataset"]["split"] = {
            "train": setting["train"] / rows,
            "dev": setting["dev"] / rows,
            "test": setting["test"] / rows,
        }
        (folder / "migration.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        names.append(name)
    return names


def sub_fleet(root: Path, into: Path, names: list[str]) -> Path:
    """A fleet of some of ``root``'s apps: its fleet.yaml and those apps' spec files, unchanged."""
    into.mkdir(parents=True)
    shutil.copy(root / "fleet.yaml", into / "fleet.yaml")
    for name in names:
        (into / name).mkdir()
        shutil.copy(root / name / "migration.yaml", into / name / "migration.yaml")
    return into


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc; [] once ``pid`` is gone."""
    if not Path(f"/proc/{pid}").exists():
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return found


def _rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in text.splitlines() if line.startswith("VmRSS:")), 0.0)


class Run:
    """One ``migrator fleet run`` child process, its resident memory (with its children's) sampled every half second."""

    def __init__(self, root: Path, out: Path, *, tracking: bool) -> None:
        cmd = [sys.executable, "-m", "migrator", "fleet", "run", str(root), "--out", str(out), "--quiet"]
        cmd += [] if tracking else ["--no-tracking"]
        env = {**run_env(KEY), "PYTHONWARNINGS": "ignore"}
        self.launched = time.time()
        self.proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.rss: list[tuple[float, float]] = []
        self._streams: dict[str, str] = {}
        # read the pipes on threads so a chatty child cannot block on a full pipe before it exits
        self._threads = [
            threading.Thread(target=self._read, args=("stdout",), daemon=True),
            threading.Thread(target=self._read, args=("stderr",), daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        self._streams[name] = stream.read()

    def _sample(self) -> None:
        """Every half second, the resident memory of the fleet process and of all its descendants
        (the process that draws the reports), summed."""
        while self.proc.returncode is None:
            pids = _tree(self.proc.pid)
            if not pids:
                return
            total = sum(_rss_mb(pid) for pid in pids)
            self.rss.append((time.time() - self.launched, total))
            time.sleep(0.5)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self) -> dict[str, Any]:
        """Wait for the process: its wall, CPU, max RSS (with any children it waited for), exit code and stderr."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        ended = time.time()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        for thread in self._threads:
            thread.join(timeout=10)
        return {
            "wall_s": ended - self.launched,
            "launched": self.launched,
            "ended": ended,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_mb": usage.ru_maxrss / 1024,
            "exit": self.proc.returncode,
            "stderr": self._streams.get("stderr", ""),
        }


def fleet_rows(out: Path) -> dict[str, str]:
    path = out / "fleet.json"
    return {row["app"]: row["status"] for row in json.loads(path.read_text())["apps"]} if path.is_file() else {}


def timed_run(root: Path, out: Path, log: RequestLog, setting: dict[str, Any], *, tracking: bool) -> dict[str, Any]:
    """The uninterrupted fleet run: wall against the ideal, memory, and where the time beyond the ideal goes."""
    start = len(log)
    proc = Run(root, out, tracking=tracking)
    run = proc.wait()
    entries = log.since(start)
    latency, c = setting["latency"], setting["concurrency"]
    ideal = len(entries) * latency / c
    run.update(requests=len(entries), distinct=len({k for _, _, k in entries}), ideal_s=ideal)
    run["ratio"] = run["wall_s"] / ideal if ideal else None
    run["phases"] = phases(entries, out, run, latency, c)
    run["rss_mb"] = rss_profile(proc.rss)
    run["tree_rss_mb"] = max((mb for _, mb in proc.rss), default=0.0)
    run["statuses"] = dict(Counter(fleet_rows(out).values()))
    return run


def phases(
    entries: list[tuple[float, str, str]], out: Path, run: dict[str, Any], latency: float, c: int
) -> dict[str, Any]:
    """Where the wall time goes: before the first request, each app's requests against its own ideal, between apps.

    An app is at the server from its first request to its last reply; after that it writes
    summary.json (the verdict's statistics) and the next app starts (study, planner, first
    ask) until its first request. Its report.html (the charts) is drawn meanwhile, in
    another process: the time to it overlaps the next app's.
    """
    spans: dict[str, list[float]] = {}
    counts: Counter[str] = Counter()
    for at, app, _ in entries:
        span = spans.setdefault(app, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)
        counts[app] += 1
    order = sorted(spans, key=lambda a: spans[a][0])
    at_server = [spans[a][1] + latency - spans[a][0] for a in order]
    ideal = [counts[a] * latency / c for a in order]
    summary = [(out / a / "summary.json").stat().st_mtime - (spans[a][1] + latency) for a in order]
    report = [(out / a / "report.html").stat().st_mtime - (out / a / "summary.json").stat().st_mtime for a in order]
    setup = [spans[b][0] - (out / a / "summary.json").stat().st_mtime for a, b in itertools.pairwise(order)]

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "total": sum(values)} if values else {"median": 0.0, "total": 0.0}

    return {
        "requests_per_app": {
            "min": min(counts.values()),
            "median": statistics.median(counts.values()),
            "max": max(counts.values()),
        },
        "ideal_per_app_s": stats(ideal),
        "before_first_request_s": spans[order[0]][0] - run["launched"],
        "at_server_beyond_ideal_s": stats([s - i for s, i in zip(at_server, ideal, strict=True)]),
        "last_reply_to_summary_s": stats(summary),
        "summary_to_report_s": stats(report),
        "summary_to_next_app_s": stats(setup),
        "after_last_report_s": run["ended"] - (out / order[-1] / "report.html").stat().st_mtime,
    }


def rss_profile(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Resident memory over the run: its peak in each fifth of the run, so growth per app shows."""
    if not samples:
        return {}
    end = samples[-1][0]
    fifths = [max((mb for t, mb in samples if k * end / 5 <= t <= (k + 1) * end / 5), default=0.0) for k in range(5)]
    return {"samples": len(samples), "peak_by_fifth": fifths}


def wait_for(condition: Callable[[], bool], run: Run, what: str, timeout_s: float = 900) -> None:
    """Poll ``condition`` until it holds; stop the benchmark if the run ends first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if run.proc.poll() is not None:
            raise SystemExit(f"the fleet run exited {run.proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def killed_and_rerun(
    root: Path, out: Path, log: RequestLog, server: LoopbackServer, setting: dict[str, Any], reference: Counter[str]
) -> dict[str, Any]:
    """SIGKILL a fresh fleet run partway, run it again to the end, and count what was paid twice."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    kill_after = max(1, round(setting["kill_at"] * len(names)))

    def done() -> int:
        return sum((out / name / "summary.json").is_file() for name in names)

    start = len(log)
    proc = Run(root, out, tracking=False)
    wait_for(lambda: done() >= kill_after, proc, f"{kill_after} apps")
    # apps run in name order: kill inside the next one's search, while its calls are in flight
    following = names[min(kill_after, len(names) - 1)]
    wait_for(lambda: any(app == following for _, app, _ in log.since(start)), proc, "the next app's first request")
    time.sleep(setting["kill_delay"])
    wait_for(lambda: server.in_flight > 0, proc, "a request in flight")
    in_flight = server.in_flight
    proc.kill()
    killed = proc.wait()
    # replies in flight are still sent (to a closed socket) and paid: wait for them before counting
    time.sleep(setting["kill_latency"] + 0.5)
    done_at_kill = done()
    first = log.since(start)
    middle = len(log)
    rerun = Run(root, out, tracking=False).wait()
    second = log.since(middle)
    paid_first = Counter(k for _, _, k in first)
    paid_second = Counter(k for _, _, k in second)
    both = paid_first + paid_second
    repaid = paid_first & paid_second
    # chunks go out one after another, so the chunk the kill interrupted is among the last C requests:
    # its replies never all reached the client (in flight, or answered and not yet stored)
    last_chunk = {k for _, _, k in first[-setting["concurrency"] :]}
    return {
        "apps": len(names),
        "kill_after_apps": kill_after,
        "apps_done_at_kill": done_at_kill,
        "interrupted_app": first[-1][1] if first else None,
        "in_flight_at_kill": in_flight,
        "killed": {
            "exit": killed["exit"],
            "wall_s": killed["wall_s"],
            "max_rss_mb": killed["max_rss_mb"],
            "requests": len(first),
        },
        "rerun": {
            "exit": rerun["exit"],
            "wall_s": rerun["wall_s"],
            "max_rss_mb": rerun["max_rss_mb"],
            "requests": len(second),
            "stderr_tail": rerun["stderr"][-2000:],
        },
        "requests_total": len(first) + len(second),
        "requests_reference": sum(reference.values()),
        "repaid": sum(repaid.values()),
        "repaid_of_last_chunk": sum(n for k, n in repaid.items() if k in last_chunk),
        "repaid_before_last_chunk": sum(n for k, n in repaid.items() if k not in last_chunk),
        "missing_vs_reference": sum((reference - both).values()),
        "extra_vs_reference": sum((both - reference).values()) - sum(repaid.values()),
        "statuses": dict(Counter(fleet_rows(out).values())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="a fleet of small apps in one process: wall against the ideal, memory, kill + rerun"
    )
    parser.add_argument("--smoke", action="store_true", help="5 apps, short latency: checks it runs, writes nothing")
    parser.add_argument("--apps", type=int, help="apps in the timed run (default 100)")
    parser.add_argument("--trials", type=int, help="trials per app (default 8: 6 warm starts, 2 searched)")
    parser.add_argument("--latency", type=float, help="seconds per call in the timed run (default 0.2)")
    parser.add_argument("--concurrency", type=int, help="C: calls in flight at once, and the chunk size (default 8)")
    parser.add_argument("--kill-apps", type=int, help="the killed run's fleet: the first N apps (default 25)")
    parser.add_argument(
        "--kill-latency", type=float, help="seconds per call in the killed run and its rerun (default 0.05)"
    )
    parser.add_argument("--kill-at", type=float, help="kill once this share of its apps is done (default 0.4)")
    parser.add_argument("--tracking", action="store_true", help="time the fleet with MLflow tracking on (default off)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/fleet.json; none with --smoke")
    parser.add_argument("--keep", action="store_true", help="keep the fleet and the runs' output directories")
    args = parser.parse_args()
    setting = dict(SMOKE if args.smoke else FULL)
    for key in ("apps", "trials", "latency", "concurrency", "kill_apps", "kill_latency", "kill_at", "tracking"):
        if getattr(args, key) not in (None, False):
            setting[key] = getattr(args, key)
    setting["kill_apps"] = min(setting["kill_apps"], setting["apps"])
    out_file = args.out or (None if args.smoke else HERE / "results" / "fleet.json")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="migrator-fleet-"))
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    log = RequestLog()
    try:
        with LoopbackServer(FaultPlan(latency_s=setting["latency"]), reply=log, record=False) as server:
            names = write_fleet(work / "apps", server.base_url, setting)
            timed = timed_run(work / "apps", work / "timed", log, setting, tracking=setting["tracking"])
            print(
                f"timed: {timed['requests']} requests, ideal {timed['ideal_s']:.1f}s, wall {timed['wall_s']:.1f}s "
                f"({timed['ratio']:.3f} x), max RSS {timed['max_rss_mb']:.0f} MB, exit {timed['exit']}",
                flush=True,
            )
            server.plan = FaultPlan(latency_s=setting["kill_latency"])
            subset = names[: setting["kill_apps"]]
            reference = Counter(k for _, app, k in log.entries if app in subset)
            kill = killed_and_rerun(
                sub_fleet(work / "apps", work / "kill-apps", subset), work / "killed", log, server, setting, reference
            )
            print(
                f"killed after {kill['apps_done_at_kill']} of {kill['apps']} apps ({kill['in_flight_at_kill']} in flight), "
                f"rerun exit {kill['rerun']['exit']}: {kill['requests_total']} requests against {kill['requests_reference']}, "
                f"re-paid {kill['repaid']}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept the fleet and its runs in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    stderr = timed.pop("stderr")
    timed["warnings"] = [line for line in stderr.splitlines() if "warning" in line.lower() or "error" in line.lower()]
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "setting": setting,
        "command": "migrator fleet run APPS --out DIR --quiet" + ("" if setting["tracking"] else " --no-tracking"),
        "wall_s": round(time.monotonic() - started, 1),
        "timed": _rounded(timed),
        "kill": _rounded(kill),
        "targets": {
            "wall_over_ideal": {"value": round(timed["ratio"], 3), "target": 1.25, "met": timed["ratio"] <= 1.25},
            # the fleet process and the one that draws the reports, together
            "max_rss_mb": {"value": round(timed["tree_rss_mb"]), "target": 2048, "met": timed["tree_rss_mb"] < 2048},
            "repaid_calls": {"value": kill["repaid"], "target": 0, "met": kill["repaid"] == 0},
            # a SIGKILL loses the replies of requests in flight (sent, never read): the floor for the above
            "repaid_beyond_in_flight": {"value": _beyond(kill), "target": 0, "met": _beyond(kill) == 0},
        },
    }
    report(result)
    problems = problems_of(result)
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


def _beyond(kill: dict[str, Any]) -> int:
    """Calls paid again beyond those in flight when the process was killed."""
    return max(0, kill["repaid"] - kill["in_flight_at_kill"])


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items() if k not in ("launched", "ended")}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def problems_of(result: dict[str, Any]) -> list[str]:
    """What went wrong: a run that failed, an app not migrated, requests lost or sent twice.

    Missing a target is not a problem here: the table says so.
    """
    timed, kill, setting = result["timed"], result["kill"], result["setting"]
    problems = [f"the timed run exited {timed['exit']}"] if timed["exit"] != 0 else []
    if timed["statuses"] != {"migrated": setting["apps"]}:
        problems.append(f"timed run: apps {timed['statuses']}")
    if timed["distinct"] != timed["requests"]:
        problems.append(f"timed run: {timed['requests'] - timed['distinct']} requests sent twice")
    if kill["rerun"]["exit"] != 0:
        problems.append(f"the rerun exited {kill['rerun']['exit']}: {kill['rerun']['stderr_tail']}")
    if kill["statuses"] != {"migrated": setting["kill_apps"]}:
        problems.append(f"killed + rerun: apps {kill['statuses']}")
    if kill["repaid_before_last_chunk"]:
        problems.append(f"{kill['repaid_before_last_chunk']} replies of chunks before the kill's were paid again")
    if kill["missing_vs_reference"] or kill["extra_vs_reference"]:
        problems.append(
            f"killed + rerun sent {kill['extra_vs_reference']} requests the timed run did not, "
            f"and not {kill['missing_vs_reference']} that it did"
        )
    return [*problems, *timed["warnings"]]


def report(result: dict[str, Any]) -> None:
    timed, kill, targets = result["timed"], result["kill"], result["targets"]
    ph = timed["phases"]

    def med_total(key: str) -> str:
        return f"{ph[key]['median']:.2f} s ({ph[key]['total']:.0f})"

    rows = [
        ("requests (timed run)", f"{timed['requests']}", ""),
        ("ideal = requests x latency / C", f"{timed['ideal_s']:.1f} s", ""),
        ("wall, launch to exit", f"{timed['wall_s']:.1f} s", ""),
        ("wall / ideal", f"{timed['ratio']:.3f}", "<= 1.25"),
        ("peak RSS, fleet process + report drawer (sampled)", f"{timed['tree_rss_mb']:.0f} MB", "< 2048 MB"),
        ("  of the fleet process alone (os.wait4)", f"{timed['max_rss_mb']:.0f} MB", ""),
        ("re-paid calls after SIGKILL + rerun", f"{kill['repaid']}", "0"),
        ("  of them of the chunk the kill interrupted", f"{kill['repaid_of_last_chunk']}", ""),
        ("  requests in flight at the kill (server)", f"{kill['in_flight_at_kill']}", ""),
        ("  re-paid beyond those in flight", f"{targets['repaid_beyond_in_flight']['value']}", "0"),
        ("  killed + rerun requests / timed run's", f"{kill['requests_total']} / {kill['requests_reference']}", ""),
        ("per app, median (sum over apps):", "", ""),
        ("  ideal", med_total("ideal_per_app_s"), ""),
        ("  at the server beyond the ideal", med_total("at_server_beyond_ideal_s"), ""),
        ("  last reply -> summary.json", med_total("last_reply_to_summary_s"), ""),
        ("  summary.json -> next app's first request", med_total("summary_to_next_app_s"), ""),
        ("  summary.json -> report.html (drawn meanwhile)", med_total("summary_to_report_s"), ""),
        ("before the first request", f"{ph['before_first_request_s']:.1f} s", ""),
        ("after the last report", f"{ph['after_last_report_s']:.1f} s", ""),
        (
            "RSS peak in each fifth of the run",
            " ".join(f"{mb:.0f}" for mb in timed["rss_mb"].get("peak_by_fifth", [])),
            "",
        ),
    ]
    print()
    for name, value, target in rows:
        print(f"{name:<46} {value:>18} {target:>10}")
    print("targets: " + ", ".join(f"{k} {'met' if v['met'] else 'MISSED'}" for k, v in targets.items()))


if __name__ == "__main__":
    main()
