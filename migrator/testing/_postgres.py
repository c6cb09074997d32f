"""Throwaway PostgreSQL clusters and ``mlflow server`` processes for integration tests and benchmarks.

``with PostgresServer() as pg:`` runs a fresh cluster on ``127.0.0.1`` at a free port, its
data in a temp dir that ``stop()`` removes; ``pg.create_database("x")`` gives the URL of a new
database in the SQLAlchemy form Optuna's ``RDBStorage`` and ``mlflow server`` accept
(``postgresql+psycopg://postgres@127.0.0.1:PORT/x``). PostgreSQL's server refuses to run as
root, so under root (as on CI) the cluster belongs to the ``postgres`` user that Debian's
``postgresql`` package creates, and its tools run as that user.

``with MlflowServer(pg.create_database("mlflow"), artifacts) as server:`` runs a real
tracking server at ``server.uri``, with that database as its backend store and artifacts
proxied to a local folder.

``postgres_available()`` says why a cluster cannot run here (None if it can).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["MlflowServer", "PostgresServer", "postgres_available"]

_OWNER = "postgres"
_DEBIAN_BIN = Path("/usr/lib/postgresql")
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSTALL_HINT = "install PostgreSQL's server (Debian: apt-get install postgresql)"


def _free_port() -> int:
    """A port nothing listens on now; the server binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` sorts by (15,): numerically, so 15 comes after 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def _find_binaries() -> tuple[Path, Path] | None:
    """``initdb`` and ``pg_ctl``: from PATH, else the newest Debian install (it keeps them off PATH)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb), Path(pg_ctl)
    for bin_dir in sorted(_DEBIAN_BIN.glob("*/bin"), key=_version_key, reverse=True):
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir / "initdb", bin_dir / "pg_ctl"
    return None


def _as_owner_prefix() -> list[str] | None:
    """The command prefix that runs a tool as the cluster's owner: none needed unless root, None if impossible."""
    if os.geteuid() != 0:
        return []
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", _OWNER, "--"]
    if setpriv := shutil.which("setpriv"):
        return [setpriv, f"--reuid={_OWNER}", f"--regid={_OWNER}", "--init-groups", "--"]
    return None


def postgres_available() -> str | None:
    """Why a throwaway cluster cannot run on this machine, or None if it can."""
    if _find_binaries() is None:
        return f"initdb/pg_ctl not found on PATH or under {_DEBIAN_BIN}/*/bin: {_INSTALL_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OWNER)
        except KeyError:
            return f"running as root, which PostgreSQL refuses, and there is no {_OWNER!r} user to run it as: {_INSTALL_HINT}"
        if _as_owner_prefix() is None:
            return f"running as root, and neither runuser nor setpriv is there to run PostgreSQL as {_OWNER!r}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[distributed]'"
    return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class PostgresServer:
    """A throwaway PostgreSQL cluster on ``127.0.0.1``; a context manager.

    Args:
        max_connections: enough for about ten worker processes with small pools plus an
            mlflow server by default.
        startup_timeout: seconds ``pg_ctl`` waits for the server to accept connections.
    """

    def __init__(self, max_connections: int = 200, startup_timeout: float = 60.0) -> None:
        self.max_connections = max_connections
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._root: Path | None = None
        self._pg_ctl: Path | None = None
        self._prefix: list[str] = []

    @property
    def _data(self) -> Path:
        assert self._root is not None, "the server is not started"
        return self._root / "data"

    def start(self) -> PostgresServer:
        """Make a cluster in a fresh temp dir and start it; returns once it accepts connections."""
        if self._root is not None:
            raise RuntimeError("this PostgresServer is already started")
        reason = postgres_available()
        if reason is not None:
            raise RuntimeError(f"cannot start PostgreSQL: {reason}")
        binaries, prefix = _find_binaries(), _as_owner_prefix()
        assert binaries is not None and prefix is not None  # postgres_available checked both
        initdb, self._pg_ctl = binaries
        self._prefix = prefix
        self._root = Path(tempfile.mkdtemp(prefix="migrator-pg-"))
        try:
            sockets = self._root / "sockets"
            sockets.mkdir()
            if os.geteuid() == 0:
                for path in (self._root, sockets):
                    shutil.chown(path, _OWNER, _OWNER)
            # trust: nobody but this machine's tests reaches 127.0.0.1; --no-sync: the cluster is thrown away
            self._run([str(initdb), "-D", str(self._data), "-A", "trust", "-U", _OWNER, "-E", "UTF8", "--no-sync"])
            self.port = _free_port()
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={sockets}",
                f"-c max_connections={self.max_connections}",
                # A crash loses a throwaway cluster anyway: commits need not wait for the disk.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
            log = self._root / "postgres.log"
            wait = ["-w", "-t", str(round(self.startup_timeout))]
            try:
                self._run(
                    [str(self._pg_ctl), "-D", str(self._data), "-l", str(log), *wait, "-o", " ".join(options), "start"]
                )
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- {log} ---\n{_tail(log)}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, command: list[str]) -> None:
        """Run a PostgreSQL tool as the cluster's owner, from a directory that owner can enter."""
        result = subprocess.run(
            [*self._prefix, *command],
            cwd=self._root,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise RuntimeError(f"{Path(command[0]).name} failed ({result.returncode}): {output}")

    def url(self, database: str = "postgres", driver: str | None = "psycopg") -> str:
        """The SQLAlchemy URL of ``database`` (``postgresql+DRIVER://``); ``driver=None`` gives libpq's form."""
        if self.port is None:
            raise RuntimeError("this PostgresServer is not started")
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return f"{scheme}://{_OWNER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(
                "The 'name' parameter of create_database must be a lowercase SQL identifier of at most 63 characters. "
                f"Got {name!r} instead."
            )
        import psycopg
        from psycopg import sql

        # CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(self.url(driver=None), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (dropping its connections) and remove its files; safe to call twice."""
        if self._root is None:
            return
        try:
            if self._pg_ctl is not None and (self._data / "postmaster.pid").exists():
                self._run([str(self._pg_ctl), "-D", str(self._data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root, self.port = None, None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MlflowServer:
    """A real ``mlflow server`` process on ``127.0.0.1``, its runs in ``backend_store_uri``; a context manager.

    Args:
        backend_store_uri: where runs are kept, e.g. a :meth:`PostgresServer.create_database` URL.
        artifacts: the folder the server stores uploaded artifacts in; a temp dir if None.
        startup_timeout: seconds to wait for ``GET /health`` (the first start migrates the schema).
    """

    def __init__(self, backend_store_uri: str, artifacts: Path | None = None, startup_timeout: float = 120.0) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts = artifacts
        self.startup_timeout = startup_timeout
        self.uri = ""
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """The server's stdout and stderr."""
        assert self._root is not None, "the server is not started"
        return self._root / "mlflow.log"

    def start(self) -> MlflowServer:
        """Start the server; returns once ``GET /health`` answers 200."""
        if self._proc is not None:
            raise RuntimeError("this MlflowServer is already started")
        self._root = Path(tempfile.mkdtemp(prefix="migrator-mlflow-"))
        artifacts = self.artifacts or self._root / "artifacts"
        port = _free_port()
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        env = {
            **os.environ,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "GIT_PYTHON_REFRESH": "quiet",
        }
        with self.log.open("wb") as log:
            # its own session, so stop() reaches the uvicorn worker it spawns too; cwd: no stray ./mlruns
            self._proc = subprocess.Popen(
                command,
                cwd=self._root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.uri = f"http://127.0.0.1:{port}"
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(f"mlflow server exited ({code}) before answering /health:\n{_tail(self.log)}")
            # refused while it starts; URLError and HTTPError are OSErrors too
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not answer /health within {self.startup_timeout:g} s:\n{_tail(self.log)}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Terminate the server's process group and remove its temp dir; safe to call twice."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=15)
            # whatever of the group outlived the grace period (the uvicorn worker too) goes now
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
