"""The linear planner: lists the space, never repeats a scored config, learns from scores."""

from __future__ import annotations

import statistics

import numpy as np

from migrator.search import Planner, Space

_FLOATS = {"a": {"temperature": (0.0, 1.0, 0.5)}, "b": {}}  # b takes no temperature
_SPACE = Space(["a", "b"], ["original", "terse", "xml"], [0, 2, 4], ["knn", "stratified"], _FLOATS, {"a": [], "b": [64, 256]})


def _space() -> list[dict]:
    return _SPACE.points()


def test_the_space_lists_every_config_once_with_only_the_parameters_a_model_takes() -> None:
    points = _space()
    # a: 3 prompts x (1 + 2x2) demo settings x 3 temperatures; b: 3 x 5 x 2 max_tokens
    assert len(points) == 45 + 30 == _SPACE.size()
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert {p["temperature"] for p in points if p["model"] == "a"} == {0.0, 0.5, 1.0}
    assert not any("temperature" in p for p in points if p["model"] == "b")
    assert all("demo_strategy" not in p for p in points if p["demos"] == 0)
    assert all(p["demo_strategy"] in ("knn", "stratified") for p in points if p["demos"])


def test_a_range_without_a_step_is_searched_on_eleven_points() -> None:
    points = Space(["a"], ["original"], [0], [], {"a": {"temperature": (0.0, 1.0, None)}}, {}).points()
    assert [p["temperature"] for p in points] == [round(i / 10, 6) for i in range(11)]


def test_a_step_that_does_not_divide_the_range_never_goes_past_its_end() -> None:
    points = Space(["a"], ["original"], [0], [], {"a": {"temperature": (0.0, 1.0, 0.6), "top_p": (0.1, 1.0, 0.3)}}, {}).points()
    assert sorted({p["temperature"] for p in points}) == [0.0, 0.6]
    assert sorted({p["top_p"] for p in points}) == [0.1, 0.4, 0.7, 1.0]


def test_it_never_proposes_a_config_already_scored_and_stops_when_all_are() -> None:
    points = _space()
    planner = Planner(points)
    observed: list[tuple[dict, float, int, bool]] = []
    for step in range(len(points)):
        params = planner.propose(observed, seed=step)
        assert params is not None and params in points
        assert all(params != p for p, *_ in observed)
        # pruned ones (fewer examples) count as tried too
        observed.append((params, 0.5, 10 if step % 3 else 4, True))
    assert planner.propose(observed, seed=99) is None


def test_a_config_whose_calls_all_failed_is_tried_once_more_then_counts_as_tried() -> None:
    points = _space()[:3]
    planner = Planner(points)
    observed = [(points[0], 0.5, 10, True), (points[1], 0.7, 10, True), (points[2], 0.0, 10, False)]
    assert planner.propose(observed, seed=0) == points[2]  # an outage may have passed
    observed.append((points[2], 0.0, 10, False))
    assert planner.propose(observed, seed=0) is None


def test_a_failed_trial_is_not_taken_for_a_score() -> None:
    # every call of a dozen of a's configs failed (an outage): those zeros must not steer
    # the search away from a, whose one real score beats every score of b
    points = _space()
    planner = Planner(points)
    good = next(p for p in points if p["model"] == "a" and p["demos"] == 4)
    failed = [(p, 0.0, 30, False) for p in points if p["model"] == "a" and p is not good][:12] * 2  # and retried
    observed = [(good, 0.6, 30, True), *failed, *[(p, 0.5, 30, True) for p in points if p["model"] == "b"][:6]]
    picks = [planner.propose(observed, seed=s) for s in range(40)]
    assert sum(p is not None and p["model"] == "a" for p in picks) >= 30  # 1 of 40 if the zeros counted
    assert not {str(p) for p in picks} & {str(p) for p, *_ in failed}  # tried is tried


def test_it_is_deterministic_for_a_history_and_a_seed() -> None:
    points = _space()
    observed = [(points[0], 0.4, 20, True), (points[50], 0.1, 8, True), (points[7], 0.6, 20, True)]
    assert Planner(points).propose(observed, seed=3) == Planner(points).propose(observed, seed=3)


def _truth(params: dict) -> float:
    """A made-up app: demos help, stratified more than knn, model a beats b, heat hurts."""
    score = 0.55 + 0.15 * (params["model"] == "a") + 0.05 * params["demos"] + 0.05 * (params.get("demo_strategy") == "stratified")
    return score - 0.1 * params.get("temperature", 0.0) + 0.02 * (params["prompt"] == "xml")


def test_it_finds_the_best_config_in_far_fewer_tries_than_random_order() -> None:
    points = _space()
    best = max(_truth(p) for p in points)
    planner = Planner(points)
    tries = []
    for seed in range(20):
        observed: list[tuple[dict, float, int, bool]] = []
        rng = np.random.default_rng(seed)
        while True:
            params = planner.propose(observed, seed=seed * 1000 + len(observed))
            assert params is not None
            noisy = float(np.clip(_truth(params) + rng.normal(0, 0.03), 0, 1))
            observed.append((params, noisy, 30, True))
            if _truth(params) >= best - 1e-9:
                break
        tries.append(len(observed))
    # one best config among 75: a random order needs 38 tries on average
    assert statistics.median(tries) <= 15, tries


# Runs a search of 15 picks on _SPACE with _truth's scores, printing each pick.
_SEARCH_SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})  # this folder, where test_planner is
from test_planner import _SPACE, _truth
from migrator.search import Planner
points = _SPACE.points()
planner, observed = Planner(points), []
for i in range(15):
    pick = planner.propose(observed, seed=7 + i)
    observed.append((pick, round(_truth(pick), 3), 20, True))
    print(json.dumps(pick, sort_keys=True))
"""


def _blas_kernels() -> list[str]:
    """OpenBLAS kernels every machine of this architecture runs (OPENBLAS_CORETYPE names)."""
    import platform
    from pathlib import Path

    if platform.machine() in ("x86_64", "AMD64"):
        flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
        # a kernel the CPU cannot run would crash numpy: AVX for Sandybridge, AVX2 for Haswell
        return ["Prescott", *(["Sandybridge"] if "avx" in flags else []), *(["Haswell"] if "avx2" in flags else [])]
    return ["ARMV8", "NEOVERSEN1"]


def test_the_same_history_and_seed_give_the_same_picks_whatever_the_blas_kernel() -> None:
    # Each kernel sums in its own order, and the posterior's repeated eigenvalues let an
    # SVD pick any basis: numpy's svd-based draw chose other configs from the third pick on.
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = _SEARCH_SCRIPT.format(here=str(Path(__file__).parent))
    runs, cores = {}, set()
    for kernel in _blas_kernels():
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "OPENBLAS_VERBOSE": "2"}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[kernel] = done.stdout.splitlines()
        cores |= {line for line in done.stderr.splitlines() if line.startswith("Core:")}
    assert len(cores) > 1, f"the kernels did not differ: {cores}"  # OpenBLAS says which core it runs
    first = next(iter(runs.values()))
    assert len(first) == 15 and len(set(first)) == 15
    assert all(picks == first for picks in runs.values()), {k: v[:5] for k, v in runs.items()}


def _complete(params: dict, score: float, n: int = 40) -> tuple[dict, float, int, bool]:
    return (params, score, n, True)


def test_a_model_that_never_gets_past_its_first_chunk_is_offered_less_with_each_trial() -> None:
    planner = Planner(_space())
    a = [p for p in _space() if p["model"] == "a"]
    b = [p for p in _space() if p["model"] == "b"]
    # a completes its trials; every trial of b was pruned after its first chunk of 8, on a
    # partial score that looks as good as a's: the regression alone would keep trying b
    observed = [_complete(a[0], 0.6), _complete(a[7], 0.7)]
    shares = []
    for pruned in (1, 3, 7):
        stuck = observed + [(b[i], 0.7, 8, True) for i in range(pruned)]
        picks = [planner.propose(stuck, seed=s) for s in range(300)]
        shares.append(sum(p is not None and p["model"] == "b" for p in picks) / len(picks))
    assert shares[0] > shares[1] > shares[2]
    assert shares[0] <= 1 / 2 + 0.05 and shares[2] <= 1 / 8 + 0.05  # at most 1 in (1 + its trials)
    # once b completes a trial it is offered as any model is
    through = observed + [(b[i], 0.7, 8, True) for i in range(7)] + [_complete(b[8], 0.7)]
    picks = [planner.propose(through, seed=s) for s in range(300)]
    assert sum(p is not None and p["model"] == "b" for p in picks) / len(picks) > shares[2]


def test_the_last_quarter_of_the_trial_budget_refines_next_to_the_best_config() -> None:
    planner = Planner(_space())
    a = [p for p in _space() if p["model"] == "a"]
    best = {"model": "a", "prompt": "xml", "demos": 2, "demo_strategy": "knn", "temperature": 0.5}
    assert best in a
    observed = [_complete(a[0], 0.5), _complete(best, 0.9), _complete(a[20], 0.6), _complete(a[30], 0.4)]

    def steps(p: dict) -> int:
        changed = {k for k in p.keys() | best.keys() if p.get(k) != best.get(k)} - {"demo_strategy"}
        return len(changed) if p["model"] == "a" else 99

    late = [planner.propose(observed, seed=s, trials=(30, 40)) for s in range(40)]
    assert all(p is not None and steps(p) == 1 for p in late)
    early = [planner.propose(observed, seed=s, trials=(10, 40)) for s in range(40)]
    assert any(p is not None and steps(p) > 1 for p in early)
    # once every neighbour is scored, the end of the budget goes back to the whole space
    neighbours = [p for p in _space() if steps(p) == 1]
    scored = observed + [_complete(p, 0.3) for p in neighbours]
    assert planner.propose(scored, seed=0, trials=(39, 40)) is not None
