"""The benchmarks' server: migrator's loopback server answering "positive" after a fixed delay.

It is :class:`migrator.testing.LoopbackServer` (no faults, nothing recorded) in a process
of its own, so its CPU never competes with what is measured. The latency is part of
the address, so one server serves every latency a benchmark needs::

    http://127.0.0.1:PORT/lat/1.0/v1        1 s per request
    http://127.0.0.1:PORT/lat/0/v1          as fast as the server can answer
    http://127.0.0.1:PORT/dspy/lat/1.0/v1   the same, replying in DSPy's field format

No concurrency limit: a request waits on a timer, not a worker, so N requests in flight
take one latency, not N. ``GET /stats`` returns the requests served and the most that
were in flight at once; ``POST /reset`` zeroes them.

Run it as a process (prints ``READY <port>``) or from Python with :func:`start_server`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrator.testing import Attempt, Completion, LoopbackServer

_DSPY = "[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]"


def fixed_reply(attempt: Attempt) -> Completion:
    """The label ``positive`` (in DSPy's field format under ``/dspy/``), with the same usage every time."""
    return Completion(_DSPY if attempt.path.startswith("/dspy/") else "positive", 20, 1)


@contextmanager
def start_server() -> Iterator[str]:
    """Run the server in a child process; yields its base URL (``http://127.0.0.1:PORT``)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = proc.stdout.readline()
        while not line.startswith("READY") and line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError("the fixed-latency server did not start")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible server with a fixed latency per request")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with suppress(KeyboardInterrupt), LoopbackServer(reply=fixed_reply, record=False, port=args.port) as server:
        print(f"READY {server.port}", flush=True)
        threading.Event().wait()  # until terminated


if __name__ == "__main__":
    main()
