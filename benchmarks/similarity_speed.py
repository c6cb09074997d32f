"""How fast the `similarity` metric scores: the model's load time, and (reply, expected) pairs per second.

One command (the `similarity` extra installed; about 90 seconds on a 2-core machine)::

    python benchmarks/similarity_speed.py
    python benchmarks/similarity_speed.py --pairs 100 --repeats 1 --json out.json

Pairs are support replies of one to three sentences (7 to 44 words, median 26) against 20 expected
answers, as a search scores them: every reply new, the expected answers the same on every
trial. Each row is the median of ``--repeats`` repetitions (the rows' order rotated each time, as
the machine is shared), against peers measured in the same run on the same texts:

- ``load``: a fresh process imports onnxruntime and tokenizers, checks the model file's
  sha256 and opens the session (each repetition is its own process).
- ``score, expected cached``: what the metric runs (``Embedder.cosines``, after stripping fences)
  on a fresh embedder whose cache already holds the expected answers (a search after its first
  trial): one reply embedded per pair.
- ``score, nothing cached``: the same with an empty cache: the first trial.
- ``score, both cached``: a reply seen before (the reply cache hands back the same text).
- ``onnxruntime forward, batch 1`` at 1 and 2 intra-op threads: the model alone on the same
  tokens, without tokenizing, pooling or the cache: how much of the time is the model.
- ``onnxruntime forward, batches of 32``: the same replies 32 at a time, each batch padded to
  its longest reply, the replies sorted by length (``embed`` runs one text at a time: this says
  what that gives up).
- ``f1 metric``: the token-overlap metric on the same pairs, the cheapest text metric.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from migrator import similarity  # noqa: E402
from migrator.metrics import build_metric  # noqa: E402
from migrator.spec import MetricSpec  # noqa: E402

SENTENCES = [
    "Thanks for reaching out about order {n}.",
    "Your refund has been processed and should reach your account within 5 business days.",
    "I'm sorry the package arrived damaged; we will send a replacement at no cost.",
    "You can reset your password from the login page by clicking 'Forgot password'.",
    "Your subscription has been cancelled and you won't be charged again.",
    "Our support team is available Monday to Friday, from 9am to 5pm.",
    "The tracking number for your parcel is {n}, and it should arrive on Thursday.",
    "We have updated the delivery address on your account as you asked.",
    "Unfortunately that item is out of stock, but we expect new units next week.",
    "If the problem continues, please reply with a screenshot of the error message.",
    "Your invoice {n} is attached to this email and is also available in your account.",
    "We've applied a 10% discount to your next order as an apology for the delay.",
]

_LOAD = """
import time
t0 = time.perf_counter()
import onnxruntime, tokenizers
t1 = time.perf_counter()
from migrator import similarity
similarity.Embedder().load()
print(t1 - t0, time.perf_counter() - t1)
"""


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (reply, expected) pairs: new replies, 20 expected answers shared among them."""
    rng = random.Random(seed)

    def text(sentences: int) -> str:
        return " ".join(s.format(n=rng.randrange(10_000, 99_999)) for s in rng.sample(SENTENCES, sentences))

    expected = [text(rng.randint(1, 2)) for _ in range(20)]
    return [(text(rng.randint(1, 3)), expected[i % len(expected)]) for i in range(n)]


def per_second(count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def _forward(threads: int, pairs: list[tuple[str, str]], batch: int = 1) -> Callable[[], object]:
    """The model alone: one session.run per ``batch`` replies, on tokens prepared beforehand."""
    import onnxruntime
    from tokenizers import Tokenizer

    model = similarity._model_file()
    assert model is not None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(similarity.TOKENIZER))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to each batch's longest (the file pads to 128)
    feeds = []
    replies = sorted((r for r, _ in pairs), key=len)  # batching's best case: little padding
    for start in range(0, len(replies), batch):
        encodings = tokenizer.encode_batch(replies[start : start + batch])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return lambda: [session.run(["last_hidden_state"], f) for f in feeds]


def _embedder(*cached: list[str]) -> similarity.Embedder:
    embedder = similarity.Embedder()
    embedder.load()
    for texts in cached:
        embedder.embed(texts)
    return embedder


def _scoring(embedder: similarity.Embedder, pairs: list[tuple[str, str]]) -> Callable[[], object]:
    return lambda: [embedder.cosines(reply, [expected]) for reply, expected in pairs]


def measure(pairs: list[tuple[str, str]], repeats: int) -> dict[str, dict[str, Any]]:
    """Each row's median over ``repeats`` repetitions, the rows' order rotated each time (the machine is shared)."""
    replies = [r for r, _ in pairs]
    expected = sorted({e for _, e in pairs})
    n = len(pairs)
    f1 = build_metric(MetricSpec(name="f1"))
    forward_1, forward_2, forward_32 = _forward(1, pairs), _forward(2, pairs), _forward(1, pairs, batch=32)
    # each row: its name and what prepares its run (outside the timing)
    rows: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("score, expected cached (pairs/s)", lambda: _scoring(_embedder(expected), pairs)),
        ("score, nothing cached (pairs/s)", lambda: _scoring(_embedder(), pairs)),
        ("score, both cached (pairs/s)", lambda: _scoring(_embedder(expected, replies), pairs)),
        ("onnxruntime forward, batch 1, 1 thread (sentences/s)", lambda: forward_1),
        ("onnxruntime forward, batch 1, 2 threads (sentences/s)", lambda: forward_2),
        ("onnxruntime forward, batches of 32, 1 thread (sentences/s)", lambda: forward_32),
        ("f1 metric (pairs/s)", lambda: lambda: [f1.score(r, x) for r, x in pairs]),
    ]
    samples: dict[str, list[float]] = {}
    for repeat in range(repeats):
        out = subprocess.run([sys.executable, "-c", _LOAD], cwd=ROOT, capture_output=True, text=True, check=True)
        imports, load = map(float, out.stdout.split())
        samples.setdefault("import onnxruntime + tokenizers (s)", []).append(imports)
        samples.setdefault("load: sha256 + session + tokenizer (s)", []).append(load)
        shift = repeat % len(rows)
        for name, prepare in rows[shift:] + rows[:shift]:
            samples.setdefault(name, []).append(per_second(n, prepare()))
    order = [
        "import onnxruntime + tokenizers (s)",
        "load: sha256 + session + tokenizer (s)",
        *(name for name, _ in rows),
    ]
    return {name: {"median": statistics.median(samples[name]), "runs": samples[name]} for name in order}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if similarity.missing():
        print(f"needs the similarity extra: {similarity.missing()}", file=sys.stderr)
        return 2
    pairs = make_pairs(args.pairs)
    words = [len(r.split()) for r, _ in pairs]
    rows = measure(pairs, args.repeats)
    print(f"{args.pairs} pairs, replies of {min(words)} to {max(words)} words (median {statistics.median(words):.0f}); "
          f"median of {args.repeats} repetitions")  # fmt: skip
    width = max(map(len, rows))
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['median']:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "repeats": args.repeats, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
