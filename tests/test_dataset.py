"""Golden datasets: the formats a user brings, the errors they get, and the seeded split."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from migrator import dataset
from migrator.dataset import Example, load_examples, split_examples
from migrator.errors import DatasetError
from migrator.spec import DatasetSpec, SplitSpec

SPEC = DatasetSpec(path="unused", expected_field="label", id_field="id", input_fields=("review",))
ROWS = [
    {"id": "a1", "review": "great phone", "label": "positive"},
    {"id": "a2", "review": "awful, broke in a day", "label": "negative"},
    {"id": "a3", "review": "love it", "label": "positive"},
]


def _jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _expected_examples() -> tuple[Example, ...]:
    return tuple(Example(r["id"], {"review": r["review"]}, r["label"]) for r in ROWS)


def test_jsonl_loads_rows_in_order(tmp_path: Path) -> None:
    assert load_examples(_jsonl(tmp_path / "d.jsonl", ROWS), SPEC) == _expected_examples()


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.ndjson"
    path.write_text(json.dumps(ROWS[0]) + "\n\n   \n" + json.dumps(ROWS[1]) + "\n")
    assert [e.id for e in load_examples(path, SPEC)] == ["a1", "a2"]


def test_csv_loads(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "review", "label"])
        writer.writeheader()
        writer.writerows(ROWS)
    assert load_examples(path, SPEC) == _expected_examples()


def test_parquet_loads(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert load_examples(path, SPEC) == _expected_examples()


def test_parquet_problems_are_reported_by_row(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([ROWS[0], {**ROWS[1], "label": None}]), path)

    with pytest.raises(DatasetError, match=r"row 2: field 'label'"):
        load_examples(path, SPEC)


def test_input_fields_default_to_every_column_but_id_and_expected(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"id": "x", "title": "T", "body": "B", "label": "positive"}])
    spec = DatasetSpec(path="unused", expected_field="label", id_field="id")
    assert load_examples(path, spec)[0].inputs == {"title": "T", "body": "B"}


def test_without_id_field_the_line_number_is_the_id(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"review": "a", "label": "x"}, {"review": "b", "label": "y"}])
    spec = DatasetSpec(path="unused", expected_field="label")
    assert [e.id for e in load_examples(path, spec)] == ["1", "2"]


def test_structured_expected_values_are_kept(tmp_path: Path) -> None:
    row = {"id": "i1", "review": "invoice", "label": {"total": 12.5, "currency": "EUR"}}
    assert load_examples(_jsonl(tmp_path / "d.jsonl", [row]), SPEC)[0].expected == {"total": 12.5, "currency": "EUR"}


def _error(path: Path, spec: DatasetSpec = SPEC) -> str:
    with pytest.raises(DatasetError) as info:
        load_examples(path, spec)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    return message


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], '{"id": "a3", "review": oops}'])
    message = _error(path)
    assert "line 3" in message and "invalid JSON" in message


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"id": "a2", "review": "caf\xe9", "label": "x"}\n')
    message = _error(path)
    assert "line 2" in message and "UTF-8" in message


def test_non_utf8_csv_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"id,review,label\na1,ok,positive\na2,caf\xe9,negative\n")
    assert "UTF-8" in _error(path)


def test_non_utf8_csv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(
        b"id,review,label\n" + b"".join(b"a%d,ok,positive\n" % i for i in range(2000)) + b"bad,caf\xe9,x\n"
    )
    assert "line 2002" in _error(path)


def test_missing_expected_field_names_line_and_spec_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], {"id": "a2", "review": "no label"}])
    message = _error(path)
    assert "line 2" in message and "'label'" in message and "dataset.expected_field" in message


@pytest.mark.parametrize("empty", [None, ""])
def test_null_or_empty_expected_value_is_a_problem(tmp_path: Path, empty: str | None) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{**ROWS[0], "label": empty}])
    assert "line 1" in _error(path)


def test_missing_input_field_names_it(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], {"id": "a2", "text": "wrong column", "label": "x"}])
    message = _error(path)
    assert "line 2" in message and "'review'" in message and "dataset.input_fields" in message


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "id": "a1"}])
    message = _error(path)
    assert "line 3" in message and "duplicate id 'a1'" in message and "line 1" in message


def test_missing_id_field_is_reported(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"review": "x", "label": "y"}])
    assert "dataset.id_field" in _error(path)


def test_non_object_row_is_reported(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [ROWS[0], [1, 2, 3]])
    message = _error(path)
    assert "line 2" in message and "JSON object" in message


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    assert "no rows" in _error(path)


def test_missing_file_and_unknown_suffix_are_errors(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.jsonl")
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    assert "unsupported file type" in _error(path)


def test_first_few_bad_rows_are_reported_together_and_no_more(tmp_path: Path) -> None:
    rows = [ROWS[0]] + [{"id": f"b{i}", "review": "x"} for i in range(2, 12)]
    message = _error(_jsonl(tmp_path / "d.jsonl", rows))
    reported = [part.split(":")[0] for part in message.removeprefix(f"{tmp_path / 'd.jsonl'}: ").split("; ")]
    assert reported == ["line 2", "line 3", "line 4"]


def test_problems_before_a_bad_json_line_are_still_reported(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"id": "a1", "review": "no label"}, "{not json"])
    message = _error(path)
    assert "line 1" in message and "line 2" in message


def test_large_file_fails_at_an_early_bad_line_without_reading_the_rest(tmp_path: Path) -> None:
    """~50 MB after a broken 2nd line; the tail is not even valid UTF-8, so reading it would change the error."""
    path = tmp_path / "big.jsonl"
    good = (json.dumps({"id": "x", "review": "filler " * 20, "label": "positive"}) + "\n").encode()
    with path.open("wb") as fh:
        fh.write(json.dumps(ROWS[0]).encode() + b"\n")
        fh.write(b'{"id": "a2", "review": \n')
        block = good * 1000
        for _ in range(50_000_000 // len(block)):
            fh.write(block)
        fh.write(b"\xff\xfe not utf-8 at the end\n")

    message = _error(path)

    assert "line 2: invalid JSON" in message
    assert "UTF-8" not in message  # the tail was never read


def test_more_rows_than_the_limit_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset, "MAX_ROWS", 5)
    rows = [{"id": str(i), "review": "r", "label": "x"} for i in range(6)]
    assert "more than 5 rows" in _error(_jsonl(tmp_path / "d.jsonl", rows))


def _labelled(counts: dict[str, int]) -> list[Example]:
    out = []
    for label, n in counts.items():
        out += [Example(f"{label}-{i:03d}", {"review": f"{label} {i}"}, label) for i in range(n)]
    return out


SPLIT = SplitSpec(train=0.2, dev=0.5, test=0.3)


def _ids(examples: Sequence[Example]) -> list[str]:
    return [e.id for e in examples]


def test_split_is_deterministic_by_seed() -> None:
    examples = _labelled({"positive": 40, "negative": 25})
    a, b = split_examples(examples, SPLIT, seed=7), split_examples(examples, SPLIT, seed=7)
    other = split_examples(examples, SPLIT, seed=8)

    assert (_ids(a.train), _ids(a.dev), _ids(a.test)) == (_ids(b.train), _ids(b.dev), _ids(b.test))
    assert set(_ids(a.test)) != set(_ids(other.test))


def test_split_does_not_depend_on_row_order() -> None:
    examples = _labelled({"positive": 40, "negative": 25})
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    a, b = split_examples(examples, SPLIT, seed=3), split_examples(shuffled, SPLIT, seed=3)
    assert set(_ids(a.test)) == set(_ids(b.test)) and set(_ids(a.dev)) == set(_ids(b.dev))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "counts",
    [{"positive": 50, "negative": 30, "neutral": 20}, {"yes": 90, "no": 10}, {"a": 13, "b": 11, "c": 5, "d": 1}],
)
@pytest.mark.parametrize("split", [SPLIT, SplitSpec(train=0.0, dev=0.4, test=0.6)])
def test_split_is_disjoint_complete_and_stratified(seed: int, counts: dict[str, int], split: SplitSpec) -> None:
    examples = _labelled(counts)
    splits = split_examples(examples, split, seed=seed)
    parts = {"train": splits.train, "dev": splits.dev, "test": splits.test}

    all_ids = [i for part in parts.values() for i in _ids(part)]
    assert sorted(all_ids) == sorted(_ids(examples))  # disjoint and covering
    total = len(examples)
    for name in ("dev", "test"):
        got = Counter(e.expected for e in parts[name])
        size = len(parts[name])
        assert abs(size - getattr(split, name) * total) <= 1
        for label, n in counts.items():
            assert abs(got[label] - size * n / total) <= 1, (name, label, got, size)


def test_numeric_targets_split_too() -> None:
    examples = [Example(f"q{i:03d}", {"question": f"q {i}"}, i * 1.5) for i in range(60)]
    splits = split_examples(examples, SPLIT, seed=0)

    assert (len(splits.train), len(splits.dev), len(splits.test)) == (12, 30, 18)
    assert sorted(_ids(splits.train) + _ids(splits.dev) + _ids(splits.test)) == sorted(_ids(examples))


def test_structured_targets_split_too() -> None:
    examples = [Example(f"i{i:02d}", {"text": str(i)}, {"total": i}) for i in range(20)]
    splits = split_examples(examples, SPLIT, seed=0)
    assert len(splits.train) + len(splits.dev) + len(splits.test) == 20
    assert splits.dev and splits.test


def test_too_few_rows_for_the_split_is_an_error() -> None:
    with pytest.raises(DatasetError, match="too few"):
        split_examples(_labelled({"x": 1}), SPLIT, seed=0)


def test_splits_get_by_name() -> None:
    splits = split_examples(_labelled({"a": 10, "b": 10}), SPLIT, seed=0)
    assert splits.get("dev") == splits.dev
    with pytest.raises(ValueError, match="'split' parameter"):
        splits.get("validation")
