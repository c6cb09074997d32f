"""A loopback OpenAI-compatible server that answers every request after a fixed delay.

No concurrency limit: each request sleeps on the event loop, so N requests in flight
take one latency, not N. The latency is part of the address, so one server serves
every latency a benchmark needs::

    http://127.0.0.1:PORT/lat/1.0/v1   ->  1 s per request
    http://127.0.0.1:PORT/lat/0/v1     ->  as fast as the server can answer

``GET /stats`` returns the requests served and the most that were in flight at once;
``POST /reset`` zeroes them. Run it as a process (it prints ``READY <port>``) or start
it from a benchmark with :func:`start_server`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

_CHAT = {
    "id": "chatcmpl-fixed",
    "object": "chat.completion",
    "created": 0,
    "model": "fixed",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
}
_TEXT = {
    "id": "cmpl-fixed",
    "object": "text_completion",
    "created": 0,
    "model": "fixed",
    "choices": [{"index": 0, "text": "positive", "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
}
# DSPy's chat adapter expects its field markers; every other client reads plain text.
_DSPY = json.dumps({**_CHAT, "choices": [{**_CHAT["choices"][0], "message": {"role": "assistant", "content": "[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]"}}]}).encode()
_CHAT_BODY = json.dumps(_CHAT).encode()
_TEXT_BODY = json.dumps(_TEXT).encode()


def make_app() -> web.Application:
    state = {"served": 0, "in_flight": 0, "max_in_flight": 0}

    async def reply(request: web.Request, body: bytes) -> web.Response:
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        try:
            await request.read()
            latency = float(request.match_info["latency"])
            if latency > 0:
                await asyncio.sleep(latency)
            state["served"] += 1
            return web.Response(body=body, content_type="application/json")
        finally:
            state["in_flight"] -= 1

    async def chat(request: web.Request) -> web.Response:
        dspy = request.headers.get("x-fixed-reply") == "dspy" or request.match_info.get("flavour") == "dspy"
        return await reply(request, _DSPY if dspy else _CHAT_BODY)

    async def text(request: web.Request) -> web.Response:
        return await reply(request, _TEXT_BODY)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state)

    async def reset(_: web.Request) -> web.Response:
        state.update(served=0, max_in_flight=state["in_flight"])
        return web.json_response(state)

    app = web.Application()
    for prefix in ("/lat/{latency}", "/{flavour}/lat/{latency}"):
        app.router.add_post(prefix + "/v1/chat/completions", chat)
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/v1/completions", text)
        app.router.add_post(prefix + "/completions", text)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


@contextmanager
def start_server() -> Iterator[str]:
    """Run the server in a child process; yields its base URL (``http://127.0.0.1:PORT``)."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = proc.stdout.readline()
        while not line.startswith("READY") and time.monotonic() < deadline:
            line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError("the fixed-latency server did not start")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"READY {port}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
