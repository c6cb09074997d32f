"""Tests for migrator.local's server: arguments, and real llama.cpp servers started and stopped.

The tests marked ``local`` start llama.cpp on the packaged models and skip when those
(llama-cpp-python or the weights packages) are not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import LocalModelError
from migrator.local import LocalServer, missing_setup

REPO = Path(__file__).resolve().parents[2]
GEMMA = "gemma-3-270m"
QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.mark.parametrize(
    ("names", "options", "complaint"),
    [
        (["gpt-9"], {}, "Got 'gpt-9'"),
        ([], {}, "at least one model"),
        ("gemma-3-270m", {}, "must be a list of names"),
        ([GEMMA, GEMMA], {}, "must not repeat"),
        ([GEMMA], {"n_ctx": 0}, "'n_ctx' .* must be positive"),
        ([GEMMA], {"startup_timeout": -1.0}, "'startup_timeout' .* must be positive"),
        ([GEMMA], {"n_threads": 0}, "'n_threads' .* must be positive"),
    ],
)
def test_server_arguments_are_checked_when_it_starts(
    tmp_path: Path, names: list[str], options: dict[str, Any], complaint: str
) -> None:
    server = LocalServer(names, log_dir=tmp_path / "logs", **options)  # the constructor only stores
    with pytest.raises(LocalModelError, match=complaint), server:
        pass
    assert not (tmp_path / "logs").exists()


def test_api_base_of_a_model_not_served_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="no local server is running 'gemma-3-270m'"):
        LocalServer([GEMMA], log_dir=tmp_path).api_base(GEMMA)


def test_import_does_not_load_llama_cpp() -> None:
    code = "import sys, migrator.local; print(sorted(m for m in sys.modules if 'llama' in m))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- real models -------------------------------------------------------------------------


_MISSING = missing_setup()
needs_local_models = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


def _live_parents() -> dict[int, int]:
    """Map each live process to its parent, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def server_pids(root: int) -> set[int]:
    """Live descendants of ``root`` running llama_cpp.server."""
    parents = _live_parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        found |= frontier
    return {pid for pid in found if _is_llama(pid)}


def _is_llama(pid: int) -> bool:
    try:
        return b"llama_cpp.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pids: set[int]) -> set[int]:
    live = _live_parents()
    return {pid for pid in pids if pid in live}


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids)


@pytest.fixture(scope="module")
def litellm_module() -> object:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer([GEMMA, QWEN], log_dir=tmp_path_factory.mktemp("logs")) as server:
        yield server


# Short, unambiguous reviews. The 270M base model leans "positive": it misses e.g.
# "I hated it." and "A dull, boring mess.", so these are not a benchmark, only a check
# that demos + completion mode reach a real model intact.
REVIEWS = [
    ("An absolute masterpiece, I loved every minute.", "positive"),
    ("The worst movie I have ever seen.", "negative"),
    ("A wonderful, heartwarming film.", "positive"),
    ("Terrible script. I walked out.", "negative"),
    ("Brilliant acting and a great story.", "positive"),
    ("What a waste of time.", "negative"),
    ("Great fun, I would watch it again.", "positive"),
    ("Awful from start to finish.", "negative"),
]
DEMOS = "Review: I loved it.\nSentiment: positive\nReview: Awful.\nSentiment: negative\n"


@pytest.mark.local
@needs_local_models
def test_gemma_completion_with_two_demos_gets_simple_reviews_right(both: LocalServer, litellm_module: object) -> None:
    import litellm

    labels = []
    for review, _ in REVIEWS:
        response = litellm.text_completion(
            model=f"text-completion-openai/{GEMMA}",
            api_base=both.api_base(GEMMA),
            api_key="none",
            prompt=f"{DEMOS}Review: {review}\nSentiment:",
            max_tokens=3,
            temperature=0,
        )
        text = response.choices[0].text
        assert text.strip()
        labels.append(text.split()[0].strip(".,").lower())
    assert set(labels) <= {"positive", "negative"}
    # one slip allowed: another CPU's kernels may flip a near-tie at temperature 0
    correct = sum(got == want for got, (_, want) in zip(labels, REVIEWS, strict=True))
    assert correct >= len(REVIEWS) - 1, labels


@pytest.mark.local
@needs_local_models
def test_qwen_chat_answers(both: LocalServer, litellm_module: object) -> None:
    import litellm

    def ask(messages: list[dict[str, str]]) -> str:
        response = litellm.completion(
            model=f"openai/{QWEN}",
            api_base=both.api_base(QWEN),
            api_key="none",
            messages=messages,
            max_tokens=32,
            temperature=0,
        )
        content = response.choices[0].message.content
        assert isinstance(content, str)
        return content

    assert "def" in ask([{"role": "user", "content": "Write a Python function that adds two numbers."}])
    system = {"role": "system", "content": "Reply with exactly one word: positive or negative."}
    for review, label in REVIEWS[:4]:
        answer = ask([system, {"role": "user", "content": review}])
        assert answer.strip().strip(".").lower() == label


@pytest.mark.local
@needs_local_models
def test_servers_are_stopped_after_the_block_even_on_error(tmp_path: Path) -> None:
    before = server_pids(os.getpid())  # the module's shared servers may be running
    with LocalServer([GEMMA], log_dir=tmp_path):
        started = server_pids(os.getpid()) - before
        assert len(started) == 1
    assert wait_gone(started, timeout=0) == set()

    with pytest.raises(RuntimeError, match="boom"), LocalServer([GEMMA, QWEN], log_dir=tmp_path):
        started = server_pids(os.getpid()) - before
        assert len(started) == 2
        raise RuntimeError("boom")
    assert wait_gone(started, timeout=0) == set()


def _start_parent(tmp_path: Path) -> tuple[subprocess.Popen[str], set[int]]:
    """A separate Python process, leading its own process group, that serves gemma."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from migrator.local import LocalServer
        with LocalServer([{GEMMA!r}], log_dir=Path({str(tmp_path)!r})):
            print("ready", flush=True)
            time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "ready"
    started = server_pids(parent.pid)
    assert len(started) == 1
    return parent, started


@pytest.mark.local
@needs_local_models
def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    parent, started = _start_parent(tmp_path)
    try:
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs: only PDEATHSIG can help
        parent.wait()
        assert wait_gone(started) == set()
    finally:
        parent.kill()
        parent.communicate()


@pytest.mark.local
@needs_local_models
def test_ctrl_c_in_a_terminal_stops_the_servers(tmp_path: Path) -> None:
    parent, started = _start_parent(tmp_path)
    try:
        os.killpg(parent.pid, signal.SIGINT)  # what a terminal sends to its foreground group
        _, err = parent.communicate(timeout=30)
        assert "KeyboardInterrupt" in err
        assert wait_gone(started, timeout=0) == set()
    finally:
        parent.kill()
        parent.communicate()
