"""Golden datasets: loading (JSONL, CSV, Parquet), validation and the seeded split."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import DatasetError, InputError
from migrator.spec import DatasetSpec, SplitSpec

__all__ = ["MAX_LINE_BYTES", "MAX_ROWS", "Example", "Splits", "load_examples", "read_records", "split_examples"]

MAX_ROWS = 100_000
MAX_LINE_BYTES = 16 << 20
_SHOWN_BAD_ROWS = 3


@dataclass(frozen=True)
class Example:
    """One golden row: the template inputs and the expected output."""

    id: str
    inputs: Mapping[str, Any]
    expected: Any
    # with labels: legacy, the dataset's own expected value (if it has one) beside the legacy model's reply
    reference: Any = None


@dataclass(frozen=True)
class Splits:
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]

    def get(self, name: str) -> tuple[Example, ...]:
        if name not in ("train", "dev", "test"):
            raise ValueError(f"The 'split' parameter must be one of train, dev, test. Got {name!r} instead.")
        result: tuple[Example, ...] = getattr(self, name)
        return result


@dataclass(frozen=True)
class _Bad:
    """A row that could not be read; reported with the others, not alone."""

    reason: str


def _decoded_lines(fh: Any) -> Iterator[tuple[int, str | _Bad]]:
    # Lines are read with a cap, so a file with no newlines (or a corrupt one) fails at
    # that line instead of being read whole into memory.
    for lineno, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield lineno, _Bad(f"longer than {MAX_LINE_BYTES >> 20} MiB; is this really a {Path(fh.name).suffix} file?")
            return
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield lineno, _Bad(f"not valid UTF-8 (byte {exc.start} of the line)")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        for lineno, line in _decoded_lines(fh):
            if isinstance(line, _Bad):
                yield lineno, line
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, _Bad(f"invalid JSON: {exc.msg} at column {exc.colno}")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    bad: list[tuple[int, _Bad]] = []

    def text_lines(fh: Any) -> Iterator[str]:
        for lineno, line in _decoded_lines(fh):
            if isinstance(line, _Bad):
                bad.append((lineno, line))
                yield "\n"
            else:
                yield line

    with path.open("rb") as fh:
        reader = csv.DictReader(text_lines(fh))
        try:
            for row in reader:
                while bad:
                    yield bad.pop(0)
                if None in row:
                    yield reader.line_num, _Bad("more cells than header columns")
                elif any(v is not None for v in row.values()):
                    yield reader.line_num, dict(row)
        except csv.Error as exc:  # a field over csv's size limit, a quote never closed
            yield reader.reader.line_num, _Bad(f"unreadable CSV: {exc}")
        while bad:
            yield bad.pop(0)


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with mlflow
        raise DatasetError("reading Parquet needs pyarrow: pip install pyarrow", file=str(path)) from None
    try:
        table = pq.ParquetFile(path)
        row_number = 0
        for batch in table.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                row_number += 1
                yield row_number, row
    except DatasetError:
        raise
    except Exception as exc:  # pyarrow raises many unrelated types for corrupt files
        raise DatasetError(f"cannot read Parquet: {exc}", file=str(path)) from None


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(path)
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix == ".parquet":
        return _parquet_rows(path)
    raise DatasetError(f"unsupported file type {suffix!r}, expected .jsonl, .csv or .parquet", file=str(path))


def read_records(path: Path, error: type[InputError] = DatasetError) -> list[tuple[int, dict[str, Any]]]:
    """Every row of a JSONL, CSV or Parquet file, with its line (row) number; the first bad one is an error."""
    if not path.is_file():
        raise error("file not found", file=str(path))
    unit = "row" if path.suffix.lower() == ".parquet" else "line"
    records: list[tuple[int, dict[str, Any]]] = []
    for lineno, row in _rows(path):
        if isinstance(row, _Bad):
            raise error(f"{unit} {lineno}: {row.reason}", file=str(path))
        if not isinstance(row, dict):
            raise error(f"{unit} {lineno}: expected a JSON object, got {type(row).__name__}", file=str(path))
        if len(records) >= MAX_ROWS:
            raise error(f"more than {MAX_ROWS} rows; sample it first", file=str(path))
        records.append((lineno, row))
    return records


def load_examples(path: Path, spec: DatasetSpec, *, spec_file: str = "") -> tuple[Example, ...]:
    """Read and check every row; errors name the file and the first bad lines.

    Rows are streamed, so a huge or broken file fails at its first bad line without
    being loaded whole.
    """
    if not path.is_file():
        raise DatasetError("file not found", file=str(path))
    examples: list[Example] = []
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    input_fields = spec.input_fields
    unit = "row" if path.suffix.lower() == ".parquet" else "line"
    for lineno, row in _rows(path):
        if len(examples) >= MAX_ROWS:
            raise DatasetError(f"more than {MAX_ROWS} rows; a golden set this large should be sampled first", file=str(path))
        if isinstance(row, _Bad):
            problems.append(f"{unit} {lineno}: {row.reason}")
        elif not isinstance(row, dict):
            problems.append(f"{unit} {lineno}: expected a JSON object, got {type(row).__name__}")
        elif spec.labels == "dataset" and (
            spec.expected_field not in row or row[spec.expected_field] is None or row[spec.expected_field] == ""
        ):
            problems.append(f"{unit} {lineno}: field '{spec.expected_field}' (dataset.expected_field) is missing or empty")
        else:
            fields = input_fields or tuple(k for k in row if k not in (spec.expected_field, spec.id_field))
            missing = [f for f in fields if f not in row]
            if missing:
                problems.append(f"{unit} {lineno}: input field '{missing[0]}' (dataset.input_fields) is missing")
            else:
                row_id = str(row[spec.id_field]) if spec.id_field and spec.id_field in row else str(lineno)
                if spec.id_field and spec.id_field not in row:
                    problems.append(f"{unit} {lineno}: id field '{spec.id_field}' (dataset.id_field) is missing")
                elif row_id in seen_ids:
                    problems.append(f"{unit} {lineno}: duplicate id {row_id!r} (first on {unit} {seen_ids[row_id]})")
                else:
                    seen_ids[row_id] = lineno
                    given = row.get(spec.expected_field) if spec.expected_field else None
                    if spec.labels == "legacy":  # labelled by the legacy model before the search
                        examples.append(Example(row_id, {f: row[f] for f in fields}, None, reference=given))
                    else:
                        examples.append(Example(row_id, {f: row[f] for f in fields}, given))
        if len(problems) >= _SHOWN_BAD_ROWS:
            break
    if problems:
        raise DatasetError("; ".join(problems), file=str(path))
    if not examples:
        raise DatasetError("no rows; a golden dataset needs examples", file=str(path))
    return tuple(examples)


def _label_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _is_categorical(examples: Sequence[Example]) -> bool:
    labels = {_label_key(e.expected) for e in examples if isinstance(e.expected, (str, bool, int))}
    if len(labels) < 2:
        return False
    return all(isinstance(e.expected, (str, bool, int)) for e in examples) and len(labels) <= max(2, len(examples) // 5)


def split_examples(examples: Sequence[Example], split: SplitSpec, seed: int, *, file: str | None = None) -> Splits:
    """Seeded split; stratified by the expected value when it is categorical.

    Each stratum is shuffled and cut by cumulative rounding, so every split gets its
    share of every label and the result depends only on the rows and the seed.
    """
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = {}
    if _is_categorical(examples):
        for ex in examples:
            groups.setdefault(_label_key(ex.expected), []).append(ex)
    else:
        groups[""] = list(examples)
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    carry = {"train": 0.0, "dev": 0.0}
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda e: e.id)
        rng.shuffle(group)
        n = len(group)
        want_train = split.train * n + carry["train"]
        want_dev = split.dev * n + carry["dev"]
        n_train = round(want_train)
        n_dev = round(want_dev)
        n_train = min(n_train, n)
        n_dev = min(n_dev, n - n_train)
        carry["train"] = want_train - n_train
        carry["dev"] = want_dev - n_dev
        parts["train"] += group[:n_train]
        parts["dev"] += group[n_train : n_train + n_dev]
        parts["test"] += group[n_train + n_dev :]
    for name in parts:
        rng.shuffle(parts[name])
    if not parts["dev"] or not parts["test"]:
        raise DatasetError(
            f"{len(examples)} rows are too few for the split (dev {len(parts['dev'])}, test {len(parts['test'])})",
            file=file,
            where="dataset.split",
        )
    return Splits(tuple(parts["train"]), tuple(parts["dev"]), tuple(parts["test"]))
