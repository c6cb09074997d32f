"""llama.cpp's OpenAI-compatible server, one child process per packaged model.

:class:`LocalServer` assembles each model's weights (``_weights.py``), starts
``python -m llama_cpp.server`` on a free port, waits until it answers, and stops it
however the caller ends (the ``with`` block, Ctrl-C, interpreter exit, or on Linux a
killed parent). litellm then reaches each server like any hosted endpoint.

``llama_cpp`` is never imported here; the server runs as a child process, so
``import migrator.local`` stays cheap and works without the ``local`` extra.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from migrator.errors import LocalModelError
from migrator.local._weights import INSTALL_HINT, lookup, model_path

if TYPE_CHECKING:
    import urllib.request

_LOG_TAIL_LINES = 25
_STOP_GRACE_S = 10.0
_POLL_S = 0.25


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError as exc:
            raise LocalModelError(f"cannot listen on host {host!r}: {exc}") from exc
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only).

    Without it a SIGKILLed parent would leave a server holding 500 MB and a port. libc
    and ``prctl`` are resolved here, before the fork, so the child only makes the call:
    loading a library between fork and exec could deadlock on a lock another thread held.
    The signal follows the *thread* that started the child, so start servers from a
    thread that outlives them (normally the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        # the parent may have died before prctl took effect: then nobody will signal us
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


@dataclass(frozen=True)
class _Running:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log: IO[bytes]


@dataclass(eq=False)
class LocalServer:
    """llama.cpp's OpenAI-compatible server for local models, as a context manager.

    Each model gets its own ``python -m llama_cpp.server`` process on its own free port:
    one process answers one request at a time, so separate processes let two models
    work in parallel. The processes are stopped when the ``with`` block ends for any
    reason (including Ctrl-C), at interpreter exit, and, on Linux, when this process is
    killed outright. They run in their own session so a terminal's Ctrl-C reaches only
    us and we stop them once, in order.

    Args:
        names: keys of :data:`LOCAL_MODELS` to serve, each as its own ``--model_alias``.
        log_dir: receives ``llama-<name>.log`` per server (overwritten at each start).
        cache_dir: where weights are assembled; :func:`default_cache_dir` if ``None``.
        n_ctx: context window in tokens, prompt and answer together.
        host: interface to listen on; ``api_base`` uses it as the address too.
        startup_timeout: seconds to wait for every server to answer ``/v1/models``.
        n_threads: llama.cpp threads per server; ``None`` splits the CPUs among the
            servers, since threads beyond the free cores slow every call down.

    Arguments are checked in :meth:`start`, not in the constructor. Start the servers
    from a thread that outlives them (normally the main thread): on Linux they are sent
    SIGTERM when the thread that started them ends.

    Example::

        with LocalServer(["gemma-3-270m"], log_dir=Path("logs")) as server:
            litellm.text_completion(model="text-completion-openai/gemma-3-270m",
                                    api_base=server.api_base("gemma-3-270m"), ...)
    """

    # a dataclass: the constructor only stores; eq=False keeps identity equality, which
    # atexit.unregister(self.stop) relies on to forget this server and no other
    names: Sequence[str]
    _: KW_ONLY
    log_dir: Path
    cache_dir: Path | None = None
    n_ctx: int = 2048
    host: str = "127.0.0.1"
    startup_timeout: float = 120.0
    n_threads: int | None = None
    _running: dict[str, _Running] = field(default_factory=dict, init=False, repr=False)

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Assemble the weights, start one server per model and wait until all answer.

        Raises:
            LocalModelError: bad arguments, ``llama_cpp`` or weights not installed, or a
                server that exited or did not answer in time (with its log's last lines).
        """
        names = self._validated_names()
        if find_spec("llama_cpp") is None:
            raise LocalModelError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
        paths = {name: model_path(name, self.cache_dir) for name in names}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # llama.cpp threads spin while they wait for each other: more threads than free
        # cores makes every call several times slower, so servers that may be busy at
        # the same moment share the cores rather than each claiming all of them
        threads = self.n_threads or max(1, (os.cpu_count() or 1) // len(names))
        try:
            for name in names:
                self._launch(name, paths[name], threads)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def api_base(self, name: str) -> str:
        """The OpenAI-style base URL serving ``name``, e.g. ``http://127.0.0.1:8077/v1``."""
        running = self._running.get(name)
        if running is None:
            raise LocalModelError(f"no local server is running {name!r}; running: {sorted(self._running)}")
        return f"http://{self.host}:{running.port}/v1"

    def stop(self) -> None:
        """Stop every server this object started; safe to call more than once."""
        running = list(self._running.values())
        self._running.clear()
        atexit.unregister(self.stop)
        # signal all first so they shut down in parallel, then wait for each
        for r in running:
            _signal_group(r.process, signal.SIGTERM)
        for r in running:
            try:
                r.process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(r.process, signal.SIGKILL)
                r.process.wait()
            finally:
                r.log.close()

    def _validated_names(self) -> list[str]:
        """Check the stored arguments where work starts, so the constructor never fails."""
        if isinstance(self.names, str):
            raise LocalModelError(
                f"The 'names' parameter of LocalServer must be a list of names. Got {self.names!r} instead."
            )
        names = list(self.names)
        if not names:
            raise LocalModelError("The 'names' parameter of LocalServer must name at least one model. Got [] instead.")
        if len(set(names)) != len(names):
            raise LocalModelError(f"The 'names' parameter of LocalServer must not repeat a model. Got {names} instead.")
        for name in names:
            lookup(name)
        if self.n_ctx < 1:
            raise LocalModelError(f"The 'n_ctx' parameter of LocalServer must be positive. Got {self.n_ctx} instead.")
        if not self.startup_timeout > 0:
            raise LocalModelError(
                f"The 'startup_timeout' parameter of LocalServer must be positive. Got {self.startup_timeout} instead."
            )
        if self.n_threads is not None and self.n_threads < 1:
            raise LocalModelError(
                f"The 'n_threads' parameter of LocalServer must be positive or None. Got {self.n_threads} instead."
            )
        if self._running:
            raise LocalModelError("this LocalServer is already running; stop it before starting it again")
        return names

    def _launch(self, name: str, weights: Path, threads: int) -> None:
        port = _free_port(self.host)
        log_path = self.log_dir / f"llama-{name}.log"
        log = log_path.open("wb")
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(weights),
            "--model_alias", name,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            # by default a new request cuts a streaming answer short; queue it instead
            "--interrupt_requests", "False",
        ]  # fmt: skip
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except BaseException:
            log.close()
            raise
        if not self._running:
            atexit.register(self.stop)
        self._running[name] = _Running(process, port, log_path, log)

    def _wait_until_ready(self) -> None:
        import urllib.request  # only needed while starting; keeps the module import light

        deadline = time.monotonic() + self.startup_timeout
        pending = dict(self._running)
        # a proxy from the environment must not intercept calls to our own loopback port
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while pending:
            for name, r in list(pending.items()):
                code = r.process.poll()
                if code is not None:
                    raise LocalModelError(
                        f"the llama.cpp server for {name} exited with code {code} while starting; "
                        f"last lines of {r.log_path}:\n{_log_tail(r.log_path)}"
                    )
                if _answers(opener, f"{self.api_base(name)}/models"):
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                name, r = next(iter(pending.items()))
                raise LocalModelError(
                    f"the llama.cpp server for {name} did not answer within "
                    f"{self.startup_timeout:g}s; last lines of {r.log_path}:\n"
                    f"{_log_tail(r.log_path)}"
                )
            time.sleep(_POLL_S)


def _answers(opener: urllib.request.OpenerDirector, url: str) -> bool:
    import http.client

    try:
        with opener.open(url, timeout=2.0) as response:
            return 200 <= int(response.status) < 300
    except (OSError, http.client.HTTPException):  # URLError is an OSError
        return False


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # the server leads its own session, so its group holds it and anything it spawned
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
